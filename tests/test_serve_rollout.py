"""Rolling a served model out to another version on a real broker (auth: token, local cluster):
``PATCH /api/v1/serve/{id}`` under a prediction load (zero failed requests, each client sees the
old version then the new one, the old replicas stop), an alias-following serve re-rolled when the
alias moves (with the registry history's event), a rollout whose version cannot start goes back,
``submarine-broker serve update``, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import httpx
import psutil
import pytest

from clusters.local.processes import read_json
from tests.mlflow_support import mlflow_at
from tests.model_folders import auth
from tests.support import Broker, wait_for
from tests.test_permissions import Clients
from tests.test_serving import secured  # noqa: F401 - the broker fixture

MODEL = "roll"
BODY = {"inputs": [[1.0], [2.0]]}
V1 = [3.0, 5.0]  # y = 2x + 1
V2 = [4.0, 7.0]  # y = 3x + 1
#: Both versions' replicas run at once during a rollout: the local cluster (2 CPUs) must hold them.
SMALL = "cpu=0.25,memory=256Mi"
#: The cluster's own Python (which has mlflow and sklearn), not an environment built from the
#: versions' requirements (tests/test_serve_model_environment_e2e.py builds one).
OWN_PYTHON = {"name": "notebook-env"}


def register_line(url: str, token: str, name: str, slope: float) -> None:
    """A LinearRegression y = slope * x + 1 logged by MLflow's client as the next version of ``name``."""
    import numpy as np
    from sklearn.linear_model import LinearRegression

    features = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LinearRegression().fit(features, slope * features[:, 0] + 1)
    with mlflow_at(url, MLFLOW_TRACKING_TOKEN=token) as mlflow:
        mlflow.set_experiment(f"rollout-{name}")
        with mlflow.start_run():
            mlflow.sklearn.log_model(model, name="model", registered_model_name=name)


def register_unloadable(url: str, token: str, name: str) -> int:
    """A version whose MLmodel has a python_function flavour no Python can load; its number."""
    with httpx.Client(base_url=url, headers=auth(token), timeout=30) as http:
        api = "/api/2.0/mlflow"
        found = http.get(f"{api}/experiments/get-by-name", params={"experiment_name": "rollout-broken"})
        if found.status_code == 200:
            experiment_id = found.json()["experiment"]["experiment_id"]
        else:
            experiment_id = http.post(f"{api}/experiments/create", json={"name": "rollout-broken"}).json()[
                "experiment_id"
            ]
        run_id = http.post(f"{api}/runs/create", json={"experiment_id": experiment_id}).json()["run"]["info"][
            "run_id"
        ]
        mlmodel = "flavors:\n  python_function:\n    loader_module: no_such_loader_for_rollout_tests\n"
        put = http.put(
            f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/model/MLmodel",
            content=mlmodel.encode(),
        )
        assert put.status_code == 200, put.text
        made = http.post(
            f"{api}/model-versions/create", json={"name": name, "source": f"runs:/{run_id}/model"}
        )
        assert made.status_code == 200, made.text
        return int(made.json()["model_version"]["version"])


