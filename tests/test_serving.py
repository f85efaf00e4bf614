"""Model serving through a real broker (auth: token) on its local cluster: a version registered
through MLflow served by ``POST /api/v1/serve``, readiness, list/get/events, stop/start, the
registry's 409 while served, Submarine's delete by spec; bad input; another team's view."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.mlflow_support import mlflow_at
from tests.model_folders import model_folder
from tests.support import Broker, kill_replicas, wait_for
from tests.test_permissions import Clients, make_users

NAMESPACE = "vision"  # alice's team; bob is in nlp
#: Serve on the cluster's own Python (the built-in environment that installs nothing), as a user
#: may: these tests are not about environments, and one made from the model's requirements.txt
#: takes a minute to build (tests/test_serve_model_environment_e2e.py builds one).
OWN_PYTHON = {"name": "notebook-env"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Clients, dict[str, str]]]:
    broker = Broker(
        tmp_path_factory.mktemp("serving"),
        auth="token",
        notebooks={"check_interval": 0.3, "idle_timeout": 0},
    )
    tokens = make_users(broker)
    broker.start()
    clients = Clients(
        {
            name: httpx.Client(base_url=broker.url, headers={"Authorization": f"Bearer {tok}"}, timeout=60)
            for name, tok in tokens.items()
        }
    )
    yield broker, clients, tokens
    clients.close()
    broker.close()
    kill_replicas(broker.root)


def register_sklearn(url: str, token: str | None, name: str) -> None:
    """A LinearRegression (y = 2x + 1) logged by MLflow's client and registered as ``name``."""
    import numpy as np
    from sklearn.linear_model import LinearRegression

    features = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LinearRegression().fit(features, 2 * features[:, 0] + 1)
    with mlflow_at(url, **({"MLFLOW_TRACKING_TOKEN": token} if token else {})) as mlflow:
        mlflow.set_experiment(f"serving-{name}")
        with mlflow.start_run():
            mlflow.sklearn.log_model(model, name="model", registered_model_name=name)


