"""The ``submarine-broker`` client commands, driven with CliRunner against a real HTTP server.

The server is a tiny Starlette app serving the broker's REST contract from memory (run by
uvicorn on a free 127.0.0.1 port in a thread), so these tests exercise real HTTP, envelopes and
error paths without needing the broker itself. A scripted experiment advances one step after each
``GET /experiment/{id}`` answer, which is how ``wait`` and ``logs --follow`` see it progress.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from broker.cli.client import BrokerClient, BrokerError, BrokerUnreachable, NotFound
from broker.cli.main import main
from tests.support import serve_in_thread

GiB = 1024**3
SPEC_YAML = """\
meta:
  name: mnist
  namespace: default
  framework: TensorFlow
  cmd: python mnist.py
environment:
  image: apache/submarine:tf-mnist
spec:
  Worker:
    replicas: 1
    resources: cpu=1,memory=1G
"""
SPEC = {
    "meta": {"name": "mnist-json", "namespace": "default", "framework": "PyTorch", "cmd": "python train.py"},
    "environment": {"image": "apache/submarine:pytorch"},
    "spec": {"Worker": {"replicas": 2, "resources": "cpu=1,memory=1G"}},
}


# ---------------------------------------------------------------------------- the fake broker
def envelope(
    result: Any = None, code: int = 200, message: str | None = None, **attributes: Any
) -> JSONResponse:
    status = {200: "OK", 400: "BAD_REQUEST", 404: "NOT_FOUND", 401: "UNAUTHORIZED"}.get(code, "ERROR")
    body = {
        "status": status,
        "code": code,
        "success": True if code < 400 else None,
        "message": message,
        "result": result,
        "attributes": attributes,
    }
    return JSONResponse(body, status_code=code)


@dataclass
class FakeExperiment:
    data: dict[str, Any]
    #: Updates applied one per GET: {"status": ..., "cluster": ..., "logs": {pod: [new lines]}}.
    script: list[dict[str, Any]] = field(default_factory=list)
    logs: dict[str, list[str]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False


class FakeBroker:
    """In-memory state behind the Starlette app; tests seed it and inspect what it received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.experiments: dict[str, FakeExperiment] = {}
            self.keys: dict[str, str] = {}
            self.requests: list[tuple[str, str, dict[str, str]]] = []
            self.counter = 0
            self.clusters: list[dict[str, Any]] = []
            #: The script given to the next submitted experiment.
            self.next_script: list[dict[str, Any]] = []

    def add(self, status: str = "Accepted", script: list[dict[str, Any]] | None = None, **fields: Any) -> str:
        with self.lock:
            self.counter += 1
            exp_id = f"experiment-1764417600000_{self.counter:04d}"
            data = {
                "experimentId": exp_id,
                "uid": f"uid-{self.counter}",
                "status": status,
                "acceptedTime": "2026-11-29T12:00:00Z",
                "createdTime": None,
                "runningTime": None,
                "finishedTime": None,
                "spec": fields.pop("spec", SPEC),
                "cluster": None,
                "reason": None,
                "failureCategory": None,
                "statusMessage": None,
                "attempt": 1,
                "owner": "alice",
                "namespace": "default",
            }
            data.update(fields)
            exp = FakeExperiment(data, script=list(script or []))
            exp.events.append(
                {
                    "at": "2026-11-29T12:00:00Z",
                    "from": None,
                    "to": status,
                    "reason": "submitted",
                    "attempt": 1,
                }
            )
            self.experiments[exp_id] = exp
            return exp_id

    def advance(self, exp: FakeExperiment) -> None:
        if not exp.script:
            return
        step = exp.script.pop(0)
        for pod, lines in step.pop("logs", {}).items():
            exp.logs.setdefault(pod, []).extend(lines)
        old = exp.data["status"]
        exp.data.update(step)
        if exp.data["status"] != old:
            exp.events.append(
                {
                    "at": "2026-11-29T12:01:00Z",
                    "from": old,
                    "to": exp.data["status"],
                    "reason": "polled",
                    "attempt": 1,
                }
            )
        if exp.data["status"] in ("Succeeded", "Failed"):
            exp.data["finishedTime"] = "2026-11-29T12:05:00Z"

    def live(self, exp_id: str) -> FakeExperiment | None:
        exp = self.experiments.get(exp_id)
        return None if exp is None or exp.deleted else exp

    # -- handlers ------------------------------------------------------------------------------
    async def submit(self, request: Request) -> Response:
        try:
            spec = json.loads(await request.body())
        except ValueError:
            return envelope(code=400, message="Invalid JSON body")
        if not isinstance(spec, dict) or not (spec.get("meta") or {}).get("name"):
            return envelope(code=400, message="Invalid spec: meta.name is required")
        key = request.headers.get("idempotency-key")
        if key and key in self.keys:
            return envelope(self.experiments[self.keys[key]].data)
        exp_id = self.add(spec=spec, script=self.next_script)
        if key:
            self.keys[key] = exp_id
        return envelope(self.experiments[exp_id].data)

    async def list(self, request: Request) -> Response:
        status = request.query_params.get("status")
        page = int(request.query_params.get("page", "1"))
        size = int(request.query_params.get("pageSize", "20"))
        deleted = (status or "").lower() == "deleted"
        with self.lock:
            items = [e.data for e in self.experiments.values() if e.deleted == deleted]
        if status:
            items = [e for e in items if e["status"].lower() == status.lower()]
        name, namespace = request.query_params.get("name"), request.query_params.get("namespace")
        if name:
            items = [e for e in items if e["spec"]["meta"]["name"] == name]
        if namespace:
            items = [e for e in items if e["namespace"] == namespace]
        chunk = items[(page - 1) * size : page * size]
        return envelope(chunk, total=len(items), page=page, pageSize=size)

    async def get(self, request: Request) -> Response:
        exp_id = request.path_params["id"]
        if exp_id == "broken":
            return PlainTextResponse("<html><body>502 Bad Gateway</body></html>", status_code=502)
        with self.lock:
            exp = self.live(exp_id)
            if exp is None:
                return envelope(code=404, message=f"Experiment {exp_id} not found")
            answer = dict(exp.data)
            self.advance(exp)  # answer first, then move on: the next GET sees the next step
            return envelope(answer)

    async def delete(self, request: Request) -> Response:
        exp_id = request.path_params["id"]
        with self.lock:
            exp = self.live(exp_id)
            if exp is None:
                return envelope(code=404, message=f"Experiment {exp_id} not found")
            exp.deleted = True
            exp.data["status"] = "Deleted"
            return envelope(exp.data)

    async def stop(self, request: Request) -> Response:
        exp_id = request.path_params["id"]
        with self.lock:
            exp = self.live(exp_id)
            if exp is None:
                return envelope(code=404, message=f"Experiment {exp_id} not found")
            exp.data.update(status="Failed", reason="stopped by admin", failureCategory="killed")
            return envelope(exp.data)

    async def logs(self, request: Request) -> Response:
        exp_id = request.path_params["id"]
        replica = request.query_params.get("replica")
        tail = request.query_params.get("tail")
        with self.lock:
            exp = self.live(exp_id)
            if exp is None and request.query_params.get("deleted") == "true":
                exp = self.experiments.get(exp_id)
            if exp is None:
                return envelope(code=404, message=f"Experiment {exp_id} not found")
            if replica and not {replica, f"{exp_id}-{replica}"} & set(exp.logs):
                return envelope(code=404, message=f"experiment {exp_id} has no replica '{replica}'")
            content = []
            for pod, lines in exp.logs.items():
                if replica and pod not in (replica, f"{exp_id}-{replica}"):
                    continue
                shown = lines[-int(tail) :] if tail is not None and int(tail) > 0 else lines
                content.append({"podName": pod, "podLog": [] if tail == "0" else list(shown)})
        return envelope({"experimentId": exp_id, "logContent": content})

    async def events(self, request: Request) -> Response:
        exp = self.live(request.path_params["id"])
        if exp is None:
            return envelope(code=404, message="Experiment not found")
        return envelope(exp.events)

    async def cluster_list(self, request: Request) -> Response:
        return envelope(self.clusters)

    async def cluster_get(self, request: Request) -> Response:
        for item in self.clusters:
            if item["name"] == request.path_params["name"]:
                answer = dict(item)
                if item.get("workloads"):  # a draining cluster empties by one per read
                    item["workloads"] -= 1
                    item["drained"] = item["workloads"] == 0
                return envelope(answer)
        return envelope(code=404, message=f"Cluster {request.path_params['name']} not found")

    async def cluster_drain(self, request: Request) -> Response:
        for item in self.clusters:
            if item["name"] == request.path_params["name"]:
                item.update(state="Draining", draining=True, drained=item.get("workloads") == 0)
                return envelope(item)
        return envelope(code=404, message=f"Cluster {request.path_params['name']} not found")

    def app(self) -> Starlette:
        async def record(request: Request, call_next: Any) -> Response:
            self.requests.append((request.method, request.url.path, dict(request.headers)))
            return await call_next(request)

        p = "/api/v1"
        return Starlette(
            middleware=[Middleware(BaseHTTPMiddleware, dispatch=record)],
            routes=[
                Route(f"{p}/experiment", self.submit, methods=["POST"]),
                Route(f"{p}/experiment", self.list, methods=["GET"]),
                Route(f"{p}/experiment/logs/{{id}}", self.logs, methods=["GET"]),
                Route(f"{p}/experiment/{{id}}/events", self.events, methods=["GET"]),
                Route(f"{p}/experiment/{{id}}/stop", self.stop, methods=["POST"]),
                Route(f"{p}/experiment/{{id}}", self.get, methods=["GET"]),
                Route(f"{p}/experiment/{{id}}", self.delete, methods=["DELETE"]),
                Route(f"{p}/cluster", self.cluster_list, methods=["GET"]),
                Route(f"{p}/cluster/{{name}}", self.cluster_get, methods=["GET"]),
                Route(f"{p}/cluster/{{name}}/drain", self.cluster_drain, methods=["POST"]),
            ],
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

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(main, ["--url", server[1], *args], input=input, env={"COLUMNS": "200"})

    return invoke


def assert_clean_failure(result: Result, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------- submit
def test_submit_from_yaml_file(fake: FakeBroker, cli: Any, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(SPEC_YAML)
    result = cli("experiment", "submit", "-f", str(spec_file))
    assert result.exit_code == 0, result.output
    (exp_id,) = fake.experiments
    assert f"experiment {exp_id} submitted: Accepted" in result.output
    assert fake.experiments[exp_id].data["spec"]["meta"]["name"] == "mnist"


def test_submit_from_json_file_and_json_output(fake: FakeBroker, cli: Any, tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.txt"  # the content decides, not the extension
    spec_file.write_text(json.dumps(SPEC))
    result = cli("experiment", "submit", "-f", str(spec_file), "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["status"] == "Accepted"
    assert created["spec"] == SPEC


def test_submit_from_stdin_with_idempotency_key(fake: FakeBroker, cli: Any) -> None:
    first = cli("experiment", "submit", "-f", "-", "--idempotency-key", "k-1", input=SPEC_YAML)
    again = cli("experiment", "submit", "-f", "-", "--idempotency-key", "k-1", input=SPEC_YAML)
    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    assert len(fake.experiments) == 1
    assert first.output == again.output
    posts = [headers for method, _, headers in fake.requests if method == "POST"]
    assert [h.get("idempotency-key") for h in posts] == ["k-1", "k-1"]


def test_submit_bad_yaml_names_the_file(fake: FakeBroker, cli: Any, tmp_path: Path) -> None:
    spec_file = tmp_path / "broken.yaml"
    spec_file.write_text("meta:\n  name: [unclosed\n  cmd: x\n")
    result = cli("experiment", "submit", "-f", str(spec_file))
    assert_clean_failure(result)
    assert f"Error: {spec_file} is not valid YAML" in result.output
    assert not fake.requests


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"meta": {"name": "x",}', "is not valid JSON"),
        ("- just\n- a list\n", "must be a mapping"),
        ("   \n", "is empty"),
    ],
)
def test_submit_other_bad_specs(
    fake: FakeBroker, cli: Any, tmp_path: Path, content: str, expected: str
) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(content)
    result = cli("experiment", "submit", "-f", str(spec_file))
    assert_clean_failure(result)
    assert str(spec_file) in result.output and expected in result.output


def test_submit_missing_file_and_server_rejection(fake: FakeBroker, cli: Any, tmp_path: Path) -> None:
    missing = cli("experiment", "submit", "-f", str(tmp_path / "nope.yaml"))
    assert_clean_failure(missing)
    assert f"cannot read {tmp_path / 'nope.yaml'}" in missing.output
    rejected = cli("experiment", "submit", "-f", "-", input="meta: {framework: TensorFlow}\n")
    assert_clean_failure(rejected)
    assert "Error: Invalid spec: meta.name is required" in rejected.output


def test_submit_wait_follows_to_success(fake: FakeBroker, cli: Any) -> None:
    fake.next_script = [{"status": "Running", "cluster": "ray-east"}, {"status": "Succeeded"}]
    args = ("experiment", "submit", "-f", "-", "--wait", "--interval", "0.01", "--timeout", "30")
    result = cli(*args, input=SPEC_YAML)
    assert result.exit_code == 0, result.output
    (exp_id,) = fake.experiments
    assert f"experiment {exp_id} submitted: Accepted" in result.output
    assert result.output.splitlines()[-1].endswith(f"{exp_id} Succeeded on ray-east")


# ---------------------------------------------------------------------------- list / get / delete
def cells(line: str) -> list[str]:
    """The cells of one row (or the header) of a table the CLI printed."""
    return [cell.strip() for cell in line.replace("┃", "│").split("│")]


def test_list_table_and_json(fake: FakeBroker, cli: Any) -> None:
    running = fake.add("Running", cluster="ray-east")
    failed = fake.add("Failed", reason="exit code 3")
    result = cli("experiment", "list")
    assert result.exit_code == 0, result.output
    for text in (
        running,
        failed,
        "Running",
        "Failed",
        "ray-east",
        "mnist-json",
        "PyTorch",
        "2026-11-29 12:00:00Z",
    ):
        assert text in result.output
    assert "page 1 of 1, 2 experiment(s) in all" in result.output
    assert cells(result.output.splitlines()[0]) == [
        "ID", "NAME", "NAMESPACE", "OWNER", "FRAMEWORK", "STATUS", "CLUSTER", "ACCEPTED", "DURATION"
    ]  # fmt: skip

    as_json = cli("experiment", "list", "--status", "running", "--json")
    assert as_json.exit_code == 0, as_json.output
    assert [e["experimentId"] for e in json.loads(as_json.stdout)] == [running]


def test_list_shows_namespace_owner_and_duration(fake: FakeBroker, cli: Any) -> None:
    done = fake.add(
        "Succeeded",
        namespace="vision",
        owner="bob",
        runningTime="2026-11-29T12:00:10Z",
        finishedTime="2026-11-29T12:03:15Z",
    )
    waiting = fake.add("Accepted", namespace="nlp", owner="carol")
    rows = {cells(line)[0]: cells(line) for line in cli("experiment", "list").output.splitlines()[2:-1]}
    assert rows[done][2:4] == ["vision", "bob"] and rows[done][-1] == "3m05s"
    assert rows[waiting][2:4] == ["nlp", "carol"] and rows[waiting][-1] == "-"
    only = cli("experiment", "list", "-n", "nlp", "--json")
    assert [e["experimentId"] for e in json.loads(only.stdout)] == [waiting]


def test_duration_counts_from_running_to_finished_or_now() -> None:
    from datetime import UTC, datetime

    from broker.cli.render import fmt_duration, fmt_seconds

    now = datetime(2026, 11, 29, 14, 0, 0, tzinfo=UTC)
    assert fmt_duration({"status": "Running", "runningTime": "2026-11-29T12:00:00Z"}, now) == "2h00m"
    assert fmt_duration({"status": "Created", "createdTime": "2026-11-29T13:59:18Z"}, now) == "42s"
    assert fmt_duration({"status": "Failed", "finishedTime": "2026-11-29T12:00:00Z"}, now) == "-"
    assert fmt_duration({"status": "Deleted", "runningTime": "2026-11-29T12:00:00Z"}, now) == "-"
    assert [fmt_seconds(x) for x in (0, 59, 60, 3599, 3600, 90000)] == [
        "0s",
        "59s",
        "1m00s",
        "59m59s",
        "1h00m",
        "1d01h",
    ]


def test_list_paging_and_empty(fake: FakeBroker, cli: Any) -> None:
    ids = [fake.add() for _ in range(3)]
    result = cli("experiment", "list", "--page", "2", "--page-size", "2")
    assert result.exit_code == 0, result.output
    assert ids[2] in result.output and ids[0] not in result.output
    assert "page 2 of 2, 3 experiment(s) in all" in result.output
    empty = cli("experiment", "list", "--status", "Succeeded")
    assert empty.exit_code == 0 and "No experiments." in empty.output


def test_get_shows_details_reason_and_events(fake: FakeBroker, cli: Any) -> None:
    exp_id = fake.add(
        "Running",
        script=[{"status": "Failed", "reason": "OOMKilled in worker-0", "failureCategory": "killed"}],
    )
    assert json.loads(cli("experiment", "get", exp_id, "--json").stdout)["status"] == "Running"
    result = cli("experiment", "get", exp_id)
    assert result.exit_code == 0, result.output
    for text in (
        exp_id,
        "Failed",
        "OOMKilled in worker-0",
        "killed",
        "Events",
        "submitted",
        "polled",
        "Worker x2",
    ):
        assert text in result.output

    as_json = cli("experiment", "get", exp_id, "--json")
    assert json.loads(as_json.stdout)["reason"] == "OOMKilled in worker-0"


def named(name: str, namespace: str = "default") -> dict[str, Any]:
    return {"spec": {**SPEC, "meta": {**SPEC["meta"], "name": name}}, "namespace": namespace}


def test_commands_take_a_unique_name_instead_of_an_id(fake: FakeBroker, cli: Any) -> None:
    exp_id = fake.add("Running", **named("resnet"), script=[{"status": "Succeeded"}])
    fake.add("Running", **named("other"))
    got = cli("experiment", "get", "resnet", "--json")
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)["experimentId"] == exp_id
    waited = cli("experiment", "wait", "resnet", "--interval", "0.01", "--timeout", "30")
    assert waited.exit_code == 0 and waited.output.splitlines()[-1].endswith(f"{exp_id} Succeeded")
    stopped = cli("experiment", "stop", "other")
    assert stopped.exit_code == 0 and "stopped: Failed" in stopped.output
    deleted = cli("experiment", "delete", "resnet")
    assert deleted.exit_code == 0 and f"experiment {exp_id} deleted: Deleted" in deleted.output
    gone = cli("experiment", "get", "resnet")
    assert_clean_failure(gone)
    assert "Error: Experiment resnet not found" in gone.output  # the server's own 404
    bad_replica = cli("experiment", "logs", "other", "--replica", "chief-0")
    assert_clean_failure(bad_replica)
    assert "has no replica 'chief-0'" in bad_replica.output


def test_a_name_several_live_experiments_share_is_an_error_listing_their_ids(
    fake: FakeBroker, cli: Any
) -> None:
    first = fake.add("Running", **named("sweep"))
    second = fake.add("Failed", **named("sweep"))
    elsewhere = fake.add("Running", **named("sweep", "nlp"))
    result = cli("experiment", "logs", "sweep")
    assert_clean_failure(result)
    for text in ("'sweep' names 3 live experiments", first, second, elsewhere, "namespace nlp", "-n"):
        assert text in result.output
    same_namespace = cli("experiment", "stop", "sweep", "-n", "default")
    assert_clean_failure(same_namespace)
    assert "names 2 live experiments in namespace default" in same_namespace.output
    assert elsewhere not in same_namespace.output and "give the id" in same_namespace.output
    one = cli("experiment", "get", "sweep", "-n", "nlp", "--json")
    assert one.exit_code == 0 and json.loads(one.stdout)["experimentId"] == elsewhere


def test_a_failure_shown_by_get_and_wait_ends_with_the_failed_replicas_last_lines(
    fake: FakeBroker, cli: Any
) -> None:
    reason = "replica worker-1 exited with code 3"
    exp_id = fake.add("Failed", reason=reason, failureCategory="exit_code")
    fake.experiments[exp_id].logs = {
        f"{exp_id}-worker-0": ["w0 fine"],
        f"{exp_id}-worker-1": [f"line {i}" for i in range(15)] + ["ValueError: bad input"],
    }
    got = cli("experiment", "get", exp_id)
    assert got.exit_code == 0, got.output
    tail = got.output.split("Last log lines of worker-1:")[1].split()
    assert tail[-3:] == ["ValueError:", "bad", "input"] and "line 5" not in got.output
    assert "w0 fine" not in got.output
    waited = cli("experiment", "wait", exp_id, "--interval", "0.01")
    assert waited.exit_code == 1
    lines = waited.output.splitlines()
    assert f"experiment {exp_id} failed: {reason} [exit_code]" in lines
    assert lines[-2:] == ["  line 14", "  ValueError: bad input"]
    # A reason naming no replica, with several replicas: no guess.
    vague = fake.add("Failed", reason="TFJob failed", failureCategory="exit_code")
    fake.experiments[vague].logs = {f"{vague}-worker-0": ["a"], f"{vague}-worker-1": ["b"]}
    assert "Last log lines" not in cli("experiment", "get", vague).output


def test_get_unknown_is_a_clean_404(fake: FakeBroker, cli: Any) -> None:
    result = cli("experiment", "get", "experiment-404")
    assert_clean_failure(result)
    assert "Error: Experiment experiment-404 not found" in result.output


def test_delete(fake: FakeBroker, cli: Any) -> None:
    exp_id = fake.add("Running")
    result = cli("experiment", "delete", exp_id)
    assert result.exit_code == 0, result.output
    assert f"experiment {exp_id} deleted: Deleted" in result.output
    assert_clean_failure(cli("experiment", "delete", exp_id))


def test_non_json_answer_is_a_clean_error(fake: FakeBroker, cli: Any) -> None:
    result = cli("experiment", "get", "broken")
    assert_clean_failure(result)
    assert "answered HTTP 502 with a non-JSON body" in result.output


# ---------------------------------------------------------------------------- logs
def test_logs_all_replicas_prefixed_and_tail(fake: FakeBroker, cli: Any) -> None:
    exp_id = fake.add("Running")
    fake.experiments[exp_id].logs = {
        f"{exp_id}-worker-0": ["w0 one", "w0 two", "w0 three"],
        f"{exp_id}-ps-0": ["ps one"],
    }
    result = cli("experiment", "logs", exp_id)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "[worker-0] w0 one",
        "[worker-0] w0 two",
        "[worker-0] w0 three",
        "[ps-0] ps one",
    ]

    tail = cli("experiment", "logs", exp_id, "--tail", "1")
    assert tail.output.splitlines() == ["[worker-0] w0 three", "[ps-0] ps one"]

    one = cli("experiment", "logs", exp_id, "--replica", f"{exp_id}-worker-0", "--tail", "2")
    assert one.output.splitlines() == ["w0 two", "w0 three"]


def test_logs_follow_prints_new_lines_once_and_ends(fake: FakeBroker, cli: Any) -> None:
    pod = "{}-worker-0"
    exp_id = fake.add("Created")
    worker = pod.format(exp_id)
    fake.experiments[exp_id].logs = {worker: ["old 1", "old 2"]}
    fake.experiments[exp_id].script = [
        {"status": "Running"},
        {"logs": {worker: ["step 1"]}},
        {},
        {"logs": {worker: ["step 2", "step 3"]}},
        {"status": "Succeeded", "logs": {worker: ["done"]}},
    ]
    result = cli("experiment", "logs", exp_id, "--follow", "--tail", "1", "--interval", "0.01")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["old 2", "step 1", "step 2", "step 3", "done"]
    assert result.stderr.splitlines() == [f"experiment {exp_id} Succeeded"]  # it ends like wait
    assert not fake.experiments[exp_id].script


def test_logs_follow_of_a_failure_ends_with_it_and_exits_1(fake: FakeBroker, cli: Any) -> None:
    exp_id = fake.add("Running")
    worker = f"{exp_id}-worker-0"
    fake.experiments[exp_id].logs = {worker: ["starting"]}
    fake.experiments[exp_id].script = [
        {"status": "Failed", "reason": "replica worker-0 exited with code 3", "failureCategory": "exit_code"},
    ]
    result = cli("experiment", "logs", exp_id, "--follow", "--interval", "0.01")
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == ["starting"]
    assert result.stderr.splitlines() == [
        f"experiment {exp_id} failed: replica worker-0 exited with code 3 [exit_code]"
    ]


def test_logs_of_a_deleted_experiment_with_deleted(fake: FakeBroker, cli: Any) -> None:
    exp_id = fake.add("Succeeded", spec={**SPEC, "meta": {**SPEC["meta"], "name": "gone"}})
    fake.experiments[exp_id].logs = {f"{exp_id}-worker-0": ["kept line"]}
    fake.experiments[exp_id].deleted = True
    fake.experiments[exp_id].data["status"] = "Deleted"
    assert_clean_failure(cli("experiment", "logs", exp_id))
    for ref in (exp_id, "gone"):  # by id, or by the name among deleted experiments
        result = cli("experiment", "logs", ref, "--deleted")
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == ["kept line"]
    both = cli("experiment", "logs", exp_id, "--deleted", "--follow")
    assert both.exit_code == 2 and "a deleted one has ended" in both.output


def test_logs_follow_unknown_experiment(fake: FakeBroker, cli: Any) -> None:
    result = cli("experiment", "logs", "experiment-404", "--follow")
    assert_clean_failure(result)
    assert "not found" in result.output


# ---------------------------------------------------------------------------- wait
def test_wait_succeeded_exits_0(fake: FakeBroker, cli: Any) -> None:
    exp_id = fake.add(
        "Accepted",
        statusMessage="no cluster has 4 GPUs free",
        script=[
            {"status": "Created", "cluster": "k8s-west", "statusMessage": None},
            {"status": "Running"},
            {"status": "Succeeded"},
        ],
    )
    result = cli("experiment", "wait", exp_id, "--interval", "0.01", "--timeout", "30")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].endswith(f"{exp_id} Accepted (no cluster has 4 GPUs free)")
    assert lines[-1].endswith(f"{exp_id} Succeeded on k8s-west")
    assert any("Running on k8s-west" in line for line in lines)


