"""MLflow's registry REST paths against a real broker, without the client: MLflow's JSON shapes,
bad input answered with MLflow's codes (never a 5xx), another team's models hidden under
``auth: token``, and a replica's run token registering a version of its own run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from broker.model_registry.checks import MAX_TAG_VALUE
from tests.mlflow_support import rest
from tests.model_folders import model_folder
from tests.support import Broker, python_spec
from tests.test_permissions import make_users

MISSING = (404, "RESOURCE_DOES_NOT_EXIST")
INVALID = (400, "INVALID_PARAMETER_VALUE")


def code(answer: httpx.Response) -> tuple[int, str]:
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    return answer.status_code, answer.json().get("error_code", "")


def model_run(broker: Broker, http: httpx.Client, experiment: str) -> tuple[str, str]:
    """A run of ``experiment``, made as ``http``'s user, with a small model folder ("model") in its
    artifacts: (run id, the folder's artifact path)."""
    token = http.headers.get("authorization", "").removeprefix("Bearer ") or None
    path = model_folder(broker.url, token, experiment=experiment)
    return path.split("/")[1], path


# -- one broker without auth: shapes and bad input -------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def open_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Broker, httpx.Client]]:
    url = request.getfixturevalue("pg_module_url") if request.param == "postgres" else None
    settings = {"database_url": url} if url else {}
    broker = Broker(tmp_path_factory.mktemp(f"registry-rest-{request.param}"), **settings).start()
    client = rest(broker)
    yield broker, client
    client.close()
    broker.close()


def test_mlflow_json_shapes_of_models_and_versions(open_broker: tuple[Broker, httpx.Client]) -> None:
    broker, http = open_broker
    run_id, _ = model_run(broker, http, "shapes")
    created = http.post(
        "/registered-models/create",
        json={"name": "shaped", "description": "d", "tags": [{"key": "team", "value": "vision"}]},
    )
    assert created.status_code == 200, created.text
    model = created.json()["registered_model"]
    assert (model["name"], model["description"], model["tags"]) == (
        "shaped",
        "d",
        [{"key": "team", "value": "vision"}],
    )
    assert model["user_id"] and model["creation_timestamp"] > 0
    made = http.post(
        "/model-versions/create",
        json={
            "name": "shaped",
            "source": f"runs:/{run_id}/model",
            "run_id": run_id,
            "run_link": "http://x/run",
        },
    )
    assert made.status_code == 200, made.text
    version = made.json()["model_version"]
    assert version["version"] == "1"  # a string, as MLflow sends it
    assert (version["status"], version["current_stage"], version["run_id"]) == ("READY", "None", run_id)
    assert (version["source"], version["run_link"], version["aliases"]) == (
        f"runs:/{run_id}/model",
        "http://x/run",
        [],
    )
    assert (
        http.post("/registered-models/alias", json={"name": "shaped", "alias": "best", "version": "1"}).json()
        == {}
    )
    got = http.get("/registered-models/get", params={"name": "shaped"}).json()["registered_model"]
    assert got["aliases"] == [{"alias": "best", "version": "1"}]
    assert [v["version"] for v in got["latest_versions"]] == ["1"]
    uri = http.get("/model-versions/get-download-uri", params={"name": "shaped", "version": "1"}).json()
    assert uri["artifact_uri"].startswith("mlflow-artifacts:/registry/")
    # The same handlers answer under the web UI's prefix, and get-latest-versions by GET too.
    ajax = httpx.get(
        str(http.base_url).replace("/api/", "/ajax-api/") + "registered-models/get", params={"name": "shaped"}
    )
    assert ajax.json()["registered_model"]["name"] == "shaped"
    latest = http.get("/registered-models/get-latest-versions", params={"name": "shaped", "stages": "None"})
    assert [v["version"] for v in latest.json()["model_versions"]] == ["1"]


def test_bad_input_gets_mlflow_codes_and_never_a_5xx(open_broker: tuple[Broker, httpx.Client]) -> None:
    broker, http = open_broker
    run_id, path = model_run(broker, http, "bad-input")
    assert http.post("/registered-models/create", json={"name": "taken"}).status_code == 200
    version = {"name": "taken", "source": f"runs:/{run_id}/model"}
    assert http.post("/model-versions/create", json=version).status_code == 200
    cases: list[tuple[str, str, dict[str, Any], tuple[int, str]]] = [
        ("GET", "/registered-models/get", {"name": "nope"}, MISSING),
        ("GET", "/model-versions/get", {"name": "nope", "version": "1"}, MISSING),
        ("GET", "/model-versions/get", {"name": "taken", "version": "9"}, MISSING),
        ("GET", "/model-versions/get", {"name": "taken", "version": "one"}, INVALID),
        ("GET", "/model-versions/get", {"name": "taken"}, INVALID),
        ("GET", "/registered-models/get", {}, INVALID),
        ("POST", "/registered-models/create", {"name": "taken"}, (400, "RESOURCE_ALREADY_EXISTS")),
        ("POST", "/registered-models/create", {"name": ""}, INVALID),
        ("POST", "/registered-models/create", {"name": 5}, INVALID),
        ("POST", "/registered-models/create", {"name": "a/b"}, INVALID),
        (
            "POST",
            "/registered-models/create",
            {"name": "t", "tags": [{"key": "../x", "value": "v"}]},
            INVALID,
        ),
        ("POST", "/registered-models/create", {"name": "t", "tags": "nope"}, INVALID),
        ("POST", "/registered-models/rename", {"name": "taken"}, INVALID),
        ("POST", "/registered-models/rename", {"name": "nope", "new_name": "x"}, MISSING),
        ("DELETE", "/registered-models/delete", {"name": "nope"}, MISSING),
        ("POST", "/model-versions/create", {"name": "nope", "source": f"runs:/{run_id}/model"}, MISSING),
        ("POST", "/model-versions/create", {"name": "taken"}, INVALID),
        ("POST", "/model-versions/create", {"name": "taken", "source": "s3://bucket/model"}, INVALID),
        ("POST", "/model-versions/create", {"name": "taken", "source": "file:///etc"}, INVALID),
        (
            "POST",
            "/model-versions/create",
            {"name": "taken", "source": "https://elsewhere.example/m"},
            INVALID,
        ),
        ("POST", "/model-versions/create", {"name": "taken", "source": f"runs:/{'f' * 32}/model"}, MISSING),
        ("POST", "/model-versions/create", {"name": "taken", "source": "models:/taken/7"}, MISSING),
        (
            "POST",
            "/model-versions/transition-stage",
            {"name": "taken", "version": "1", "stage": "Live"},
            INVALID,
        ),
        ("POST", "/model-versions/transition-stage", {"name": "taken", "version": "1"}, INVALID),
        ("POST", "/registered-models/alias", {"name": "taken", "alias": "latest", "version": "1"}, INVALID),
        ("POST", "/registered-models/alias", {"name": "taken", "alias": "v2", "version": "1"}, INVALID),
        ("POST", "/registered-models/alias", {"name": "taken", "alias": "a b", "version": "1"}, INVALID),
        ("POST", "/registered-models/alias", {"name": "taken", "alias": "x", "version": "5"}, MISSING),
        ("GET", "/registered-models/alias", {"name": "taken", "alias": "nobody"}, MISSING),
        ("DELETE", "/registered-models/alias", {"name": "taken", "alias": "nobody"}, MISSING),
        ("DELETE", "/registered-models/delete-tag", {"name": "taken", "key": "absent"}, MISSING),
        ("POST", "/registered-models/set-tag", {"name": "taken", "key": ""}, INVALID),
        (
            "POST",
            "/model-versions/set-tag",
            {"name": "taken", "version": "1", "key": "k", "value": "v" * (MAX_TAG_VALUE + 1)},
            INVALID,
        ),
        ("GET", "/registered-models/search", {"max_results": "1001"}, INVALID),
        ("GET", "/registered-models/search", {"max_results": "0"}, INVALID),
        ("GET", "/registered-models/search", {"filter": "name =="}, INVALID),
        ("GET", "/registered-models/search", {"filter": "colour = 'red'"}, INVALID),
        ("GET", "/registered-models/search", {"order_by": "size"}, INVALID),
        ("GET", "/registered-models/search", {"page_token": "not-a-token"}, INVALID),
        ("GET", "/model-versions/search", {"max_results": "200001"}, INVALID),
        ("GET", "/model-versions/search", {"filter": "run_id = "}, INVALID),
    ]
    for method, route, args, expected in cases:
        answer = http.get(route, params=args) if method == "GET" else http.request(method, route, json=args)
        assert code(answer) == expected, (method, route, args, answer.text)
        assert answer.json()["message"], (method, route)
    source_problem = http.post(
        "/model-versions/create", json={"name": "taken", "source": "s3://bucket/model"}
    )
    assert "source" in source_problem.json()["message"]
    broken = http.post(
        "/registered-models/create", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert code(broken) == INVALID
    # Nothing half-written: the refusals above left one model with one version.
    assert [
        v["version"]
        for v in http.get("/model-versions/search", params={"filter": "name = 'taken'"}).json()[
            "model_versions"
        ]
    ] == ["1"]
    assert http.get("/registered-models/get", params={"name": "t"}).status_code == 404
    # MLflow's registry keeps tag values up to 100,000 characters: the longest one is taken whole.
    longest = "v" * MAX_TAG_VALUE
    tagged = http.post(
        "/model-versions/set-tag", json={"name": "taken", "version": "1", "key": "k", "value": longest}
    )
    assert tagged.status_code == 200, tagged.text
    shown = http.get("/model-versions/get", params={"name": "taken", "version": "1"}).json()
    assert {"key": "k", "value": longest} in shown["model_version"]["tags"]
    # The other forms of a source: a bare artifact path, an mlflow-artifacts: URI, this broker's
    # own artifact URL, another version (by number and by alias).
    assert (
        http.post(
            "/registered-models/alias", json={"name": "taken", "alias": "first", "version": "1"}
        ).status_code
        == 200
    )
    sources = [
        path,
        f"mlflow-artifacts:/{path}",
        f"{broker.url}/api/2.0/mlflow-artifacts/artifacts/{path}",
        "models:/taken/1",
        "models:/taken@first",
    ]
    for number, source in enumerate(sources, start=2):
        made = http.post("/model-versions/create", json={"name": "taken", "source": source})
        assert made.status_code == 200, (source, made.text)
        assert (made.json()["model_version"]["version"], made.json()["model_version"]["source"]) == (
            str(number),
            source,
        )
    downloads = [
        http.get("/model-versions/get-download-uri", params={"name": "taken", "version": str(n)}).json()[
            "artifact_uri"
        ]
        for n in range(1, len(sources) + 2)
    ]
    files = [
        sorted(
            f["path"].rsplit("/", 1)[-1]
            for f in httpx.get(
                f"{broker.url}/api/2.0/mlflow-artifacts/artifacts",
                params={"path": uri.removeprefix("mlflow-artifacts:/")},
            ).json()["files"]
        )
        for uri in downloads
    ]
    # Every version holds the same files, each its own copy in the registry's area.
    assert len(set(downloads)) == len(downloads)
    assert all(found == files[0] for found in files) and "description.json" in files[0], files


def test_text_no_database_stores_is_refused_on_the_mlflow_paths(
    open_broker: tuple[Broker, httpx.Client],
) -> None:
    """A NUL (PostgreSQL can neither store nor compare one) or a lone surrogate in any string of a
    body is INVALID_PARAMETER_VALUE naming the field, on the registry's and the tracking's paths."""
    broker, http = open_broker
    run_id, _ = model_run(broker, http, "not-text")
    assert http.post("/registered-models/create", json={"name": "texts"}).status_code == 200
    for route, body, field in [
        ("/registered-models/create", {"name": "a\x00"}, "name"),
        (
            "/registered-models/create",
            {"name": "b", "tags": [{"key": "k", "value": "\ud800"}]},
            "tags[0].value",
        ),
        ("/registered-models/rename", {"name": "texts", "new_name": "c\x00"}, "new_name"),
        ("/model-versions/create", {"name": "texts", "source": f"runs:/{run_id}/model\x00"}, "source"),
        ("/registered-models/set-tag", {"name": "texts", "key": "k", "value": "v\x00"}, "value"),
        ("/runs/set-tag", {"run_id": run_id, "key": "k", "value": "v\x00"}, "value"),
        ("/experiments/create", {"name": "\ud800"}, "name"),
    ]:
        raw = json.dumps(body).encode()  # json escapes the NUL and the surrogate as \u sequences
        answer = http.post(route, content=raw, headers={"content-type": "application/json"})
        assert code(answer) == INVALID, (route, answer.text)
        assert f"'{field}'" in answer.json()["message"], (route, answer.text)
    for method, route in [("PATCH", "/registered-models/update"), ("DELETE", "/registered-models/delete")]:
        answer = http.request(method, route, json={"name": "texts\x00"})
        assert code(answer) == INVALID, (route, answer.text)
    assert (
        http.get("/registered-models/get", params={"name": "texts"}).json()["registered_model"]["tags"] == []
    )


def test_the_client_filter_suffix_with_a_backquoted_tag_key_works(
    open_broker: tuple[Broker, httpx.Client],
) -> None:
    _, http = open_broker
    for name in ("suffix-plain", "suffix-prompt"):
        assert http.post("/registered-models/create", json={"name": name}).status_code == 200
    tag = {"name": "suffix-prompt", "key": "mlflow.prompt.is_prompt", "value": "true"}
    assert http.post("/registered-models/set-tag", json=tag).status_code == 200
    answer = http.get(
        "/registered-models/search",
        params={"filter": "name LIKE 'suffix-%' AND tag.`mlflow.prompt.is_prompt` != 'true'"},
    )
    assert answer.status_code == 200, answer.text
    assert [m["name"] for m in answer.json()["registered_models"]] == ["suffix-plain"]


# -- auth: token, two teams ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, dict[str, httpx.Client]]]:
    """A broker under ``auth: token``; MLflow REST clients of alice (vision), bob (nlp), carol (no
    team) and root (admin); ``broker.client`` is root's on ``/api/v1``."""
    broker = Broker(tmp_path_factory.mktemp("registry-auth"), auth="token")
    tokens = make_users(broker)
    broker.start()
    broker.client.headers["Authorization"] = f"Bearer {tokens['root']}"
    clients = {name: rest(broker, token) for name, token in tokens.items()}
    yield broker, clients
    for client in clients.values():
        client.close()
    broker.close()


def test_another_teams_models_are_404_on_the_mlflow_paths(
    teams: tuple[Broker, dict[str, httpx.Client]],
) -> None:
    broker, api = teams
    alice, bob, root = api["alice"], api["bob"], api["root"]
    alice_run, _ = model_run(broker, alice, "vision-models")
    assert alice.post("/registered-models/create", json={"name": "vision-net"}).status_code == 200
    made = alice.post(
        "/model-versions/create", json={"name": "vision-net", "source": f"runs:/{alice_run}/model"}
    )
    assert made.status_code == 200, made.text
    assert (
        alice.post(
            "/registered-models/alias", json={"name": "vision-net", "alias": "champion", "version": "1"}
        ).status_code
        == 200
    )
    one = {"name": "vision-net", "version": "1"}
    for method, route, args in [
        ("GET", "/registered-models/get", {"name": "vision-net"}),
        ("GET", "/model-versions/get", one),
        ("GET", "/model-versions/get-download-uri", one),
        ("GET", "/registered-models/alias", {"name": "vision-net", "alias": "champion"}),
        ("POST", "/registered-models/get-latest-versions", {"name": "vision-net"}),
        ("PATCH", "/registered-models/update", {"name": "vision-net", "description": "mine now"}),
        ("POST", "/registered-models/rename", {"name": "vision-net", "new_name": "stolen"}),
        ("POST", "/registered-models/set-tag", {"name": "vision-net", "key": "k", "value": "v"}),
        ("POST", "/model-versions/transition-stage", {**one, "stage": "Production"}),
        ("POST", "/model-versions/set-tag", {**one, "key": "k", "value": "v"}),
        ("PATCH", "/model-versions/update", {**one, "description": "x"}),
        ("POST", "/model-versions/create", {"name": "vision-net", "source": f"runs:/{alice_run}/model"}),
        ("POST", "/registered-models/alias", {"name": "vision-net", "alias": "mine", "version": "1"}),
        ("DELETE", "/model-versions/delete", one),
        ("DELETE", "/registered-models/delete", {"name": "vision-net"}),
    ]:
        answer = bob.get(route, params=args) if method == "GET" else bob.request(method, route, json=args)
        assert code(answer) == MISSING, (method, route, answer.text)
    listed = bob.get("/registered-models/search").json().get("registered_models", [])
    assert "vision-net" not in [m["name"] for m in listed]
    assert (
        bob.get("/model-versions/search", params={"filter": "name = 'vision-net'"})
        .json()
        .get("model_versions", [])
        == []
    )
    # bob may not register alice's run in a model of his own either.
    assert bob.post("/registered-models/create", json={"name": "nlp-net"}).status_code == 200
    foreign = bob.post(
        "/model-versions/create", json={"name": "nlp-net", "source": f"runs:/{alice_run}/model"}
    )
    assert code(foreign)[0] in (403, 404), foreign.text
    assert code(foreign)[1] in ("RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED")
    # The registry's copy in the artifact API is hidden from him too.
    uri = alice.get("/model-versions/get-download-uri", params=one).json()["artifact_uri"]
    files = httpx.Client(
        base_url=broker.url + "/api/2.0/mlflow-artifacts/artifacts", headers=bob.headers, timeout=30
    )
    with files:
        assert files.get("", params={"path": uri.removeprefix("mlflow-artifacts:/")}).status_code == 404
    # Nothing bob tried changed it.
    got = alice.get("/registered-models/get", params={"name": "vision-net"}).json()["registered_model"]
    assert (got["description"], got["tags"], got["aliases"]) == (
        "",
        [],
        [{"alias": "champion", "version": "1"}],
    )
    assert got["latest_versions"][0]["current_stage"] == "None"
    assert root.get("/registered-models/get", params={"name": "vision-net"}).status_code == 200
    assert code(api["carol"].get("/registered-models/get", params={"name": "vision-net"})) == MISSING


def test_a_deny_line_on_promote_is_permission_denied_naming_it(
    teams: tuple[Broker, dict[str, httpx.Client]],
) -> None:
    broker, api = teams
    alice = api["alice"]
    run_id, _ = model_run(broker, alice, "vision-guarded")
    assert alice.post("/registered-models/create", json={"name": "guarded"}).status_code == 200
    made = alice.post("/model-versions/create", json={"name": "guarded", "source": f"runs:/{run_id}/model"})
    assert made.status_code == 200, made.text
    one = {"name": "guarded", "version": "1"}
    line = "p, member, vision, model/*, promote, deny"
    assert (
        broker.client.post("/policy", json={"lines": [line], "message": "only leads promote"}).status_code
        == 200
    )
    try:
        denied = alice.post("/model-versions/transition-stage", json={**one, "stage": "Production"})
        assert code(denied) == (403, "PERMISSION_DENIED")
        assert line in denied.json()["message"]
        # Describing is edit, not promote: still allowed; the stage did not move.
        assert alice.patch("/model-versions/update", json={**one, "description": "ok"}).status_code == 200
        found = alice.get("/model-versions/get", params=one).json()["model_version"]
        assert (found["current_stage"], found["description"]) == ("None", "ok")
    finally:
        assert broker.client.request("DELETE", "/policy", json={"lines": [line]}).status_code == 200
    promoted = alice.post("/model-versions/transition-stage", json={**one, "stage": "Production"})
    assert promoted.json()["model_version"]["current_stage"] == "Production"


# -- a replica's run token -------------------------------------------------------------------------

REPLICA_CODE = """
import json, os
import numpy as np
import mlflow
from sklearn.linear_model import LinearRegression

features = np.array([[0.0], [1.0], [2.0]])
model = LinearRegression().fit(features, 3 * features[:, 0])
info = mlflow.sklearn.log_model(model, name="model", registered_model_name="replica-model")
result = {"model_id": info.model_id, "version": info.registered_model_version, "run": os.environ["MLFLOW_RUN_ID"]}
try:
    mlflow.register_model(f"runs:/{OTHER}/model", "replica-model")
    result["other"] = "registered"
except mlflow.exceptions.MlflowException as refused:
    result["other"] = refused.error_code
print("RESULT " + json.dumps(result))
"""


def test_a_replicas_run_token_registers_a_version_of_its_own_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    broker = Broker(tmp_path_factory.mktemp("registry-replica")).start()
    try:
        with rest(broker) as http:
            other_run, _ = model_run(broker, http, "someone-else")
        env = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
        job = broker.submit(
            python_spec(f"OTHER = {other_run!r}\n" + REPLICA_CODE, name="registers", envVars=env)
        )
        broker.wait_status(job["experimentId"], "Succeeded", "Failed", timeout=240)
        logs = broker.logs(job["experimentId"])
        lines = [line for log in logs.values() for line in log if "RESULT " in line]
        assert lines, logs
        result = json.loads(lines[-1].split("RESULT ", 1)[1])
        assert result["version"] == 1 or result["version"] == "1"
        assert result["other"] in ("RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED")
        with rest(broker) as http:
            got = http.get("/model-versions/get", params={"name": "replica-model", "version": "1"})
            assert got.status_code == 200, got.text
            version = got.json()["model_version"]
            assert (version["run_id"], version["model_id"]) == (result["run"], result["model_id"])
            assert (
                http.get("/model-versions/get", params={"name": "replica-model", "version": "2"}).status_code
                == 404
            )
    finally:
        broker.close()