def register_without_mlmodel(url: str, token: str, name: str) -> None:
    """A version whose files hold no MLmodel (a bare TensorFlow folder)."""
    base_dir = model_folder(url, token, experiment=f"plain-{name}")
    run_id = base_dir.split("/")[1]
    with httpx.Client(
        base_url=url + "/api/2.0/mlflow", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        assert http.post("/registered-models/create", json={"name": name}).status_code == 200
        made = http.post("/model-versions/create", json={"name": name, "source": f"runs:/{run_id}/model"})
        assert made.status_code == 200, made.text


def serve_of(client: httpx.Client, serve_id: str) -> dict[str, Any]:
    answer = client.get(f"/api/v1/serve/{serve_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def wait_ready(client: httpx.Client, serve_id: str, broker: Broker, timeout: float = 120) -> dict[str, Any]:
    def ready() -> bool:
        found = serve_of(client, serve_id)
        if found["status"] in ("Failed", "Succeeded", "Deleted"):
            raise AssertionError(f"serve ended {found['status']}: {found['reason']}\n{broker.log()[-3000:]}")
        return bool(found["ready"])

    wait_for(ready, timeout=timeout, what=f"serve {serve_id} ready")
    return serve_of(client, serve_id)


@pytest.fixture(scope="module")
def iris(secured: tuple[Broker, Clients, dict[str, str]]) -> str:
    broker, _, tokens = secured
    register_sklearn(broker.url, tokens["alice"], "iris")
    return "iris"


def test_a_registered_version_is_served_until_deleted(
    secured: tuple[Broker, Clients, dict[str, str]], iris: str
) -> None:
    broker, clients, tokens = secured
    alice = clients["alice"]
    created = alice.post(
        "/api/v1/serve", json={"modelName": iris, "modelVersion": 1, "environment": OWN_PYTHON}
    )
    assert created.status_code == 200, created.text
    serve = created.json()["result"]
    assert serve["url"] == f"/serve/{NAMESPACE}/iris-1/"
    assert serve["environment"]["name"] == "notebook-env"
    assert (
        serve["modelName"] == "iris" and serve["modelVersion"] == 1 and serve["flavor"] == "python_function"
    )
    assert serve["namespace"] == NAMESPACE and serve["ready"] is False

    # The replica downloaded its files with its fetch token and answers /ping: ready.
    ready = wait_ready(alice, serve["id"], broker)
    assert ready["status"] == "Running" and ready["cluster"] == "local" and ready["readyReplicas"] == 1

    # Predictions through the broker's proxy, MLflow's scoring protocol (the server token is the
    # broker's to add; alice's own credentials never reach the model server).
    url = serve["url"] + "invocations"
    predicted = alice.post(url, json={"inputs": [[4.0]]})
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["predictions"] == pytest.approx([9.0])
    records = alice.post(url, json={"dataframe_split": {"columns": ["x"], "data": [[1.0], [2.0]]}})
    assert records.status_code == 200 and records.json()["predictions"] == pytest.approx([3.0, 5.0])
    malformed = alice.post(url, content=b'{"nothing": 1}', headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400, malformed.text  # the server's own 400, passed through
    assert clients["bob"].post(url, json={"inputs": [[4.0]]}).status_code == 404

    # The CLI: list, get and predict through the proxy, as alice.
    cli = [sys.executable, "-m", "broker", "--url", broker.url, "--token", tokens["alice"], "serve"]
    shown = subprocess.run([*cli, "list"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "iris-1" in shown.stdout and "1/1" in shown.stdout, shown
    detail = subprocess.run(
        [*cli, "get", "iris-1", "-n", NAMESPACE], capture_output=True, text=True, timeout=60
    )
    assert detail.returncode == 0 and "Running, ready: /serve/vision/iris-1/" in detail.stdout, detail
    (tmp := broker.root / "input.json").write_text('{"inputs": [[4.0]]}')
    called = subprocess.run(
        [*cli, "predict", "iris-1", "-f", str(tmp)], capture_output=True, text=True, timeout=60
    )
    assert called.returncode == 0 and json.loads(called.stdout)["predictions"] == pytest.approx([9.0]), called

    listed = alice.get("/api/v1/serve").json()["result"]
    mine = next(s for s in listed if s["id"] == serve["id"])
    assert (mine["modelName"], mine["modelVersion"], mine["cluster"], mine["url"]) == (
        "iris",
        1,
        "local",
        "/serve/vision/iris-1/",
    )
    # The registry shows where the version is served, and refuses to delete it meanwhile.
    version = alice.get("/api/v1/model-version/iris/1").json()["result"]
    assert [s["id"] for s in version["servedOn"]] == [serve["id"]]
    refused = alice.request(
        "DELETE", "/api/2.0/mlflow/model-versions/delete", json={"name": "iris", "version": "1"}
    )
    assert refused.status_code == 400 and serve["id"] in refused.json()["message"], refused.text
    refused = alice.delete("/api/v1/model-version/iris/1")
    assert refused.status_code == 409 and serve["id"] in refused.json()["message"], refused.text
    # A second serve of the same name in the namespace is a conflict.
    again = alice.post("/api/v1/serve", json={"modelName": iris, "modelVersion": 1})
    assert again.status_code == 409 and "iris-1" in again.json()["message"]

    stopped = alice.post(f"/api/v1/serve/{serve['id']}/stop")
    assert stopped.status_code == 200 and stopped.json()["result"]["status"] == "Failed"
    assert serve_of(alice, serve["id"])["ready"] is False
    started = alice.post(f"/api/v1/serve/{serve['id']}/start")
    assert started.status_code == 200, started.text
    assert wait_ready(alice, serve["id"], broker)["attempt"] == 2
    events = [e["to"] for e in alice.get(f"/api/v1/serve/{serve['id']}/events").json()["result"]]
    moves = [e for e in events if e is not None]  # None: a note
    assert moves == ["Accepted", "Created", "Running", "Failed", "Accepted", "Created", "Running"], events

    # Submarine's delete: the spec in the body.
    gone = alice.request("DELETE", "/api/v1/serve", json={"modelName": iris, "modelVersion": 1})
    assert gone.status_code == 200, gone.text
    assert [s["status"] for s in gone.json()["result"]] == ["Deleted"]
    assert alice.get(f"/api/v1/serve/{serve['id']}").status_code == 404
    assert alice.get("/api/v1/model-version/iris/1").json()["result"]["servedOn"] == []
    missing = alice.request("DELETE", "/api/v1/serve", json={"modelName": iris, "modelVersion": 1})
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"modelName": "nope", "modelVersion": 1}, "modelName", "nope not found"),
        ({"modelName": "iris", "modelVersion": 9}, "modelVersion", "version=9"),
        ({"modelName": "iris", "alias": "champion"}, "alias", "champion not found"),
        ({"modelName": "iris"}, "body", "modelVersion or alias is required"),
        ({"modelName": "iris", "modelVersion": 1, "alias": "a"}, "body", "not both"),
        ({"modelName": "iris", "modelVersion": 0}, "modelVersion", "greater than or equal to 1"),
        ({"modelName": "iris", "modelVersion": 1, "replicas": 0}, "replicas", "greater than or equal"),
        ({"modelName": "iris", "modelVersion": 1, "name": "Not A Label!"}, "name", "DNS label"),
        ({"modelName": "iris", "modelVersion": 1, "replica": 2}, "replica", "unknown field"),
        ({"modelName": "iris", "modelVersion": 1, "placement": {"cluster": "x"}}, "placement.cluster", "x"),
        ({"modelName": "iris", "modelVersion": 1, "resources": "cpu=lots"}, "resources", "cpu"),
    ],
)
def test_bad_serve_specs_are_refused_naming_the_field(
    secured: tuple[Broker, Clients, dict[str, str]], iris: str, body: dict[str, Any], field: str, words: str
) -> None:
    _, clients, _ = secured
    answer = clients["alice"].post("/api/v1/serve", json=body)
    assert answer.status_code == 400, answer.text
    message = answer.json()["message"]
    assert field in message and words in message, message


def test_a_version_without_an_mlmodel_cannot_be_served(
    secured: tuple[Broker, Clients, dict[str, str]],
) -> None:
    broker, clients, tokens = secured
    register_without_mlmodel(broker.url, tokens["alice"], "plain")
    answer = clients["alice"].post("/api/v1/serve", json={"modelName": "plain", "modelVersion": 1})
    assert answer.status_code == 400, answer.text
    assert "has no MLmodel file" in answer.json()["message"] and "modelVersion" in answer.json()["message"]
    assert clients["alice"].get("/api/v1/serve").json()["result"] == [] or all(
        s["modelName"] != "plain" for s in clients["alice"].get("/api/v1/serve").json()["result"]
    )


def test_another_team_sees_no_serve_and_cannot_serve_the_model(
    secured: tuple[Broker, Clients, dict[str, str]], iris: str
) -> None:
    _, clients, _ = secured
    alice, bob, carol = clients["alice"], clients["bob"], clients["carol"]
    made = alice.post(
        "/api/v1/serve",
        json={"modelName": iris, "modelVersion": 1, "name": "private", "environment": OWN_PYTHON},
    )
    assert made.status_code == 200, made.text
    serve_id = made.json()["result"]["id"]
    try:
        assert bob.get(f"/api/v1/serve/{serve_id}").status_code == 404
        assert bob.post(f"/api/v1/serve/{serve_id}/stop").status_code == 404
        assert bob.delete(f"/api/v1/serve/{serve_id}").status_code == 404
        assert all(s["id"] != serve_id for s in bob.get("/api/v1/serve").json()["result"])
        assert bob.post("/serve/vision/private/invocations", json={"inputs": [[1.0]]}).status_code == 404
        # Without invoke on it, alice may read the serve but not call it.
        line = f"p, alice, vision, serve/{serve_id}, invoke, deny"
        assert clients["root"].post("/api/v1/policy", json={"lines": [line]}).status_code == 200
        try:
            wait_for(
                lambda: (
                    alice.post("/serve/vision/private/invocations", json={"inputs": [[1.0]]}).status_code
                    == 403
                ),
                timeout=15,
                what="the deny line to bind the proxy",
            )
            assert alice.get(f"/api/v1/serve/{serve_id}").status_code == 200
        finally:
            clients["root"].request("DELETE", "/api/v1/policy", json={"lines": [line]})
        # alice's model is not bob's to see, hence not his to serve.
        theirs = bob.post("/api/v1/serve", json={"modelName": iris, "modelVersion": 1})
        assert theirs.status_code == 400 and "iris not found" in theirs.json()["message"]
        gone = bob.request("DELETE", "/api/v1/serve", json={"modelName": iris, "modelVersion": 1})
        assert gone.status_code == 404
        # carol is in no team: she may not serve anything in the default namespace.
        assert carol.post("/api/v1/serve", json={"modelName": iris, "modelVersion": 1}).status_code in (
            400,
            403,
        )
    finally:
        assert alice.delete(f"/api/v1/serve/{serve_id}").status_code == 200