def test_wait_failed_exits_1_with_reason(fake: FakeBroker, cli: Any) -> None:
    exp_id = fake.add(
        "Running", script=[{"status": "Failed", "reason": "exit code 137", "failureCategory": "killed"}]
    )
    result = cli("experiment", "wait", exp_id, "--interval", "0.01", "--timeout", "30")
    assert result.exit_code == 1, result.output
    assert f"experiment {exp_id} failed: exit code 137 [killed]" in result.output


def test_wait_deleted_meanwhile_exits_1(fake: FakeBroker, cli: Any) -> None:
    exp_id = fake.add("Running")

    def delete_soon() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(1 for r in fake.requests if r[1].endswith(exp_id)) < 2:
            time.sleep(0.01)
        fake.experiments[exp_id].deleted = True

    helper = threading.Thread(target=delete_soon)
    helper.start()
    result = cli("experiment", "wait", exp_id, "--interval", "0.01", "--timeout", "30")
    helper.join(timeout=15)
    assert result.exit_code == 1, result.output
    assert f"experiment {exp_id} was deleted" in result.output


def test_wait_timeout_exits_2(fake: FakeBroker, cli: Any) -> None:
    exp_id = fake.add("Accepted")
    result = cli("experiment", "wait", exp_id, "--interval", "0.05", "--timeout", "0.2")
    assert_clean_failure(result, code=2)
    assert f"timed out after 0.2s waiting for experiment {exp_id} (last status: Accepted)" in result.output


