"""Submarine's registry REST (``/api/v1/registered-model``, ``/api/v1/model-version``) and the
broker's history and alias endpoints on a token broker: bad input gets a 4xx envelope naming the
field, another team's model is 404, a deny line on ``promote`` is a 403 naming it, and every
change is in the history once, with who made it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.model_folders import auth, model_folder
from tests.support import Broker
from tests.test_permissions import make_users


class Api:
    """One user's httpx client on ``/api/v1``, and that user's token."""

    def __init__(self, broker: Broker, token: str) -> None:
        self.token = token
        self.http = httpx.Client(base_url=broker.url + "/api/v1", headers=auth(token), timeout=30)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def teams(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Broker, dict[str, Api]]]:
    """A token broker (on each database) with alice (vision), bob (nlp), carol (no team), root (admin)."""
    url = request.getfixturevalue("pg_module_url") if request.param == "postgres" else None
    broker = Broker(tmp_path_factory.mktemp(f"registry-{request.param}"), auth="token", database_url=url)
    tokens = make_users(broker)
    broker.start()
    users = {name: Api(broker, token) for name, token in tokens.items()}
    yield broker, users
    for user in users.values():
        user.http.close()
    broker.close()


def refused(answer: httpx.Response, code: int, field: str | None = None) -> str:
    """Assert a ``code`` envelope (naming ``field`` in ``attributes.errors`` when given); its message."""
    assert answer.status_code == code, answer.text
    body = answer.json()
    assert body["code"] == code and body["success"] is None and body["result"] is None, body
    assert isinstance(body["message"], str) and body["message"], body
    if field is not None:
        fields = [e["field"] for e in body["attributes"].get("errors", [])]
        assert field in fields or body["message"].startswith(f"{field}:"), body
        assert field in body["message"], body
    return str(body["message"])


def result(answer: httpx.Response) -> Any:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True, body
    return body["result"]


def new_model(user: Api, name: str, **fields: Any) -> None:
    result(user.post("/registered-model", json={"name": name, **fields}))


def new_version(broker: Broker, user: Api, name: str, **fields: Any) -> int:
    base_dir = model_folder(broker.url, user.token, experiment=f"files-{name}")
    result(user.post("/model-version", params={"baseDir": base_dir}, json={"name": name, **fields}))
    return int(result(user.get(f"/model-version/{quote(name, safe='')}"))[-1]["version"])


def test_bad_input_is_a_clear_envelope(teams) -> None:
    broker, users = teams
    alice = users["alice"]
    refused(alice.get("/registered-model/no-such-model"), 404)
    refused(alice.get("/model-version/no-such-model"), 404)
    refused(alice.get("/model-version/no-such-model/1"), 404)
    refused(alice.post("/registered-model", json={"description": "nameless"}), 400, "name")
    refused(alice.post("/registered-model", json={"name": "   "}), 400, "name")
    refused(alice.post("/registered-model", json={"name": "x", "tags": "not-a-list"}), 400, "tags")
    refused(
        alice.post("/registered-model", content=b"{not json", headers={"Content-Type": "application/json"}),
        400,
    )
    new_model(alice, "bad-input")
    message = refused(alice.post("/registered-model", json={"name": "bad-input"}), 409)
    assert "bad-input" in message
    new_model(alice, "bad-input-2")
    refused(alice.patch("/registered-model/bad-input-2", json={"name": "bad-input"}), 409)
    refused(alice.patch("/registered-model/bad-input-2", json={"name": ""}), 400, "name")
    refused(alice.patch("/registered-model/bad-input-2", json={"description": 7}), 400, "description")

    empty = model_folder(broker.url, alice.token, experiment="no-description", description={})
    refused(
        alice.post("/model-version", params={"baseDir": empty}, json={"name": "bad-input"}), 400, "baseDir"
    )
    refused(alice.post("/model-version", json={"name": "bad-input"}), 400, "baseDir")
    base_dir = model_folder(broker.url, alice.token, experiment="bad-input-files")
    refused(alice.post("/model-version", params={"baseDir": base_dir}, json={}), 400, "name")
    refused(alice.post("/model-version", params={"baseDir": base_dir}, json={"name": "no-such-model"}), 404)
    assert result(alice.get("/model-version/bad-input")) == []  # nothing half-made

    version = new_version(broker, alice, "bad-input")
    patch = {"name": "bad-input", "version": version}
    refused(alice.patch("/model-version", json={**patch, "currentStage": "Live"}), 400, "currentStage")
    refused(
        alice.patch("/model-version", json={"name": "bad-input", "currentStage": "Production"}),
        400,
        "version",
    )
    refused(alice.patch("/model-version", json={**patch, "version": "two"}), 400, "version")
    refused(alice.patch("/model-version", json={**patch, "version": 99}), 404)
    refused(alice.get("/model-version/bad-input/two"), 400, "version")
    refused(alice.get("/model-version/bad-input/0"), 400, "version")
    refused(alice.delete("/model-version/bad-input/1.5"), 400, "version")
    refused(
        alice.post("/model-version/tag", params={"name": "bad-input", "version": "v1", "tag": "t"}),
        400,
        "version",
    )
    refused(alice.post("/registered-model/tag", params={"name": "bad-input"}), 400, "tag")
    refused(alice.delete("/registered-model/tag", params={"name": "bad-input", "tag": "never-set"}), 404)
    refused(
        alice.delete(
            "/model-version/tag", params={"name": "bad-input", "version": version, "tag": "never-set"}
        ),
        404,
    )
    refused(alice.get("/model-version/bad-input/99999999999999999999999"), 400, "version")
    assert result(alice.get(f"/model-version/bad-input/{version}"))["currentStage"] == "None"


def test_fixed_paths_are_not_model_names_and_escaped_names_work(teams) -> None:
    broker, users = teams
    alice = users["alice"]
    anonymous = httpx.get(broker.url + "/api/v1/registered-model/ping")
    assert anonymous.status_code == 200 and anonymous.json()["result"] == "Pong"
    assert httpx.get(broker.url + "/api/v1/model-version/ping").json()["result"] == "Pong"

    name = "vision model+1 ü"
    escaped = quote(name, safe="")
    new_model(alice, name, tags=["t"])
    result(alice.post("/registered-model/tag", params={"name": name, "tag": "ready"}))
    assert result(alice.get(f"/registered-model/{escaped}"))["tags"] == ["ready", "t"]
    result(alice.delete("/registered-model/tag", params={"name": name, "tag": "t"}))
    assert result(alice.get(f"/registered-model/{escaped}"))["tags"] == ["ready"]
    version = new_version(broker, alice, name)
    assert result(alice.get(f"/model-version/{escaped}/{version}"))["name"] == name
    assert [e["action"] for e in result(alice.get(f"/model-version/{escaped}/{version}/history"))] == [
        "version_created"
    ]
    assert name in [m["name"] for m in result(alice.get("/registered-model"))]


def test_another_teams_models_are_404(teams) -> None:
    broker, users = teams
    alice, bob, root = users["alice"], users["bob"], users["root"]
    new_model(alice, "vision-secret")
    version = new_version(broker, alice, "vision-secret")
    for path in (
        "/registered-model/vision-secret",
        "/registered-model/vision-secret/history",
        "/model-version/vision-secret",
        f"/model-version/vision-secret/{version}",
        f"/model-version/vision-secret/{version}/history",
    ):
        refused(bob.get(path), 404)
        assert result(alice.get(path)) is not None
        assert result(root.get(path)) is not None
    refused(
        bob.patch("/model-version", json={"name": "vision-secret", "version": version, "description": "x"}),
        404,
    )
    refused(bob.delete(f"/model-version/vision-secret/{version}"), 404)
    refused(bob.delete("/registered-model/vision-secret"), 404)
    refused(bob.post("/registered-model/tag", params={"name": "vision-secret", "tag": "x"}), 404)
    assert "vision-secret" not in [m["name"] for m in result(bob.get("/registered-model"))]
    assert "vision-secret" in [m["name"] for m in result(alice.get("/registered-model"))]
    assert result(alice.get("/registered-model/vision-secret"))["namespace"] == "vision"


def test_a_deny_line_on_promote_is_a_403_naming_it(teams) -> None:
    broker, users = teams
    alice, root = users["alice"], users["root"]
    new_model(alice, "guarded")
    version = new_version(broker, alice, "guarded")
    line = "p, member, vision, model/*, promote, deny"
    result(root.post("/policy", json={"lines": [line], "message": "only leads promote"}))
    try:
        message = refused(
            alice.patch(
                "/model-version", json={"name": "guarded", "version": version, "currentStage": "Production"}
            ),
            403,
        )
        assert line in message
        # Describing is edit, not promote: still allowed; the stage did not move.
        result(
            alice.patch("/model-version", json={"name": "guarded", "version": version, "description": "ok"})
        )
        found = result(alice.get(f"/model-version/guarded/{version}"))
        assert found["currentStage"] == "None" and found["description"] == "ok"
    finally:
        result(root.request("DELETE", "/policy", json={"lines": [line]}))
    result(
        alice.patch(
            "/model-version", json={"name": "guarded", "version": version, "currentStage": "Production"}
        )
    )
    assert result(alice.get(f"/model-version/guarded/{version}"))["currentStage"] == "Production"


def test_every_change_is_in_the_history_once_with_its_actor(teams) -> None:
    broker, users = teams
    alice, root, bob = users["alice"], users["root"], users["bob"]
    new_model(alice, "audited", description="v0")
    first = new_version(broker, alice, "audited")
    second = new_version(broker, alice, "audited")
    result(alice.post("/registered-model/tag", params={"name": "audited", "tag": "team", "value": "vision"}))
    result(alice.post("/model-version/tag", params={"name": "audited", "version": first, "tag": "checked"}))
    promote = {"name": "audited", "version": first, "currentStage": "Production", "message": "best AUC"}
    result(alice.patch("/model-version", json=promote))
    result(root.post("/registered-model/audited/alias", params={"alias": "champion", "version": first}))
    result(root.post("/registered-model/audited/alias", params={"alias": "champion", "version": second}))
    result(
        alice.patch(
            "/model-version", json={**promote, "version": second, "archiveExisting": True, "message": ""}
        )
    )
    result(alice.delete("/registered-model/tag", params={"name": "audited", "tag": "team=vision"}))
    result(alice.patch("/registered-model/audited", json={"name": "audited-v2"}))

    events = result(alice.get("/registered-model/audited-v2/history"))
    seen = [(e["action"], e["version"], e["actor"], e["from"], e["to"]) for e in events]
    expected = [
        ("model_created", None, "alice", None, "audited"),
        ("version_created", first, "alice", None, str(first)),
        ("version_created", second, "alice", None, str(second)),
        ("model_tag_set", None, "alice", None, "vision"),
        ("version_tag_set", first, "alice", None, ""),
        ("stage_changed", first, "alice", "None", "Production"),
        ("alias_set", first, "root", None, str(first)),
        ("alias_set", second, "root", str(first), str(second)),
        ("stage_changed", second, "alice", "None", "Production"),
        ("stage_changed", first, "alice", "Production", "Archived"),
        ("model_tag_deleted", None, "alice", "vision", None),
        ("model_renamed", None, "alice", "audited", "audited-v2"),
    ]
    assert seen == expected  # each change once, in order, with who made it
    promoted = next(e for e in events if e["action"] == "stage_changed" and e["version"] == first)
    assert promoted["message"] == "best AUC" and promoted["at"].endswith("Z") and promoted["atMs"] > 0
    assert [e["atMs"] for e in events] == sorted(e["atMs"] for e in events)

    only_first = result(alice.get(f"/model-version/audited-v2/{first}/history"))
    assert {e["version"] for e in only_first} == {first}
    assert [e["action"] for e in only_first if e["action"] == "stage_changed"] == ["stage_changed"] * 2

    # Deleting keeps the history readable (after archiving what is in Production).
    result(
        alice.patch(
            "/model-version", json={"name": "audited-v2", "version": second, "currentStage": "Archived"}
        )
    )
    result(alice.delete("/registered-model/audited-v2"))
    refused(alice.get("/registered-model/audited-v2"), 404)
    kept = result(alice.get("/registered-model/audited-v2/history"))
    assert kept[-1]["action"] == "model_deleted" and kept[-1]["actor"] == "alice"
    assert len(kept) == len(events) + 2
    refused(bob.get("/registered-model/audited-v2/history"), 404)


def test_only_leads_promote_as_the_readme_says(teams) -> None:
    broker, users = teams
    alice, carol, root = users["alice"], users["carol"], users["root"]
    new_model(alice, "led")
    version = new_version(broker, alice, "led")
    removed = ["p, member, *, model/*, promote, allow"]
    added = ["p, member, nlp, model/*, promote, allow", "p, lead, vision, model/*, promote, allow"]
    teams_of_carol = ["g, carol, member, vision", "g, carol, lead, vision"]
    result(root.request("DELETE", "/policy", json={"lines": removed}))
    result(root.post("/policy", json={"lines": added + teams_of_carol}))
    try:
        promote = {"name": "led", "version": version, "currentStage": "Production"}
        assert "no policy line allows it" in refused(alice.patch("/model-version", json=promote), 403)
        result(carol.patch("/model-version", json=promote))
        assert result(alice.get(f"/model-version/led/{version}"))["currentStage"] == "Production"
        actors = [
            e["actor"]
            for e in result(alice.get("/registered-model/led/history"))
            if e["action"] == "stage_changed"
        ]
        assert actors == ["carol"]
    finally:
        result(root.request("DELETE", "/policy", json={"lines": added + teams_of_carol}))
        result(root.post("/policy", json={"lines": removed}))
