"""``submarine-broker policy``, ``placement explain``, ``user list`` and ``user whoami`` against a fake broker.

Like tests/test_cli.py: a small Starlette app serves the REST contract from memory over real HTTP
(uvicorn on a free 127.0.0.1 port, in a thread) and records every request body, so the tests
assert what the CLI sent as well as what it printed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from broker.cli.client import BrokerClient, BrokerError, NotFound
from broker.cli.main import main
from broker.cli.policy import parse_policy_text
from tests.support import serve_in_thread

SPEC_YAML = """\
meta:
  name: resnet
  namespace: vision
  framework: PyTorch
  cmd: python train.py
environment:
  image: pytorch:2
spec:
  Worker:
    replicas: 2
    resources: cpu=4,memory=16G,gpu=1
"""
DEFAULT_LINES = ["p, admin, *, *, *, allow", "g, admin, admin, *"]
ALICE_PLACE = "p, alice, vision, cluster/gpu-*, place, allow"
ALICE_MEMBER = "g, alice, member, vision"
WEIGHT = "p2, vision, cluster/gpu-*, 5"


def envelope(result: Any = None, code: int = 200, message: str | None = None) -> JSONResponse:
    status = {
        200: "OK",
        400: "BAD_REQUEST",
        401: "UNAUTHORIZED",
        403: "FORBIDDEN",
        404: "NOT_FOUND",
        409: "CONFLICT",
    }
    body = {
        "status": status.get(code, "ERROR"),
        "code": code,
        "success": code < 400,
        "message": message,
        "result": result,
        "attributes": {},
    }
    return JSONResponse(body, status_code=code)


class FakeBroker:
    """The policy, users and placement endpoints, in memory; ``requests`` records what was sent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.lines: list[str] = list(DEFAULT_LINES)
            self.history: list[dict[str, Any]] = [
                {
                    "revision": 1,
                    "author": "broker",
                    "at": "2026-11-29T12:00:00Z",
                    "added": list(DEFAULT_LINES),
                    "removed": [],
                    "message": "default policy from policy.csv",
                }
            ]
            #: (method, path, parsed JSON body or None, headers)
            self.requests: list[tuple[str, str, Any, dict[str, str]]] = []
            self.tokens = {"sbk_alice": "alice", "sbk_admin": "admin"}
            self.users = [
                {"name": "admin", "teams": [], "createdTime": "2026-11-29T12:00:00Z"},
                {"name": "alice", "teams": ["vision", "nlp"], "createdTime": "2026-11-29T12:30:00Z"},
            ]
            self.explanation: dict[str, Any] = {}

    @property
    def revision(self) -> int:
        return self.history[-1]["revision"]

    def snapshot(self) -> dict[str, Any]:
        return {"revision": self.revision, "lines": sorted(self.lines)}

    def bodies(self, method: str, path: str) -> list[Any]:
        return [body for m, p, body, _ in self.requests if (m, p) == (method, path)]

    # -- helpers -----------------------------------------------------------------------------
    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = "<not json>"
        self.requests.append((request.method, request.url.path, body, dict(request.headers)))
        return body

    def _caller(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        return self.tokens.get(header.removeprefix("Bearer ")) if header.startswith("Bearer ") else None

    @staticmethod
    def _bad_lines(body: Any) -> Response | None:
        if not isinstance(body, dict) or not isinstance(body.get("lines"), list):
            return envelope(code=400, message="lines: is required")
        for index, line in enumerate(body["lines"]):
            if not line.startswith(("p, ", "p2, ", "g, ")):
                kind = line.split(",")[0]
                return envelope(
                    code=400,
                    message=f"lines: line {index + 1} {line!r}: unknown line type {kind!r} "
                    "(known: p, p2, g); the policy was not changed",
                )
        return None

    def _edit(self, author: str, new: list[str], message: str) -> Response:
        """Apply an edit like the broker: no revision when nothing changes, 409 when the admin line
        that lets anyone edit the policy would go."""
        old = set(self.lines)
        added, removed = sorted(set(new) - old), sorted(old - set(new))
        if not added and not removed:
            return envelope(
                {**self.snapshot(), "changed": False, "added": [], "removed": []},
                message=f"no change: the policy stays at revision {self.revision}",
            )
        if DEFAULT_LINES[0] in removed:
            return envelope(
                code=409,
                message="refused: this edit would leave no user able to edit the policy (edit on policy in "
                f"namespace *; now: admin). The lines that do it: removing '{DEFAULT_LINES[0]}'. "
                "The policy was not changed",
            )
        self.history.append(
            {
                "revision": self.revision + 1,
                "author": author,
                "at": "2026-11-29T13:00:00Z",
                "added": added,
                "removed": removed,
                "message": message,
            }
        )
        self.lines = sorted(set(new))
        return envelope({**self.snapshot(), "changed": True, "added": added, "removed": removed})

    # -- handlers ----------------------------------------------------------------------------
    async def get_policy(self, request: Request) -> Response:
        await self._record(request)
        return envelope(self.snapshot())

    async def edit_policy(self, request: Request) -> Response:
        body = await self._record(request)
        if bad := self._bad_lines(body):
            return bad
        lines, message = body["lines"], body.get("message", "")
        with self.lock:
            if request.method == "POST":
                return self._edit("admin", [*self.lines, *lines], message)
            if request.method == "DELETE":
                return self._edit("admin", [line for line in self.lines if line not in lines], message)
            return self._edit("admin", lines, message)

    async def revisions(self, request: Request) -> Response:
        await self._record(request)
        return envelope(self.history)

    async def revert(self, request: Request) -> Response:
        await self._record(request)
        wanted = int(request.path_params["revision"])
        with self.lock:
            if not any(step["revision"] == wanted for step in self.history):
                return envelope(code=404, message=f"Not found policy revision: {wanted}")
            state: set[str] = set()
            for step in self.history:
                if step["revision"] <= wanted:
                    state = (state - set(step["removed"])) | set(step["added"])
            return self._edit("admin", sorted(state), f"revert to revision {wanted}")

    async def test(self, request: Request) -> Response:
        body = await self._record(request)
        for key in ("user", "namespace", "object", "action"):
            if not body.get(key):
                return envelope(code=400, message=f"{key}: is required and must be a non-empty string")
        matched = [
            line
            for line in self.lines
            if line.startswith(f"p, {body['user']}, ") and f", {body['action']}, " in line
        ]
        allowed = bool(matched) and not any(line.endswith("deny") for line in matched)
        return envelope({**body, "allowed": allowed, "matched": matched, "revision": self.revision})

    async def users_list(self, request: Request) -> Response:
        await self._record(request)
        if self._caller(request) != "admin":
            return envelope(code=403, message="Forbidden: alice may not read user in *")
        return envelope(self.users)

    async def whoami(self, request: Request) -> Response:
        await self._record(request)
        caller = self._caller(request)
        if caller is None:
            return envelope(code=401, message="Unauthorized: a valid API token is required")
        teams = next(u["teams"] for u in self.users if u["name"] == caller)
        return envelope({"name": caller, "teams": teams, "admin": caller == "admin"})

    async def explain(self, request: Request) -> Response:
        body = await self._record(request)
        if not isinstance(body, dict) or not (body.get("meta") or {}).get("name"):
            return envelope(code=400, message="Invalid experiment spec: meta.name: is required")
        return envelope(self.explanation)

    def app(self) -> Starlette:
        p = "/api/v1"
        return Starlette(
            routes=[
                Route(f"{p}/policy", self.get_policy, methods=["GET"]),
                Route(f"{p}/policy", self.edit_policy, methods=["POST", "DELETE", "PUT"]),
                Route(f"{p}/policy/revisions", self.revisions, methods=["GET"]),
                Route(f"{p}/policy/revert/{{revision}}", self.revert, methods=["POST"]),
                Route(f"{p}/policy/test", self.test, methods=["POST"]),
                Route(f"{p}/user", self.users_list, methods=["GET"]),
                Route(f"{p}/user/me", self.whoami, methods=["GET"]),
                Route(f"{p}/placement/explain", self.explain, methods=["POST"]),
            ]
        )


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeBroker, str]]:
    fake = FakeBroker()
    with serve_in_thread(fake.app()) as url:
        yield fake, url