def test_wait_unknown_is_a_clean_404(fake: FakeBroker, cli: Any) -> None:
    result = cli("experiment", "wait", "experiment-404", "--timeout", "1")
    assert_clean_failure(result)
    assert "Error: Experiment experiment-404 not found" in result.output


# ---------------------------------------------------------------------------- clusters
def cluster_obj(name: str, state: str = "Ready", **labels: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "kubernetes",
        "labels": labels,
        "weight": 1.0,
        "state": state,
        "message": "" if state == "Ready" else "connection refused",
        "capacity": {
            "total": {"cpu": 16.0, "memory": 64 * GiB, "gpu": 4},
            "free": {"cpu": 12.5, "memory": 48 * GiB, "gpu": 1},
        },
        "running": 3,
        "lastCheck": "2026-11-29T12:00:00Z",
    }


def test_cluster_list_and_get(fake: FakeBroker, cli: Any) -> None:
    fake.clusters = [cluster_obj("k8s-west", zone="us-west"), cluster_obj("ray-east", state="Unreachable")]
    result = cli("cluster", "list")
    assert result.exit_code == 0, result.output
    for text in (
        "k8s-west",
        "ray-east",
        "Ready",
        "Unreachable",
        "12.5/16",
        "48Gi/64Gi",
        "1/4",
        "zone=us-west",
    ):
        assert text in result.output

    as_json = cli("cluster", "list", "--json")
    assert [c["name"] for c in json.loads(as_json.stdout)] == ["k8s-west", "ray-east"]

    one = cli("cluster", "get", "ray-east")
    assert one.exit_code == 0, one.output
    assert "connection refused" in one.output and "48Gi/64Gi" in one.output

    missing = cli("cluster", "get", "nowhere")
    assert_clean_failure(missing)
    assert "Error: Cluster nowhere not found" in missing.output


