"""The rollout record's units of work on a real (in-memory SQLite) database: begin, switch, retire,
go back (on failure, on a PATCH back), a stopped serve, attempt numbers, what the orphan sweep
spares, and when a new attempt counts as ready."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.scheduler.failover import _on_cluster, grace_of
from broker.serving import rollout
from broker.serving.rollouts import fully_ready
from broker.serving.views import rollout_of, serve_json, serving_replicas
from broker.state import FailureCategory, Status, transition
from broker.store.database import make_engine
from broker.store.models import Base
from broker.workloads.model import Event, SupersededAttempt, Workload

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
V1 = {"name": "iris", "version": 1, "modelKey": "7", "alias": None, "flavor": "python_function"}
V2 = {**V1, "version": 2}
PINNED = {"modelVersion": 2, "alias": None}
OLD_URLS = {"server-0": "http://127.0.0.1:4001", "server-1": "http://127.0.0.1:4002"}


@pytest.fixture
def session() -> Iterator[Session]:
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        yield db
    engine.dispose()


def running_serve(session: Session) -> Workload:
    """A serve of version 1 running on ``local`` with two ready replicas."""
    row = Workload(
        id="serve-1",
        uid="uid-1",
        name="iris-1",
        namespace="vision",
        owner="alice",
        framework="serve",
        kind="serve",
        status=Status.RUNNING.value,
        spec={"modelName": "iris", "modelVersion": 1, "replicas": 2, "model": V1},
        cluster="local",
        handle={"uid": "uid-1", "state": {"replicas": ["server-0", "server-1"]}},
        accepted_at=T0,
        updated_at=T0,
        created_at=T0,
        running_at=T0,
        access={"uid": "uid-1", "replicas": OLD_URLS, "ready": ["server-0", "server-1"], "readyAt": "x"},
    )
    session.add(row)
    session.commit()
    return row


def new_attempt_runs(session: Session, row: Workload, urls: dict[str, str]) -> None:
    """What dispatch, the monitor and the serve watch do for the new attempt: place, run, ping."""
    row.cluster = "local"
    row.handle = {"uid": row.uid, "state": {"replicas": list(urls)}}
    transition(session, row, Status.CREATED, "submitted to local")
    transition(session, row, Status.RUNNING, "all replicas are running")
    row.access = {**(row.access or {}), "replicas": urls, "ready": list(urls)}
    session.commit()


def reasons(session: Session) -> list[str]:
    return [e.reason for e in session.scalars(select(Event).order_by(Event.id))]


def test_a_rollout_serves_the_old_replicas_until_the_switch_then_retires_them(session: Session) -> None:
    row = running_serve(session)
    assert rollout.begin(session, row, V2, PINNED, "alice") is None
    session.commit()
    assert row.status == Status.ACCEPTED.value and row.uid != "uid-1" and row.attempt == 2
    assert row.spec["model"] == V2 and row.spec["modelVersion"] == 2
    assert serving_replicas(row) == OLD_URLS  # the old version answers meanwhile
    shown = serve_json(row)
    assert shown["ready"] is True and shown["readyReplicas"] == 2
    assert shown["rollout"]["fromVersion"] == 1 and shown["rollout"]["toVersion"] == 2
    assert shown["rollout"]["servingAttempt"] == 1 and shown["rollout"]["by"] == "alice"

    new_urls = {"server-0": "http://127.0.0.1:5001", "server-1": "http://127.0.0.1:5002"}
    new_attempt_runs(session, row, new_urls)
    assert serving_replicas(row) == OLD_URLS  # running is not switched: the watch switches
    switched = rollout.switch(session, row.id, row.uid)
    session.commit()
    assert switched is not None and rollout_of(row) is None
    assert serving_replicas(row) == new_urls
    assert rollout.retire_due(row, datetime.now(UTC)) is None  # not before RETIRE_AFTER
    later = datetime.now(UTC) + timedelta(seconds=rollout.RETIRE_AFTER + 1)
    kept = rollout.retire_due(row, later)
    assert kept is not None and kept["uid"] == "uid-1" and kept["cluster"] == "local"
    assert rollout.kept_attempts(session, "local") == {"uid-1"}  # the sweep spares it meanwhile
    rollout.retired(session, row.id, kept)
    session.commit()
    assert rollout.retire_due(row, later) is None and rollout.kept_attempts(session, "local") == set()
    assert "retiring" not in (row.access or {})
    history = reasons(session)
    assert "rolling out version 2 of model 'iris' (from version 1 of model 'iris') by alice" in history
    assert "version 2 of model 'iris' answers on every replica on local: requests go to it" in history
    assert "attempt 1's replicas on local stopped" in history


def test_a_failed_new_attempt_goes_back_to_the_one_that_kept_serving(session: Session) -> None:
    row = running_serve(session)
    row.environment, row.environment_hash = {"name": "model:iris/1"}, "h1"
    columns = {"environment": {"name": "model:iris/2"}, "environment_hash": "h2"}
    rollout.begin(session, row, V2, PINNED, "alice", environment=columns)
    assert row.environment_hash == "h2"  # the new version's own requirements
    row.cluster = "local"
    row.handle = {"uid": row.uid, "state": {"replicas": ["server-0"]}}
    transition(session, row, Status.CREATED, "submitted")
    transition(session, row, Status.FAILED, "server-0 exited 1", category=FailureCategory.EXIT_CODE)
    session.commit()
    failed_uid = row.uid
    failed = rollout.rolled_back_on_failure(session, row.id, failed_uid)
    session.commit()
    assert failed is not None and failed["uid"] == failed_uid  # for the caller to cancel
    assert row.status == Status.RUNNING.value and row.uid == "uid-1" and row.attempt == 1
    assert row.spec["model"] == V1 and row.reason is None and row.finished_at is None
    assert row.environment == {"name": "model:iris/1"} and row.environment_hash == "h1"
    assert serving_replicas(row) == OLD_URLS and rollout_of(row) is None
    assert (
        "rollout to version 2 of model 'iris' failed (server-0 exited 1): back to version 1 of model 'iris', "
        "which kept serving"
    ) in reasons(session)
    assert rollout.rolled_back_on_failure(session, row.id, failed_uid) is None  # once
    # The next attempt is numbered past every attempt used so far.
    rollout.begin(session, row, V2, PINNED, "alice")
    assert row.attempt == 3


def test_patching_back_to_the_serving_version_cancels_the_rollout(session: Session) -> None:
    row = running_serve(session)
    rollout.begin(session, row, V2, PINNED, "alice")
    new_uid = row.uid
    row.cluster = "local"
    row.handle = {"uid": new_uid, "state": {"replicas": ["server-0"]}}
    transition(session, row, Status.CREATED, "submitted")
    superseded = rollout.begin(session, row, V1, {"modelVersion": 1, "alias": None}, "bob")
    session.commit()
    assert superseded is not None and superseded["uid"] == new_uid
    assert row.status == Status.RUNNING.value and row.uid == "uid-1" and row.spec["model"] == V1
    assert any(
        r.startswith("rollout to version 2 of model 'iris' cancelled by bob") for r in reasons(session)
    )


def test_another_patch_supersedes_the_new_attempt_and_keeps_the_old_one_serving(session: Session) -> None:
    row = running_serve(session)
    rollout.begin(session, row, V2, PINNED, "alice")
    row.cluster = "local"
    row.handle = {"uid": row.uid, "state": {"replicas": ["server-0"]}}
    first_new = row.uid
    transition(session, row, Status.CREATED, "submitted")
    v3 = {**V1, "version": 3}
    superseded = rollout.begin(session, row, v3, {"modelVersion": 3, "alias": None}, "alice")
    session.commit()
    assert superseded is not None and superseded["uid"] == first_new
    progress = rollout_of(row)
    assert progress is not None and progress["from"] == V1 and progress["to"] == v3
    assert progress["previous"]["uid"] == "uid-1" and serving_replicas(row) == OLD_URLS


def test_a_stopped_serve_only_takes_the_version(session: Session) -> None:
    row = running_serve(session)
    transition(session, row, Status.FAILED, "stopped by alice", category=FailureCategory.KILLED)
    assert rollout.begin(session, row, V2, PINNED, "alice") is None
    session.commit()
    assert row.status == Status.FAILED.value and row.attempt == 1 and rollout_of(row) is None
    assert row.spec["model"] == V2
    assert (
        "version 2 of model 'iris' set by alice (was version 1 of model 'iris'); it starts with it"
        in reasons(session)
    )


def test_a_retired_attempt_that_could_not_be_cancelled_is_left_to_the_sweep(session: Session) -> None:
    row = running_serve(session)
    kept: dict[str, Any] = {"uid": "uid-0", "attempt": 1, "cluster": "local", "handle": {"uid": "uid-0"}}
    rollout.supersede(session, row.id, kept)
    rollout.supersede(session, row.id, kept)  # once
    session.commit()
    found = session.scalars(select(SupersededAttempt)).all()
    assert [(f.uid, f.cluster, f.workload_id) for f in found] == [("uid-0", "local", "serve-1")]


def test_ready_means_every_replica_or_the_balancing_endpoint() -> None:
    row = Workload(handle={"state": {"replicas": ["server-0", "server-1"]}})
    one = {"replicas": {"server-0": "u0"}, "ready": ["server-0"]}
    both = {"replicas": {"server-0": "u0", "server-1": "u1"}, "ready": ["server-0", "server-1"]}
    half = {**both, "ready": ["server-1"]}
    assert not fully_ready(row, one, per_replica=True)  # the second replica has no port yet
    assert fully_ready(row, both, per_replica=True)
    assert not fully_ready(row, half, per_replica=True)
    assert fully_ready(row, one, per_replica=False)  # a Service / Ray Serve route in front
    assert not fully_ready(row, {"replicas": {}, "ready": []}, per_replica=False)


def test_the_failover_pass_reads_serves_on_a_cluster(session: Session) -> None:
    # A serve's spec has no ``meta``: the failover pass once failed on every cluster running one
    # (KeyError), which also stopped its orphan sweep there.
    running_serve(session)
    found = _on_cluster("local")(session)
    assert [(f.id, f.grace) for f in found] == [("serve-1", None)]
    assert grace_of({"meta": {"clusterLossGraceSeconds": 30}}) == 30
    assert grace_of({"meta": None}) is None and grace_of(None) is None
