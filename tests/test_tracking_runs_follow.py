"""Each experiment attempt's tracking run, in-process on scripted clusters: opened when dispatch
claims the attempt, handed to every replica with a run token naming it, moved with the workload's
status, ended when a new attempt replaces it; the token dies with the attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from broker.tracking.model import TrackingExperiment, TrackingRun, TrackingTag
from runtimes.plan import LaunchPlan
from tests.inprocess import InProcessBroker, scripted_clusters

CLUSTERS = scripted_clusters("east", "west")


def spec(**meta: Any) -> dict[str, Any]:
    return {
        "meta": {
            "name": "mnist",
            "framework": "pytorch",
            "cmd": "python train.py",
            "placement": {"preferredClusters": ["east"]},
            **meta,
        },
        "spec": {
            "Master": {"replicas": 1, "resources": "cpu=1,memory=1Gi"},
            "Worker": {"replicas": 2, "resources": "cpu=1,memory=1Gi"},
        },
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessBroker]:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        made = InProcessBroker(tmp_path, database_url=url, **CLUSTERS)
    else:
        made = InProcessBroker(tmp_path, **CLUSTERS)
    yield made
    made.close()


def submit(broker: InProcessBroker, **meta: Any) -> str:
    return broker.result("POST", "/experiment", json=spec(**meta))["experimentId"]


def run_of(broker: InProcessBroker, uid: str) -> TrackingRun | None:
    return broker.context.db.call(lambda s: s.get(TrackingRun, uid))


def tags_of(broker: InProcessBroker, uid: str) -> dict[str, str]:
    rows = broker.context.db.call(
        lambda s: list(s.scalars(select(TrackingTag).where(TrackingTag.run_id == uid)))
    )
    return {t.key: t.value for t in rows}


def plan_on(broker: InProcessBroker, cluster: str, exp: str) -> LaunchPlan:
    return broker.cluster(cluster).of(exp).plan


def test_dispatch_opens_the_attempts_run_before_the_submit_and_tells_every_replica(broker) -> None:
    exp = submit(broker)
    uid = broker.result("GET", f"/experiment/{exp}")["uid"]
    assert run_of(broker, uid) is None  # waiting work has no run yet
    broker.dispatch()
    run = run_of(broker, uid)
    assert run is not None and run.status == "SCHEDULED" and run.workload_id == exp and run.attempt == 1
    experiment = broker.context.db.call(lambda s: s.get(TrackingExperiment, run.experiment_id))
    assert experiment.name == "default" and experiment.namespace == "default"
    assert run.artifact_uri == f"mlflow-artifacts:/{experiment.id}/{uid}/artifacts"
    tags = tags_of(broker, uid)
    assert tags["submarine.cluster"] == "east" and tags["submarine.cluster_kind"] == "scripted"
    assert tags["submarine.attempt"] == "1" and tags["submarine.experiment_id"] == exp
    assert "submarine.placement_revision" in tags
    plan = plan_on(broker, "east", exp)
    tokens = set()
    for replica in plan.replicas:
        env = replica.env
        assert env["MLFLOW_RUN_ID"] == uid
        assert env["MLFLOW_EXPERIMENT_ID"] == str(experiment.id)
        assert env["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{broker.context.config.port}"
        scope = broker.context.run_tokens.verify(env["MLFLOW_TRACKING_TOKEN"])
        assert scope is not None and scope[0] == exp
        assert (scope[1].run_id, scope[1].replica) == (uid, replica.name)
        tokens.add(env["MLFLOW_TRACKING_TOKEN"])
    assert len(tokens) == 3  # one per replica: each point names who logged it


def test_the_run_follows_the_experiment_to_running_and_finished(broker) -> None:
    exp = submit(broker)
    broker.dispatch()
    uid = broker.result("GET", f"/experiment/{exp}")["uid"]
    broker.cluster("east").run(exp)
    broker.monitor()
    assert run_of(broker, uid).status == "RUNNING"  # type: ignore[union-attr]
    broker.cluster("east").succeed(exp)
    broker.monitor()
    run = run_of(broker, uid)
    assert run is not None and run.status == "FINISHED" and run.end_time is not None
    broker.delete(f"/experiment/{exp}")
    assert run_of(broker, uid).status == "FINISHED"  # type: ignore[union-attr]  # deleting keeps how it ended


def test_a_failed_experiment_fails_its_run_and_a_stopped_one_is_killed(broker) -> None:
    failing, stopped = submit(broker), submit(broker)
    broker.dispatch()
    broker.cluster("east").fail(failing)
    broker.monitor()
    assert run_of(broker, broker.result("GET", f"/experiment/{failing}")["uid"]).status == "FAILED"  # type: ignore[union-attr]
    broker.post(f"/experiment/{stopped}/stop")
    assert run_of(broker, broker.result("GET", f"/experiment/{stopped}")["uid"]).status == "KILLED"  # type: ignore[union-attr]


def test_a_new_attempt_ends_the_old_run_and_opens_its_own(broker) -> None:
    exp = submit(broker, maxRetries=1)
    broker.dispatch()
    first = broker.result("GET", f"/experiment/{exp}")["uid"]
    broker.cluster("east").run(exp)
    broker.monitor()
    broker.lose("east", for_seconds=700)
    broker.failover()
    assert run_of(broker, first).status == "KILLED"  # type: ignore[union-attr]
    broker.dispatch()
    second = broker.result("GET", f"/experiment/{exp}")["uid"]
    assert second != first
    run = run_of(broker, second)
    assert run is not None and run.attempt == 2 and run.status == "SCHEDULED"
    assert tags_of(broker, second)["submarine.cluster"] == "west"


def test_a_named_tracking_experiment_is_used_and_another_teams_name_is_not_joined(broker) -> None:
    exp = submit(broker, trackingExperiment="vision-runs")
    theirs = submit(broker, trackingExperiment="vision-runs", namespace="nlp")
    broker.dispatch()
    mine = run_of(broker, broker.result("GET", f"/experiment/{exp}")["uid"])
    other = run_of(broker, broker.result("GET", f"/experiment/{theirs}")["uid"])
    assert mine is not None and other is not None and mine.experiment_id != other.experiment_id
    names = broker.context.db.call(
        lambda s: {e.id: (e.name, e.namespace) for e in s.scalars(select(TrackingExperiment))}
    )
    assert names[mine.experiment_id] == ("vision-runs", "default")
    assert names[other.experiment_id] == ("nlp/vision-runs", "nlp")


def test_a_run_token_lives_as_long_as_its_attempt(broker) -> None:
    exp = submit(broker)
    broker.dispatch()
    token = plan_on(broker, "east", exp).replicas[1].env["MLFLOW_TRACKING_TOKEN"]
    tokens = broker.context.run_tokens
    alive = broker.run(tokens.caller(broker.context.db, token))
    assert alive is not None and alive.scope.replica == plan_on(broker, "east", exp).replicas[1].name
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert broker.run(tokens.caller(broker.context.db, forged)) is None
    other_run = token.replace(token[4:8], "ffff" if token[4:8] != "ffff" else "eeee", 1)
    assert broker.run(tokens.caller(broker.context.db, other_run)) is None  # the signature covers the run
    broker.cluster("east").succeed(exp)
    broker.monitor()
    assert broker.run(tokens.caller(broker.context.db, token)) is None


def test_a_run_token_reaches_only_the_tracking_api(broker) -> None:
    exp = submit(broker)
    broker.dispatch()
    token = plan_on(broker, "east", exp).replicas[0].env["MLFLOW_TRACKING_TOKEN"]
    headers = {"Authorization": f"Bearer {token}"}
    answer = broker.get(f"/experiment/{exp}", headers=headers)
    assert answer.status_code == 403 and "tracking API" in answer.json()["message"]
    assert broker.get("/cluster", headers=headers).status_code == 403
    broker.cluster("east").fail(exp)
    broker.monitor()
    ended = broker.get(f"/experiment/{exp}", headers=headers)
    assert ended.status_code == 401 and "ended" in ended.json()["message"]


def test_tokens_of_another_broker_key_are_refused(broker, tmp_path: Path) -> None:
    exp = submit(broker)
    broker.dispatch()
    token = plan_on(broker, "east", exp).replicas[0].env["MLFLOW_TRACKING_TOKEN"]
    from broker.secret_key import SecretBox
    from broker.tracking.run_tokens import RunTokens

    assert RunTokens(SecretBox.ephemeral()).verify(token) is None
    assert asyncio.run(RunTokens(SecretBox.ephemeral()).caller(broker.context.db, token)) is None


def mlflow(broker: InProcessBroker, method: str, path: str, token: str, **kwargs: Any) -> Any:
    return broker.run(
        broker.client.request(
            method,
            f"http://broker/api/2.0/mlflow/{path}",
            headers={"Authorization": f"Bearer {token}"},
            **kwargs,
        )
    )


def test_a_run_token_logs_to_its_run_naming_its_replica_and_reaches_nothing_else(broker) -> None:
    mine, other = submit(broker), submit(broker)
    broker.dispatch()
    plan = plan_on(broker, "east", mine)
    token = plan.replicas[2].env["MLFLOW_TRACKING_TOKEN"]
    other_uid = broker.result("GET", f"/experiment/{other}")["uid"]

    got = mlflow(broker, "GET", "runs/get", token, params={"run_id": plan.uid})
    assert got.status_code == 200 and got.json()["run"]["info"]["run_id"] == plan.uid
    logged = mlflow(
        broker,
        "POST",
        "runs/log-metric",
        token,
        json={"run_id": plan.uid, "key": "loss", "value": 0.5, "timestamp": 1},
    )
    assert logged.status_code == 200, logged.text
    points = broker.run(
        broker.client.get(
            "http://broker/api/metric", params={"id": mine}, headers={"Authorization": f"Bearer {token}"}
        )
    ).json()["result"]
    assert [(p["key"], p["value"], p["workerIndex"]) for p in points] == [
        ("loss", 0.5, plan.replicas[2].name)
    ]

    assert mlflow(broker, "GET", "runs/get", token, params={"run_id": other_uid}).status_code == 404
    assert (
        mlflow(
            broker,
            "POST",
            "runs/log-metric",
            token,
            json={"run_id": other_uid, "key": "x", "value": 1, "timestamp": 1},
        ).status_code
        == 404
    )
    created = mlflow(broker, "POST", "experiments/create", token, json={"name": "elsewhere"})
    assert created.status_code == 403 and created.json()["error_code"] == "PERMISSION_DENIED"
    other_points = broker.run(
        broker.client.get(
            "http://broker/api/metric", params={"id": other}, headers={"Authorization": f"Bearer {token}"}
        )
    )
    assert other_points.status_code == 404

    # The script's end_run does not end the run: the attempt does.
    ended = mlflow(broker, "POST", "runs/update", token, json={"run_id": plan.uid, "status": "FINISHED"})
    assert ended.status_code == 200
    assert run_of(broker, plan.uid).status == "SCHEDULED"  # type: ignore[union-attr]
    broker.cluster("east").succeed(mine)
    broker.monitor()
    after = mlflow(
        broker,
        "POST",
        "runs/log-metric",
        token,
        json={"run_id": plan.uid, "key": "loss", "value": 1, "timestamp": 2},
    )
    assert after.status_code == 401 and after.json()["error_code"] == "UNAUTHENTICATED"
