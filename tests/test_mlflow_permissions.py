"""MLflow tracking under ``auth: token``: a team's experiments and runs are invisible (404) to
another team, experiment 0's runs are checked on their own namespace, admins see everything."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.mlflow_support import mlflow_at, rest
from tests.support import Broker
from tests.test_permissions import make_users


@pytest.fixture(scope="module")
def teams(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Broker, dict[str, httpx.Client], dict[str, str]]]:
    broker = Broker(tmp_path_factory.mktemp("mlflow-auth"), auth="token")
    tokens = make_users(broker)
    broker.start()
    clients = {name: rest(broker, token) for name, token in tokens.items()}
    yield broker, clients, tokens
    for client in clients.values():
        client.close()
    broker.close()


def code(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json().get("error_code", "")


def test_another_teams_experiments_and_runs_are_404(teams) -> None:
    _, api, _ = teams
    alice, bob, root = api["alice"], api["bob"], api["root"]
    experiment_id = alice.post("/experiments/create", json={"name": "vision-exp"}).json()["experiment_id"]
    run_id = alice.post("/runs/create", json={"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
    point = {"run_id": run_id, "key": "loss", "value": 1, "timestamp": 1}
    assert alice.post("/runs/log-metric", json=point).status_code == 200
    missing = (404, "RESOURCE_DOES_NOT_EXIST")
    assert code(bob.get("/experiments/get", params={"experiment_id": experiment_id})) == missing
    assert code(bob.get("/experiments/get-by-name", params={"experiment_name": "vision-exp"})) == missing
    assert code(bob.get("/runs/get", params={"run_id": run_id})) == missing
    assert code(bob.post("/runs/log-metric", json=point)) == missing
    assert code(bob.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"})) == missing
    assert code(bob.post("/experiments/delete", json={"experiment_id": experiment_id})) == missing
    assert code(bob.post("/runs/create", json={"experiment_id": experiment_id})) == missing
    assert bob.post("/runs/search", json={"experiment_ids": [experiment_id]}).json().get("runs", []) == []
    names = [e["name"] for e in bob.post("/experiments/search", json={}).json()["experiments"]]
    assert "vision-exp" not in names and "Default" in names
    assert root.get("/runs/get", params={"run_id": run_id}).status_code == 200
    found = alice.post("/runs/search", json={"experiment_ids": [experiment_id]}).json()["runs"]
    assert [r["info"]["run_id"] for r in found] == [run_id]


def test_runs_of_the_default_experiment_belong_to_their_creators_team(teams) -> None:
    _, api, _ = teams
    alice, bob = api["alice"], api["bob"]
    mine = alice.post("/runs/create", json={"experiment_id": "0"}).json()["run"]["info"]
    theirs = bob.post("/runs/create", json={"experiment_id": "0"}).json()["run"]["info"]
    assert mine["user_id"] == "alice"
    assert code(bob.get("/runs/get", params={"run_id": mine["run_id"]})) == (404, "RESOURCE_DOES_NOT_EXIST")
    seen_by_bob = [
        r["info"]["run_id"] for r in bob.post("/runs/search", json={"experiment_ids": ["0"]}).json()["runs"]
    ]
    assert theirs["run_id"] in seen_by_bob and mine["run_id"] not in seen_by_bob
    tagged = {"experiment_id": "0", "tags": [{"key": "submarine.namespace", "value": "nlp"}]}
    assert code(alice.post("/runs/create", json=tagged)) == (403, "PERMISSION_DENIED")


def test_a_user_without_a_team_cannot_create_experiments(teams) -> None:
    _, api, _ = teams
    assert code(api["carol"].post("/experiments/create", json={"name": "lonely"})) == (
        403,
        "PERMISSION_DENIED",
    )


def test_the_mlflow_client_with_a_users_token(teams) -> None:
    broker, api, tokens = teams
    from mlflow.exceptions import MlflowException

    with mlflow_at(broker.url, MLFLOW_TRACKING_TOKEN=tokens["bob"]) as mlflow:
        mlflow.set_experiment("nlp-exp")
        with mlflow.start_run() as run:
            mlflow.log_metric("bleu", 0.3)
        hidden = (
            api["alice"].post("/runs/create", json={"experiment_id": "0"}).json()["run"]["info"]["run_id"]
        )
        with pytest.raises(MlflowException) as refused:
            mlflow.get_run(hidden)
        assert refused.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert code(api["alice"].get("/runs/get", params={"run_id": run.info.run_id})) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