def test_a_draining_cluster_says_how_much_is_left_and_drain_wait_waits_for_empty(
    fake: FakeBroker, cli: Any
) -> None:
    fake.clusters = [{**cluster_obj("k8s-west"), "workloads": 2, "drained": False}]
    result = cli("cluster", "drain", "k8s-west", "--wait", "--interval", "0.01", "--timeout", "30")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "cluster k8s-west set to drain: Draining (draining: 2 running)"
    assert lines[-1] == "cluster k8s-west drained: empty, safe to remove"
    listed = cli("cluster", "list")
    assert "Draining (drained: empty, safe to remove)" in listed.output
    got = cli("cluster", "get", "k8s-west")
    assert "drained: empty, safe to remove" in got.output and "Workloads (this broker)" in got.output


def test_drain_wait_times_out_with_exit_2(fake: FakeBroker, cli: Any) -> None:
    fake.clusters = [{**cluster_obj("slow"), "workloads": 10**6, "drained": False}]
    result = cli("cluster", "drain", "slow", "--wait", "--interval", "0.05", "--timeout", "0.2")
    assert_clean_failure(result, code=2)
    assert "timed out after 0.2s waiting for cluster slow to drain (draining:" in result.output


def test_cordon_and_drain_help_say_how_they_differ(cli: Any) -> None:
    cordon = " ".join(cli("cluster", "cordon", "--help").output.split())
    drain = " ".join(cli("cluster", "drain", "--help").output.split())
    assert "Per broker process" not in cordon + drain
    assert "Pause" in cordon and "'uncordon' lifts it" in cordon
    assert "Nothing is evicted" in drain and "drained: empty, safe to remove" in drain and "--wait" in drain
    assert "every broker replica honours it" in cordon and "every broker replica honours it" in drain