@pytest.fixture
def fake(server: tuple[FakeBroker, str]) -> FakeBroker:
    server[0].reset()
    return server[0]


@pytest.fixture
def cli(server: tuple[FakeBroker, str]) -> Any:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, token: str | None = "sbk_admin") -> Result:
        auth = ["--token", token] if token else []
        return runner.invoke(main, ["--url", server[1], *auth, *args], input=input, env={"COLUMNS": "200"})

    return invoke


def assert_clean_failure(result: Result, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------- policy list
def test_policy_list_prints_revision_then_lines_and_json(fake: FakeBroker, cli: Any) -> None:
    fake.lines = [ALICE_PLACE, *DEFAULT_LINES]
    result = cli("policy", "list")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["# policy revision 1 (3 lines)", *sorted(fake.lines)]
    assert fake.requests[-1][3]["authorization"] == "Bearer sbk_admin"

    as_json = cli("policy", "list", "--json")
    assert json.loads(as_json.stdout) == {"revision": 1, "lines": sorted(fake.lines)}


def test_policy_list_output_round_trips_through_replace(fake: FakeBroker, cli: Any, tmp_path: Path) -> None:
    fake.lines = [ALICE_PLACE, ALICE_MEMBER]
    saved = tmp_path / "policy.csv"
    saved.write_text(cli("policy", "list").stdout)
    result = cli("policy", "replace", "-f", str(saved))
    assert result.exit_code == 0, result.output
    assert fake.bodies("PUT", "/api/v1/policy")[-1]["lines"] == sorted([ALICE_PLACE, ALICE_MEMBER])


# ---------------------------------------------------------------------------- policy add / remove
def test_policy_add_sends_each_argument_as_one_line_with_the_message(fake: FakeBroker, cli: Any) -> None:
    result = cli("policy", "add", ALICE_PLACE, ALICE_MEMBER, WEIGHT, "-m", "vision gets the GPUs")
    assert result.exit_code == 0, result.output
    (body,) = fake.bodies("POST", "/api/v1/policy")
    assert body == {"lines": [ALICE_PLACE, ALICE_MEMBER, WEIGHT], "message": "vision gets the GPUs"}
    assert "added: policy now at revision 2 (5 lines)" in result.stdout
    assert fake.history[-1]["message"] == "vision gets the GPUs"


def test_policy_add_from_a_file_skips_comments_and_blank_rows(
    fake: FakeBroker, cli: Any, tmp_path: Path
) -> None:
    policy_file = tmp_path / "extra.csv"
    policy_file.write_text(
        f"# vision team\n\n   {ALICE_MEMBER}   \n  # indented comment\r\n{WEIGHT}\r\n\n# the end\n"
    )
    result = cli("policy", "add", ALICE_PLACE, "-f", str(policy_file), "--json")
    assert result.exit_code == 0, result.output
    (body,) = fake.bodies("POST", "/api/v1/policy")
    assert body == {"lines": [ALICE_PLACE, ALICE_MEMBER, WEIGHT], "message": ""}
    assert json.loads(result.stdout)["revision"] == 2


def test_policy_add_from_stdin(fake: FakeBroker, cli: Any) -> None:
    result = cli("policy", "add", "-f", "-", input=f"# from a pipe\n{ALICE_MEMBER}\n")
    assert result.exit_code == 0, result.output
    assert fake.bodies("POST", "/api/v1/policy") == [{"lines": [ALICE_MEMBER], "message": ""}]


def test_parse_policy_text() -> None:
    text = "#c\n\n p, a, b, c, d, allow \n\t# x\ng, a, member, b"
    assert parse_policy_text(text) == ["p, a, b, c, d, allow", "g, a, member, b"]
    assert parse_policy_text("# only comments\n\n") == []


def test_policy_add_without_lines_is_a_usage_error(fake: FakeBroker, cli: Any, tmp_path: Path) -> None:
    result = cli("policy", "add")
    assert_clean_failure(result, code=2)
    assert "no policy lines given" in result.output
    empty = tmp_path / "empty.csv"
    empty.write_text("# nothing here\n")
    from_file = cli("policy", "add", "-f", str(empty))
    assert_clean_failure(from_file, code=2)
    assert f"{empty} has none" in from_file.output
    assert not fake.requests


def test_policy_add_missing_file(fake: FakeBroker, cli: Any, tmp_path: Path) -> None:
    result = cli("policy", "add", "-f", str(tmp_path / "nope.csv"))
    assert_clean_failure(result)
    assert f"Error: cannot read {tmp_path / 'nope.csv'}" in result.output
    assert not fake.requests


def test_policy_add_invalid_line_shows_the_server_message_verbatim(fake: FakeBroker, cli: Any) -> None:
    result = cli("policy", "add", ALICE_MEMBER, "q, alice, vision")
    assert_clean_failure(result)
    assert (
        "Error: lines: line 2 'q, alice, vision': unknown line type 'q' (known: p, p2, g); "
        "the policy was not changed"
    ) in result.output
    assert fake.revision == 1 and fake.lines == DEFAULT_LINES


def test_policy_remove_sends_a_delete_with_a_body(fake: FakeBroker, cli: Any, tmp_path: Path) -> None:
    fake.lines = [*DEFAULT_LINES, ALICE_PLACE, ALICE_MEMBER, WEIGHT]
    policy_file = tmp_path / "gone.csv"
    policy_file.write_text(f"# retire the weight\n{WEIGHT}\n")
    result = cli("policy", "remove", ALICE_PLACE, "--file", str(policy_file), "--message", "retired")
    assert result.exit_code == 0, result.output
    (body,) = fake.bodies("DELETE", "/api/v1/policy")
    assert body == {"lines": [ALICE_PLACE, WEIGHT], "message": "retired"}
    assert sorted(fake.lines) == sorted([*DEFAULT_LINES, ALICE_MEMBER])
    assert "removed: policy now at revision 2 (3 lines)" in result.stdout


# ---------------------------------------------------------------------------- policy replace
def test_policy_replace_puts_the_whole_set(fake: FakeBroker, cli: Any, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.csv"
    policy_file.write_text(f"# everything\n{DEFAULT_LINES[0]}\n{DEFAULT_LINES[1]}\n\n{ALICE_MEMBER}\n")
    result = cli("policy", "replace", "-f", str(policy_file), "-m", "from git")
    assert result.exit_code == 0, result.output
    (body,) = fake.bodies("PUT", "/api/v1/policy")
    assert body == {"lines": [*DEFAULT_LINES, ALICE_MEMBER], "message": "from git"}
    assert "policy replaced: policy now at revision 2 (3 lines)" in result.stdout


def test_policy_replace_refuses_an_empty_file_and_needs_one(
    fake: FakeBroker, cli: Any, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("# all commented out\n# p, admin, *, *, *, allow\n")
    result = cli("policy", "replace", "-f", str(empty))
    assert_clean_failure(result)
    assert "has no policy lines; refusing to replace the policy with nothing" in result.output
    assert_clean_failure(cli("policy", "replace"), code=2)
    assert not fake.requests


# ---------------------------------------------------------------------------- no change / refused
def test_an_edit_that_changes_nothing_prints_no_change_and_exits_0(fake: FakeBroker, cli: Any) -> None:
    for args in (
        ("policy", "add", DEFAULT_LINES[0]),
        ("policy", "remove", ALICE_PLACE),
        ("policy", "revert", "1"),
    ):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        assert result.stdout == "no change: policy stays at revision 1 (2 lines)\n", args
    assert fake.revision == 1
    as_json = json.loads(cli("policy", "add", DEFAULT_LINES[1], "--json").stdout)
    assert as_json["changed"] is False and as_json["revision"] == 1


def test_an_edit_that_would_lock_everyone_out_is_printed_and_exits_1(fake: FakeBroker, cli: Any) -> None:
    result = cli("policy", "remove", DEFAULT_LINES[0], ALICE_PLACE)
    assert_clean_failure(result)
    assert "Error: refused: this edit would leave no user able to edit the policy" in result.output
    assert f"removing '{DEFAULT_LINES[0]}'" in result.output and result.stdout == ""
    assert fake.revision == 1 and fake.lines == DEFAULT_LINES


# ---------------------------------------------------------------------------- policy test
def test_policy_test_allow_shows_the_matched_lines(fake: FakeBroker, cli: Any) -> None:
    fake.lines = [*DEFAULT_LINES, ALICE_PLACE]
    result = cli("policy", "test", "alice", "vision", "cluster/gpu-east", "place")
    assert result.exit_code == 0, result.output
    (body,) = fake.bodies("POST", "/api/v1/policy/test")
    assert body == {"user": "alice", "namespace": "vision", "object": "cluster/gpu-east", "action": "place"}
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ALLOW  alice vision cluster/gpu-east place")
    assert "(policy revision 1)" in lines[0]
    assert lines[1:] == ["matched:", f"  {ALICE_PLACE}"]


def test_policy_test_deny_exits_0_and_json(fake: FakeBroker, cli: Any) -> None:
    deny = "p, alice, vision, cluster/gpu-*, place, deny"
    fake.lines = [*DEFAULT_LINES, deny]
    result = cli("policy", "test", "alice", "vision", "cluster/gpu-east", "place")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("DENY  alice vision cluster/gpu-east place")
    assert f"  {deny}" in result.stdout

    nothing = cli("policy", "test", "bob", "nlp", "experiment/x", "submit")
    assert nothing.exit_code == 0, nothing.output
    assert nothing.stdout.startswith("DENY")
    assert "no policy line matches: denied by default" in nothing.stdout

    as_json = cli("policy", "test", "alice", "vision", "cluster/gpu-east", "place", "--json")
    answer = json.loads(as_json.stdout)
    assert (
        answer["allowed"] is False and answer["matched"] == [deny] and answer["object"] == "cluster/gpu-east"
    )


def test_policy_test_needs_four_arguments(fake: FakeBroker, cli: Any) -> None:
    assert_clean_failure(cli("policy", "test", "alice", "vision", "cluster/x"), code=2)
    assert not fake.requests


# ---------------------------------------------------------------------------- revisions / revert
def test_policy_revisions_table_and_json(fake: FakeBroker, cli: Any) -> None:
    assert cli("policy", "add", ALICE_PLACE, "-m", "gpu for alice").exit_code == 0
    assert cli("policy", "remove", ALICE_PLACE).exit_code == 0
    result = cli("policy", "revisions")
    assert result.exit_code == 0, result.output
    for text in (
        "REVISION",
        "default policy from policy.csv",
        f"+ {DEFAULT_LINES[0]}",
        f"+ {ALICE_PLACE}",
        f"- {ALICE_PLACE}",
        "gpu for alice",
        "2026-11-29 13:00:00Z",
        "broker",
    ):
        assert text in result.stdout, text
    as_json = cli("policy", "revisions", "--json")
    assert [r["revision"] for r in json.loads(as_json.stdout)] == [1, 2, 3]


def test_policy_revert(fake: FakeBroker, cli: Any) -> None:
    assert cli("policy", "add", ALICE_PLACE).exit_code == 0
    assert cli("policy", "remove", ALICE_PLACE).exit_code == 0
    result = cli("policy", "revert", "2")
    assert result.exit_code == 0, result.output
    assert "reverted to revision 2: policy now at revision 4 (3 lines)" in result.stdout
    assert ALICE_PLACE in fake.lines
    assert fake.requests[-1][:2] == ("POST", "/api/v1/policy/revert/2")

    missing = cli("policy", "revert", "99")
    assert_clean_failure(missing)
    assert "Error: Not found policy revision: 99" in missing.output
    assert_clean_failure(cli("policy", "revert", "zero"), code=2)


# ---------------------------------------------------------------------------- users over REST
def test_user_list_and_whoami(fake: FakeBroker, cli: Any) -> None:
    result = cli("user", "list")
    assert result.exit_code == 0, result.output
    assert "alice" in result.stdout and "vision, nlp" in result.stdout
    assert "2026-11-29 12:30:00Z" in result.stdout
    assert [u["name"] for u in json.loads(cli("user", "list", "--json").stdout)] == ["admin", "alice"]

    me = cli("user", "whoami", token="sbk_alice")
    assert me.exit_code == 0, me.output
    assert "alice" in me.stdout and "vision, nlp" in me.stdout and "no" in me.stdout
    assert json.loads(cli("user", "whoami", "--json").stdout) == {"name": "admin", "teams": [], "admin": True}


def test_user_commands_show_auth_errors_verbatim(fake: FakeBroker, cli: Any) -> None:
    forbidden = cli("user", "list", token="sbk_alice")
    assert_clean_failure(forbidden)
    assert "Error: Forbidden: alice may not read user in *" in forbidden.output
    anonymous = cli("user", "whoami", token=None)
    assert_clean_failure(anonymous)
    assert "Error: Unauthorized: a valid API token is required" in anonymous.output


# ---------------------------------------------------------------------------- placement explain
def verdict(
    cluster: str,
    eligible: bool,
    score: float = 0.0,
    scores: dict[str, float] | None = None,
    failing: dict[str, str] | None = None,
) -> dict[str, Any]:
    filters = [{"name": "ready", "passed": True, "reason": None}]
    filters += [{"name": name, "passed": False, "reason": reason} for name, reason in (failing or {}).items()]
    return {
        "cluster": cluster,
        "eligible": eligible,
        "reasons": list((failing or {}).values()),
        "filters": filters,
        "scores": scores or {},
        "score": score,
    }


EXPLAINED = {
    "namespace": "vision",
    "chosen": "gpu-east",
    "summary": "placed on gpu-east",
    "revision": 4,
    "neverFits": False,
    "rejection": None,
    "verdicts": [
        verdict("gpu-east", True, 0.8125, {"fit": 0.5, "weight": 0.3125}),
        verdict("gpu-west", True, 0.4, {"fit": 0.25, "weight": 0.15}),
        verdict("cpu-only", False, failing={"resources": "needs 2 GPUs, the cluster has 0"}),
        verdict("ray-lab", False, failing={"policy": "vision may not place on cluster/ray-lab"}),
    ],
}


def test_placement_explain_table(fake: FakeBroker, cli: Any, tmp_path: Path) -> None:
    fake.explanation = EXPLAINED
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC_YAML)
    result = cli("placement", "explain", "-f", str(spec_file))
    assert result.exit_code == 0, result.output
    (body,) = fake.bodies("POST", "/api/v1/placement/explain")
    assert body["meta"]["name"] == "resnet" and body["spec"]["Worker"]["replicas"] == 2
    out = result.stdout
    assert "namespace vision, policy revision 4" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and "-" in line.split()[0]}
    assert (
        "✓" in rows["gpu-east"] and "0.81" in rows["gpu-east"] and "fit=0.5 weight=0.31" in rows["gpu-east"]
    )
    assert "✓" in rows["gpu-west"] and "0.4" in rows["gpu-west"]
    assert "✗" in rows["cpu-only"] and "resources: needs 2 GPUs, the cluster has 0" in rows["cpu-only"]
    assert "policy: vision may not place on cluster/ray-lab" in rows["ray-lab"]
    # Server order (best first) is kept, and the reason is not repeated from "reasons".
    order = [name for name in ("gpu-east", "gpu-west", "cpu-only", "ray-lab")]
    assert [out.index(name) for name in order] == sorted(out.index(name) for name in order)
    assert out.count("needs 2 GPUs") == 1
    assert out.splitlines()[-1] == "would be placed on gpu-east"


def test_placement_explain_waiting_and_never_fits(fake: FakeBroker, cli: Any) -> None:
    busy = {"resources": "needs 8 GPUs free, 2 are"}
    fake.explanation = {
        **EXPLAINED,
        "chosen": None,
        "summary": "no cluster fits now (gpu-east: needs 8 GPUs free, 2 are)",
        "verdicts": [verdict("gpu-east", False, failing=busy)],
    }
    waiting = cli("placement", "explain", "-f", "-", input=SPEC_YAML)
    assert waiting.exit_code == 0, waiting.output
    assert waiting.stdout.splitlines()[-1] == (
        "would wait: no cluster fits now (gpu-east: needs 8 GPUs free, 2 are)"
    )

    fake.explanation = {
        **fake.explanation,
        "neverFits": True,
        "rejection": "gpu-east: needs 64 GPUs, the cluster has 8 in all",
        "verdicts": [verdict("gpu-east", False, failing={"capacity": "needs 64 GPUs, has 8 in all"})],
    }
    never = cli("placement", "explain", "-f", "-", input=SPEC_YAML)
    assert never.exit_code == 0, never.output
    assert "capacity: needs 64 GPUs, has 8 in all" in never.stdout
    assert never.stdout.splitlines()[-1] == (
        "can never run: gpu-east: needs 64 GPUs, the cluster has 8 in all"
    )


def test_placement_explain_no_clusters_and_json(fake: FakeBroker, cli: Any) -> None:
    fake.explanation = {**EXPLAINED, "chosen": None, "summary": "no clusters are registered", "verdicts": []}
    result = cli("placement", "explain", "-f", "-", input=SPEC_YAML)
    assert result.exit_code == 0, result.output
    assert "No clusters are registered." in result.stdout
    assert result.stdout.splitlines()[-1] == "would wait: no clusters are registered"

    fake.explanation = EXPLAINED
    as_json = cli("placement", "explain", "-f", "-", "--json", input=json.dumps({"meta": {"name": "x"}}))
    assert json.loads(as_json.stdout) == EXPLAINED


def test_placement_explain_errors(fake: FakeBroker, cli: Any, tmp_path: Path) -> None:
    rejected = cli("placement", "explain", "-f", "-", input="meta: {framework: PyTorch}\n")
    assert_clean_failure(rejected)
    assert "Error: Invalid experiment spec: meta.name: is required" in rejected.output
    missing = cli("placement", "explain", "-f", str(tmp_path / "nope.yaml"))
    assert_clean_failure(missing)
    assert f"cannot read {tmp_path / 'nope.yaml'}" in missing.output
    assert_clean_failure(cli("placement", "explain"), code=2)


# ---------------------------------------------------------------------------- the client directly
def test_client_methods(server: tuple[FakeBroker, str], fake: FakeBroker) -> None:
    with BrokerClient(server[1], token="sbk_admin") as client:
        assert client.get_policy() == {"revision": 1, "lines": sorted(DEFAULT_LINES)}
        assert client.add_policy_lines([ALICE_MEMBER], "m")["revision"] == 2
        assert ALICE_MEMBER not in client.remove_policy_lines([ALICE_MEMBER])["lines"]
        assert client.replace_policy(DEFAULT_LINES)["changed"] is False  # nothing to replace
        assert client.replace_policy([*DEFAULT_LINES, WEIGHT])["revision"] == 4
        assert client.test_policy("admin", "x", "policy", "edit")["revision"] == 4
        assert [r["revision"] for r in client.policy_revisions()] == [1, 2, 3, 4]
        assert client.revert_policy(2)["revision"] == 5
        assert client.whoami()["admin"] is True
        assert len(client.list_users()) == 2
        with pytest.raises(NotFound):
            client.revert_policy(42)
        with pytest.raises(BrokerError) as bad:
            client.add_policy_lines(["x"])
        assert bad.value.code == 400
    assert fake.bodies("DELETE", "/api/v1/policy") == [{"lines": [ALICE_MEMBER], "message": ""}]
