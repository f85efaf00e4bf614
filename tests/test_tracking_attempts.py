"""Experiments are runs: each attempt gets its MLflow run before dispatch, every replica logs into
it with no configuration, each point names its replica, and the run follows the experiment."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support import Broker, python_spec

pytestmark = pytest.mark.timeout(300)

#: A training script as a user writes it: nothing about where the broker is.
LOGGING_SCRIPT = """
import os, mlflow
index = int(os.environ["SUBMARINE_REPLICA_INDEX"])
with mlflow.start_run() as run:
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1) + index, step=step)
    mlflow.log_param(f"lr_{index}", "0.1")
    mlflow.set_tag(f"replica_{index}", "done")
    print("logged to", run.info.run_id)
{tail}
"""


def _mlflow(broker: Broker, path: str, **params: Any) -> dict[str, Any]:
    answer = httpx.get(f"{broker.url}/api/2.0/mlflow/{path}", params=params, timeout=30)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _run_of(broker: Broker, experiment: dict[str, Any]) -> dict[str, Any]:
    run: dict[str, Any] = _mlflow(broker, "runs/get", run_id=experiment["uid"])["run"]
    return run


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _submit(broker: Broker, tail: str = "", replicas: int = 2, **meta: Any) -> dict[str, Any]:
    spec = python_spec(
        LOGGING_SCRIPT.replace("{tail}", tail),
        name="tracked",
        roles={"Worker": {"replicas": replicas, "resources": "cpu=0.1,memory=64M"}},
        **meta,
    )
    return broker.submit(spec)


def test_both_replicas_log_into_the_attempts_run_each_point_naming_its_replica(
    broker_factory: Callable[..., Broker],
) -> None:
    broker = broker_factory()
    submitted = _submit(broker)
    done = broker.wait_status(submitted["experimentId"], "Succeeded", "Failed", timeout=180)
    logs = broker.logs(submitted["experimentId"])
    assert done["status"] == "Succeeded", json.dumps(logs)[-3000:]
    experiment = broker.experiment(submitted["experimentId"])
    run = _run_of(broker, experiment)
    assert run["info"]["status"] == "FINISHED"
    tags = _tags(run)
    assert tags["submarine.cluster"] == "local"
    assert tags["submarine.cluster_kind"] == "local"
    assert tags["submarine.attempt"] == "1"
    assert tags["submarine.experiment_id"] == submitted["experimentId"]
    assert tags["replica_0"] == tags["replica_1"] == "done"
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params == {"lr_0": "0.1", "lr_1": "0.1"}
    history = _mlflow(broker, "metrics/get-history", run_id=run["info"]["run_id"], metric_key="loss")
    assert len(history["metrics"]) == 6
    # The broker's own view of the points says which replica logged each.
    answer = httpx.get(f"{broker.url}/api/metric", params={"id": submitted["experimentId"]}, timeout=30)
    assert answer.status_code == 200, answer.text
    points = answer.json()["result"]
    by_worker = sorted((p["workerIndex"], p["step"], p["value"]) for p in points)
    assert by_worker == sorted(
        (f"worker-{i}", step, 1.0 / (step + 1) + i) for i in range(2) for step in range(3)
    )
    experiments = _mlflow(broker, "experiments/get", experiment_id=run["info"]["experiment_id"])
    assert experiments["experiment"]["name"] == "default"


def test_a_failing_experiment_fails_its_run_and_a_named_tracking_experiment_is_used(
    broker_factory: Callable[..., Broker],
) -> None:
    broker = broker_factory()
    submitted = _submit(broker, tail="raise SystemExit(3)", replicas=1, trackingExperiment="vision-runs")
    done = broker.wait_status(submitted["experimentId"], "Succeeded", "Failed", timeout=180)
    assert done["status"] == "Failed"
    run = _run_of(broker, broker.experiment(submitted["experimentId"]))
    assert run["info"]["status"] == "FAILED"
    assert run["info"]["end_time"] >= run["info"]["start_time"]
    found = _mlflow(broker, "experiments/get-by-name", experiment_name="vision-runs")["experiment"]
    assert run["info"]["experiment_id"] == found["experiment_id"]
    assert _mlflow(broker, "metrics/get-history", run_id=run["info"]["run_id"], metric_key="loss")["metrics"]