def serve_of(client: httpx.Client, serve_id: str) -> dict[str, Any]:
    answer = client.get(f"/api/v1/serve/{serve_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["result"])


def events_of(client: httpx.Client, serve_id: str) -> list[str]:
    answer = client.get(f"/api/v1/serve/{serve_id}/events")
    assert answer.status_code == 200, answer.text
    return [str(e.get("reason") or "") for e in answer.json()["result"]]


def wait_serving(
    broker: Broker, client: httpx.Client, serve_id: str, version: int, timeout: float = 240
) -> None:
    """Until the serve runs ``version`` with no rollout in progress, every replica ready."""

    def done() -> bool:
        found = serve_of(client, serve_id)
        assert found["status"] not in ("Failed", "Deleted") or found["rollout"], (
            f"{found['status']}: {found['reason']}\n{broker.log()[-3000:]}"
        )
        return (
            found["rollout"] is None
            and found["modelVersion"] == version
            and found["readyReplicas"] == found["replicas"]
        )

    try:
        wait_for(done, timeout=timeout, what=f"serve {serve_id} serving version {version}")
    except AssertionError as exc:
        found = serve_of(client, serve_id)
        events = "\n".join(events_of(client, serve_id))
        raise AssertionError(f"{exc}\n{found}\n{events}\n{broker.log()[-4000:]}") from None


def model_servers(broker: Broker, uid: str) -> list[psutil.Process]:
    """The model-server processes of attempt ``uid`` on the local cluster (still running)."""
    found = []
    for pid_file in (broker.work_dir() / uid).glob("server-*.pid"):
        record = read_json(pid_file)
        if record is None:
            continue
        try:
            found.extend(psutil.Process(int(record["pid"])).children())
        except psutil.NoSuchProcess:
            continue
    return [p for p in found if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


class Load:
    """Clients predicting through the proxy without pause until stopped; every answer kept."""

    def __init__(self, url: str, token: str, path: str, clients: int = 3) -> None:
        self.stop = threading.Event()
        self.answers: list[list[tuple[int, Any]]] = [[] for _ in range(clients)]
        self._threads = [
            threading.Thread(target=self._run, args=(url, token, path, i), daemon=True)
            for i in range(clients)
        ]

    def _run(self, url: str, token: str, path: str, index: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            while not self.stop.is_set():
                try:
                    answer = http.post(f"{path}invocations", json=BODY)
                except httpx.HTTPError as exc:
                    self.answers[index].append((0, repr(exc)))
                    continue
                body = answer.json().get("predictions") if answer.status_code == 200 else answer.text
                self.answers[index].append((answer.status_code, body))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def failures(self) -> list[tuple[int, Any]]:
        return [a for answers in self.answers for a in answers if a[0] != 200]

    def versions(self, index: int) -> list[str]:
        """What client ``index`` got, in order, as "v1"/"v2" runs (consecutive repeats merged)."""
        runs: list[str] = []
        for _, predictions in self.answers[index]:
            name = (
                "v1"
                if predictions == pytest.approx(V1)
                else "v2"
                if predictions == pytest.approx(V2)
                else "?"
            )
            if not runs or runs[-1] != name:
                runs.append(name)
        return runs


@pytest.fixture(scope="module")
def versions(secured: tuple[Broker, Clients, dict[str, str]]) -> str:  # noqa: F811
    running, _, tokens = secured
    register_line(running.url, tokens["alice"], MODEL, 2.0)  # version 1
    register_line(running.url, tokens["alice"], MODEL, 3.0)  # version 2
    return MODEL


def test_rollout_under_load_refuses_nothing_and_stops_the_old_replicas(
    secured: tuple[Broker, Clients, dict[str, str]],  # noqa: F811
    versions: str,
) -> None:
    running, clients, tokens = secured
    alice = clients["alice"]
    created = alice.post(
        "/api/v1/serve",
        json={
            "modelName": versions,
            "modelVersion": 1,
            "name": "roll-load",
            "replicas": 2,
            "resources": SMALL,
            "environment": OWN_PYTHON,
        },
    )
    assert created.status_code == 200, created.text
    serve = created.json()["result"]
    wait_serving(running, alice, serve["id"], 1)
    old_uid = serve_of(alice, serve["id"])["uid"]
    assert len(model_servers(running, old_uid)) == 2

    with Load(running.url, tokens["alice"], serve["url"]) as load:
        wait_for(lambda: all(len(a) >= 5 for a in load.answers), timeout=60, what="the load to start")
        patched = alice.patch(f"/api/v1/serve/{serve['id']}", json={"modelVersion": 2})
        assert patched.status_code == 200, patched.text
        during = patched.json()["result"]
        assert during["rollout"]["fromVersion"] == 1 and during["rollout"]["toVersion"] == 2
        assert during["rollout"]["by"] == "alice"
        assert during["ready"] is True  # version 1 answers meanwhile
        assert during["modelVersion"] == 2
        wait_serving(running, alice, serve["id"], 2)
        wait_for(lambda: not model_servers(running, old_uid), timeout=60, what="version 1's servers to stop")
        seen = sum(len(a) for a in load.answers)
        wait_for(lambda: sum(len(a) for a in load.answers) >= seen + 20, timeout=60, what="more answers")

    assert load.failures() == [], load.failures()[:5]
    for index in range(len(load.answers)):
        assert load.versions(index) == ["v1", "v2"], load.versions(index)
    after = serve_of(alice, serve["id"])
    assert after["uid"] != old_uid and after["status"] == "Running" and after["ready"] is True
    history = events_of(alice, serve["id"])
    assert any(
        "rolling out version 2 of model 'roll' (from version 1 of model 'roll') by alice" in e
        for e in history
    )
    assert any("version 2 of model 'roll' answers on every replica on local" in e for e in history)
    assert any(e.startswith("attempt 1's replicas on local stopped") for e in history), history
    assert alice.delete(f"/api/v1/serve/{serve['id']}").status_code == 200


def test_an_alias_move_rerolls_the_serve_that_follows_it(
    secured: tuple[Broker, Clients, dict[str, str]],  # noqa: F811
    versions: str,
) -> None:
    running, clients, tokens = secured
    alice = clients["alice"]
    alias = "/api/2.0/mlflow/registered-models/alias"
    assert alice.post(alias, json={"name": versions, "alias": "champion", "version": "1"}).status_code == 200
    created = alice.post(
        "/api/v1/serve",
        json={
            "modelName": versions,
            "alias": "champion",
            "name": "roll-alias",
            "environment": OWN_PYTHON,
            "resources": SMALL,
        },
    )
    assert created.status_code == 200, created.text
    serve = created.json()["result"]
    assert serve["alias"] == "champion" and serve["modelVersion"] == 1
    wait_serving(running, alice, serve["id"], 1)
    assert alice.post(f"{serve['url']}invocations", json=BODY).json()["predictions"] == pytest.approx(V1)

    assert alice.post(alias, json={"name": versions, "alias": "champion", "version": "2"}).status_code == 200
    wait_serving(running, alice, serve["id"], 2)
    assert alice.post(f"{serve['url']}invocations", json=BODY).json()["predictions"] == pytest.approx(V2)
    found = serve_of(alice, serve["id"])
    assert found["alias"] == "champion"
    history = alice.get(f"/api/v1/registered-model/{versions}/history")
    assert history.status_code == 200, history.text
    rerolls = [e for e in history.json()["result"] if e["action"] == "serve_rerolled"]
    assert len(rerolls) == 1, rerolls
    assert rerolls[0]["from"] == "1" and rerolls[0]["to"] == "2" and rerolls[0]["version"] == 2
    assert f"vision/roll-alias ({serve['id']}) follows alias champion" in rerolls[0]["message"]
    assert any("the alias watch (alias champion moved)" in e for e in events_of(alice, serve["id"]))

    # The CLI pins it back to version 1 (no longer following the alias) and waits for the switch.
    env = {**os.environ, "SUBMARINE_BROKER_URL": running.url, "SUBMARINE_BROKER_TOKEN": tokens["alice"]}
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "serve",
            "update",
            "roll-alias",
            "--version",
            "1",
            "--wait",
            "--timeout",
            "240",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert f"serve {serve['id']} roll-alias (roll v1) Running, ready" in cli.stdout, cli.stdout
    found = serve_of(alice, serve["id"])
    assert found["alias"] is None and found["modelVersion"] == 1 and found["rollout"] is None
    assert alice.post(f"{serve['url']}invocations", json=BODY).json()["predictions"] == pytest.approx(V1)
    assert alice.post(alias, json={"name": versions, "alias": "champion", "version": "1"}).status_code == 200
    assert alice.delete(f"/api/v1/serve/{serve['id']}").status_code == 200


def test_a_rollout_that_cannot_start_goes_back_and_keeps_serving(
    secured: tuple[Broker, Clients, dict[str, str]],  # noqa: F811
    versions: str,
) -> None:
    running, clients, tokens = secured
    alice = clients["alice"]
    broken = register_unloadable(running.url, tokens["alice"], versions)
    created = alice.post(
        "/api/v1/serve",
        json={
            "modelName": versions,
            "modelVersion": 1,
            "name": "roll-back",
            "environment": OWN_PYTHON,
            "resources": SMALL,
        },
    )
    assert created.status_code == 200, created.text
    serve = created.json()["result"]
    wait_serving(running, alice, serve["id"], 1)
    with Load(running.url, tokens["alice"], serve["url"], clients=2) as load:
        patched = alice.patch(f"/api/v1/serve/{serve['id']}", json={"modelVersion": broken})
        assert patched.status_code == 200, patched.text

        def gone_back() -> bool:
            events = events_of(alice, serve["id"])
            return any(f"rollout to version {broken} of model 'roll' failed" in e for e in events)

        wait_for(gone_back, timeout=240, what="the failed rollout to go back")
    assert load.failures() == [], load.failures()[:5]
    found = serve_of(alice, serve["id"])
    assert found["status"] == "Running" and found["ready"] is True and found["rollout"] is None
    assert found["modelVersion"] == 1 and found["attempt"] == 1  # the attempt that kept serving
    back = [
        e
        for e in events_of(alice, serve["id"])
        if "back to version 1 of model 'roll', which kept serving" in e
    ]
    assert back, events_of(alice, serve["id"])
    assert alice.post(f"{serve['url']}invocations", json=BODY).json()["predictions"] == pytest.approx(V1)
    assert alice.delete(f"/api/v1/serve/{serve['id']}").status_code == 200


def test_bad_rollouts_are_refused_with_the_field_named(
    secured: tuple[Broker, Clients, dict[str, str]],  # noqa: F811
    versions: str,
) -> None:
    running, clients, _ = secured
    alice, bob = clients["alice"], clients["bob"]
    created = alice.post(
        "/api/v1/serve",
        json={
            "modelName": versions,
            "modelVersion": 1,
            "name": "roll-bad",
            "environment": OWN_PYTHON,
            "resources": SMALL,
        },
    )
    assert created.status_code == 200, created.text
    serve_id = created.json()["result"]["id"]
    path = f"/api/v1/serve/{serve_id}"
    cases = [
        ({}, 400, "modelVersion or alias"),
        ({"modelVersion": 2, "alias": "champion"}, 400, "modelVersion or alias"),
        ({"modelVersion": 0}, 400, "modelVersion"),
        ({"modelVersion": 99}, 400, "modelVersion"),
        ({"alias": "nobody-set-this"}, 400, "alias"),
        ({"modelVersion": 2, "replicas": 3}, 400, "replicas: unknown field"),
        ({"modelVersion": 1}, 409, "already serves version 1"),
    ]
    for body, status, words in cases:
        answer = alice.patch(path, json=body)
        assert answer.status_code == status, (body, answer.text)
        assert words in answer.json()["message"], (body, answer.text)
    garbage = alice.patch(path, content=b"{nope", headers={"Content-Type": "application/json"})
    assert garbage.status_code == 400, garbage.text
    assert bob.patch(path, json={"modelVersion": 2}).status_code == 404  # another team
    assert alice.patch("/api/v1/serve/no-such-serve", json={"modelVersion": 2}).status_code == 404
    found = serve_of(alice, serve_id)
    assert found["modelVersion"] == 1 and found["rollout"] is None and found["attempt"] == 1
    assert alice.delete(path).status_code == 200
    stopped = alice.patch(path, json={"modelVersion": 2})
    assert stopped.status_code == 404, stopped.text


def test_a_stopped_serve_takes_the_version_it_starts_with(
    secured: tuple[Broker, Clients, dict[str, str]],  # noqa: F811
    versions: str,
) -> None:
    running, clients, _ = secured
    alice = clients["alice"]
    created = alice.post(
        "/api/v1/serve",
        json={
            "modelName": versions,
            "modelVersion": 1,
            "name": "roll-stopped",
            "environment": OWN_PYTHON,
            "resources": SMALL,
        },
    )
    serve_id = created.json()["result"]["id"]
    assert alice.post(f"/api/v1/serve/{serve_id}/stop").status_code == 200
    patched = alice.patch(f"/api/v1/serve/{serve_id}", json={"modelVersion": 2})
    assert patched.status_code == 200, patched.text
    assert patched.json()["result"]["status"] == "Failed" and patched.json()["result"]["rollout"] is None
    assert alice.post(f"/api/v1/serve/{serve_id}/start").status_code == 200
    wait_serving(running, alice, serve_id, 2)
    url = serve_of(alice, serve_id)["url"]
    assert alice.post(f"{url}invocations", json=BODY).json()["predictions"] == pytest.approx(V2)
    assert any("version 2 of model 'roll' set by alice" in e for e in events_of(alice, serve_id))
    assert alice.delete(f"/api/v1/serve/{serve_id}").status_code == 200