# ---------------------------------------------------------------------------- connection, auth, env
def test_unreachable_broker_is_a_clean_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = CliRunner().invoke(main, ["--url", url, "experiment", "list"])
    assert_clean_failure(result)
    assert f"Error: cannot reach the broker at {url}" in result.output
    with pytest.raises(BrokerUnreachable):
        BrokerClient(url).list_clusters()


def test_url_and_token_from_environment(server: tuple[FakeBroker, str], fake: FakeBroker) -> None:
    env = {"SUBMARINE_BROKER_URL": server[1] + "/", "SUBMARINE_BROKER_TOKEN": "s3cret"}
    result = CliRunner().invoke(main, ["cluster", "list"], env=env)
    assert result.exit_code == 0, result.output
    assert fake.requests[-1][1] == "/api/v1/cluster"
    assert fake.requests[-1][2]["authorization"] == "Bearer s3cret"


def test_client_api_directly(server: tuple[FakeBroker, str], fake: FakeBroker) -> None:
    with BrokerClient(server[1] + "/api/v1") as client:
        created = client.submit_experiment(SPEC)
        page = client.list_experiments(page_size=10)
        assert [e["experimentId"] for e in page.items] == [created["experimentId"]]
        assert (page.total, page.page, page.page_size) == (1, 1, 10)
        assert client.experiment_events(created["experimentId"])[0]["to"] == "Accepted"
        with pytest.raises(NotFound) as missing:
            client.get_experiment("nope/../x")
        assert missing.value.code == 404
        with pytest.raises(BrokerError) as bad:
            client.submit_experiment({"meta": {}})
        assert (bad.value.code, bad.value.message) == (400, "Invalid spec: meta.name is required")
