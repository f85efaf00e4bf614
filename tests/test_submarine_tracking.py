"""Submarine's tracking and asset endpoints and the CLI on them, against a real broker whose
local experiment logged with the unmodified mlflow client: ``/api/metric``, ``/api/param``,
``/api/v1/experiment/mlflow|artifacts/{id}``, ``experiment metrics|params``, ``artifacts ls|get``,
and what deleting an experiment keeps (everything, unless ``?purge=true``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from broker.cli.main import main
from tests.support import Broker, python_spec
from tests.test_permissions import make_users

pytestmark = pytest.mark.timeout(300)

SCRIPT = """
import mlflow
with mlflow.start_run():
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_metric("acc", 0.9)
    mlflow.log_param("lr", "0.1")
    mlflow.log_text("hello", "notes.txt")
    mlflow.log_dict({"a": 1}, "dir/data.json")
"""


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, str]]:
    broker = Broker(tmp_path_factory.mktemp("submarine-tracking"))
    broker.start()
    submitted = broker.submit(python_spec(SCRIPT, name="logged"))
    done = broker.wait_status(submitted["experimentId"], "Succeeded", "Failed", timeout=180)
    assert done["status"] == "Succeeded", broker.logs(submitted["experimentId"])
    yield broker, submitted["experimentId"]
    broker.close()


def api(broker: Broker, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{broker.url}{path}", timeout=30, **kwargs)


def cli(broker: Broker, *args: str, cwd: Path | None = None) -> Any:
    result = CliRunner().invoke(main, ["--url", broker.url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_metrics_and_params_in_submarines_shapes(logged) -> None:
    broker, experiment_id = logged
    points = api(broker, "GET", "/api/metric", params={"id": experiment_id}).json()["result"]
    loss = [p for p in points if p["key"] == "loss"]
    assert [(p["step"], p["value"], p["workerIndex"], p["isNan"]) for p in loss] == [
        (0, 1.0, "worker-0", False),
        (1, 0.5, "worker-0", False),
        (2, 1.0 / 3, "worker-0", False),
    ]
    assert all(p["id"] == experiment_id and isinstance(p["timestamp"], int) for p in points)
    selective = api(broker, "POST", "/api/metric/selective", json={"id": experiment_id, "key": "acc"})
    assert [p["value"] for p in selective.json()["result"]] == [0.9]
    params = api(broker, "GET", "/api/param", params={"id": experiment_id}).json()["result"]
    assert [(p["key"], p["value"]) for p in params] == [("lr", "0.1")]


def test_a_user_writes_points_and_params_to_the_current_attempts_run(logged) -> None:
    broker, experiment_id = logged
    body = [
        {"id": experiment_id, "key": "eval", "value": 0.75, "step": 4, "workerIndex": "evaluator-0"},
        {
            "id": experiment_id,
            "key": "eval",
            "value": None,
            "isNan": True,
            "step": 5,
            "workerIndex": "evaluator-0",
        },
    ]
    assert api(broker, "POST", "/api/metric", json=body).status_code == 200
    found = api(broker, "GET", "/api/metric/list", params={"id": experiment_id, "metricKey": "eval"}).json()[
        "result"
    ]
    assert [(p["step"], p["value"], p["isNan"], p["workerIndex"]) for p in found] == [
        (4, 0.75, False, "evaluator-0"),
        (5, None, True, "evaluator-0"),
    ]
    assert (
        api(
            broker, "POST", "/api/param/add", json={"id": experiment_id, "key": "note", "value": 3}
        ).status_code
        == 200
    )
    changed = api(broker, "POST", "/api/param", json={"id": experiment_id, "key": "lr", "value": "0.2"})
    assert changed.status_code == 400 and "lr" in changed.json()["message"]
    uid = broker.experiment(experiment_id)["uid"]
    run = api(broker, "GET", "/api/2.0/mlflow/runs/get", params={"run_id": uid}).json()["run"]
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"lr": "0.1", "note": "3"}


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/api/metric", None, "id"),
        ("POST", "/api/metric", {"key": "x", "value": 1}, "id"),
        ("POST", "/api/metric", {"id": "ID", "key": "../x", "value": 1}, "key"),
        ("POST", "/api/metric", {"id": "ID", "key": "x", "value": "high"}, "value"),
        ("POST", "/api/metric", {"id": "ID", "key": "x", "value": 1, "step": 1.5}, "step"),
        ("POST", "/api/metric", {"id": "ID", "key": "x", "value": 1, "timestamp": "yesterday"}, "timestamp"),
        ("POST", "/api/param", {"id": "ID", "key": "", "value": "v"}, "key"),
        ("POST", "/api/param", {"id": "ID", "key": "k", "value": {"nested": 1}}, "value"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(logged, method: str, path: str, body: Any, field: str) -> None:
    broker, experiment_id = logged
    if isinstance(body, dict) and body.get("id") == "ID":
        body = {**body, "id": experiment_id}
    answer = api(broker, method, path, json=body) if body is not None else api(broker, method, path)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["message"]


def test_too_many_entries_unknown_experiments_and_non_json(logged) -> None:
    broker, experiment_id = logged
    many = [{"id": experiment_id, "key": "k", "value": i, "step": i} for i in range(1001)]
    assert api(broker, "POST", "/api/metric", json=many).status_code == 400
    unknown = api(broker, "GET", "/api/metric", params={"id": "experiment-1-0001"})
    assert unknown.status_code == 404
    garbled = api(
        broker, "POST", "/api/metric", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert garbled.status_code == 400


def test_asset_endpoints_name_the_broker_and_list_the_artifacts(logged) -> None:
    broker, experiment_id = logged
    mlflow_info = api(broker, "GET", "/api/v1/experiment/mlflow").json()["result"]
    assert mlflow_info == {"available": True, "url": broker.url}
    listed = api(broker, "GET", f"/api/v1/experiment/artifacts/{experiment_id}").json()
    assert listed["result"] == ["dir/data.json", "notes.txt"]
    assert listed["attributes"]["runId"] == broker.experiment(experiment_id)["uid"]
    tensorboard = api(broker, "GET", "/api/v1/experiment/tensorboard").json()["result"]
    assert set(tensorboard) == {"available", "url"}


def test_the_cli_shows_metrics_params_and_artifacts(logged, tmp_path: Path, monkeypatch) -> None:
    broker, experiment_id = logged
    table = cli(broker, "experiment", "metrics", experiment_id).output
    assert "loss" in table and "worker-0" in table and "0.3333" in table
    assert "lr" in cli(broker, "experiment", "params", "logged").output  # by name too
    assert cli(broker, "artifacts", "ls", experiment_id).output.split() == ["dir/data.json", "notes.txt"]
    assert cli(broker, "artifacts", "ls", experiment_id, "dir").output.split() == ["dir/data.json"]
    target = tmp_path / "notes.out"
    cli(broker, "artifacts", "get", experiment_id, "notes.txt", "-o", str(target))
    assert target.read_text() == "hello"
    missing = CliRunner().invoke(
        main, ["--url", broker.url, "artifacts", "get", experiment_id, "nope.txt", "-o", str(tmp_path / "x")]
    )
    assert missing.exit_code == 1 and "nope.txt" in missing.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()
    followed = cli(broker, "experiment", "metrics", experiment_id, "--key", "loss", "--follow").output
    assert followed.count("loss") == 3  # the experiment has ended: every point once, then it returns


def test_deleting_keeps_the_run_and_artifacts_unless_purged(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "b")
    broker.start()
    try:
        kept = broker.submit(python_spec(SCRIPT, name="kept"))["experimentId"]
        purged = broker.submit(python_spec(SCRIPT, name="purged"))["experimentId"]
        for experiment_id in (kept, purged):
            assert (
                broker.wait_status(experiment_id, "Succeeded", "Failed", timeout=180)["status"] == "Succeeded"
            )
        uids = {e: broker.experiment(e)["uid"] for e in (kept, purged)}
        assert api(broker, "DELETE", f"/api/v1/experiment/{kept}").status_code == 200
        assert (
            api(broker, "DELETE", f"/api/v1/experiment/{purged}", params={"purge": "true"}).status_code == 200
        )
        run = api(broker, "GET", "/api/2.0/mlflow/runs/get", params={"run_id": uids[kept]})
        assert run.status_code == 200 and run.json()["run"]["info"]["status"] == "FINISHED"
        assert api(broker, "GET", "/api/metric", params={"id": kept}).json()["result"]
        assert api(broker, "GET", f"/api/v1/experiment/artifacts/{kept}").json()["result"] == [
            "dir/data.json",
            "notes.txt",
        ]
        gone = api(broker, "GET", "/api/2.0/mlflow/runs/get", params={"run_id": uids[purged]})
        assert gone.status_code == 404
        assert api(broker, "GET", "/api/metric", params={"id": purged}).json()["result"] == []
        with sqlite3.connect(broker.data_dir / "broker.db") as conn:  # nothing left behind the API either
            left = conn.execute("SELECT COUNT(*) FROM tracking_metric WHERE run_id = ?", (uids[purged],))
            assert left.fetchone() == (0,)
            kept_points = conn.execute("SELECT COUNT(*) FROM tracking_metric WHERE run_id = ?", (uids[kept],))
            assert kept_points.fetchone() == (4,)
        experiment = run.json()["run"]["info"]["experiment_id"]
        listing = api(
            broker,
            "GET",
            "/api/2.0/mlflow-artifacts/artifacts",
            params={"path": f"{experiment}/{uids[purged]}"},
        )
        assert listing.json().get("files", []) == []
    finally:
        broker.close()


def test_another_teams_points_are_404(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "b", auth="token")
    tokens = make_users(broker)
    broker.start()
    try:
        alice = {"Authorization": f"Bearer {tokens['alice']}"}
        bob = {"Authorization": f"Bearer {tokens['bob']}"}
        spec = python_spec("print('hi')", name="private", namespace="vision")
        created = api(broker, "POST", "/api/v1/experiment", json=spec, headers=alice)
        assert created.status_code == 200, created.text
        experiment_id = created.json()["result"]["experimentId"]
        assert (
            api(broker, "GET", "/api/metric", params={"id": experiment_id}, headers=alice).status_code == 200
        )
        assert api(broker, "GET", "/api/metric", params={"id": experiment_id}, headers=bob).status_code == 404
        assert api(broker, "GET", "/api/param", params={"id": experiment_id}, headers=bob).status_code == 404
        point = {"id": experiment_id, "key": "k", "value": 1}
        assert api(broker, "POST", "/api/metric", json=point, headers=bob).status_code == 404
        assert (
            api(broker, "GET", f"/api/v1/experiment/artifacts/{experiment_id}", headers=bob).status_code
            == 404
        )
    finally:
        broker.close()
