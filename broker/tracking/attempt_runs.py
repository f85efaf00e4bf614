"""The runs the broker opens for experiment attempts, and their status, which follows the attempt's.

Each attempt of an experiment is one MLflow run whose id is the attempt's uid (32 hex digits, as
MLflow's own ids). Dispatch opens it in the transaction that claims the attempt for a cluster, so
the run exists, tagged with where it runs, before any replica can log to it. From then on every
status change of the workload (:func:`broker.state.transition`) moves the run with it; a new
attempt (failover) ends the run of the attempt it replaces. A script cannot end it: the run
belongs to the attempt, and several replicas share it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from broker.tracking.model import ACTIVE, TrackingExperiment, TrackingRun, TrackingTag

#: MLflow's run statuses by the workload status an attempt is in.
RUN_STATUS = {
    "Accepted": "SCHEDULED",
    "Created": "SCHEDULED",
    "Running": "RUNNING",
    "Succeeded": "FINISHED",
    "Failed": "FAILED",
    "Deleted": "KILLED",
}
ENDED = ("FINISHED", "FAILED", "KILLED")


@dataclass(frozen=True)
class AttemptRun:
    """What the run of one attempt records: whose, which, where."""

    workload_id: str
    uid: str
    attempt: int
    name: str
    namespace: str
    owner: str
    experiment_name: str
    cluster: str
    cluster_kind: str
    placement_revision: int | None


def millis() -> int:
    return int(time.time() * 1000)


def experiment_name_for(namespace: str, named: str | None) -> str:
    """The tracking experiment of a workload: the one its spec names, else its namespace's."""
    return named or namespace


def open_runs(session: Session, attempts: Iterable[AttemptRun]) -> dict[str, int]:
    """Open the run of each attempt (a run already open is kept: a submit finished after a
    restart), creating missing tracking experiments; returns each attempt's experiment id by uid."""
    attempts = list(attempts)
    if not attempts:
        return {}
    stamp = millis()
    experiments = _experiments(session, attempts, stamp)
    chosen = {a.uid: experiments[(a.namespace, a.experiment_name)] for a in attempts}
    runs = [
        {
            "run_id": a.uid,
            "experiment_id": chosen[a.uid],
            "namespace": a.namespace,
            "name": f"{a.name}-{a.attempt}",
            "user_id": a.owner,
            "status": "SCHEDULED",
            "start_time": stamp,
            "lifecycle_stage": ACTIVE,
            "artifact_uri": f"mlflow-artifacts:/{chosen[a.uid]}/{a.uid}/artifacts",
            "workload_id": a.workload_id,
            "attempt": a.attempt,
        }
        for a in attempts
    ]
    tags = [
        {"run_id": a.uid, "key": key, "value": value} for a in attempts for key, value in _tags(a).items()
    ]
    session.execute(_insert_ignoring(session, TrackingRun).values(runs))
    session.execute(_insert_ignoring(session, TrackingTag).values(tags))
    return chosen


def _tags(a: AttemptRun) -> dict[str, str]:
    tags = {
        "mlflow.runName": f"{a.name}-{a.attempt}",
        "mlflow.user": a.owner,
        "mlflow.source.name": a.name,
        "mlflow.source.type": "JOB",
        "submarine.experiment_id": a.workload_id,
        "submarine.namespace": a.namespace,
        "submarine.attempt": str(a.attempt),
        "submarine.cluster": a.cluster,
        "submarine.cluster_kind": a.cluster_kind,
    }
    if a.placement_revision is not None:
        tags["submarine.placement_revision"] = str(a.placement_revision)
    return tags


def _experiments(session: Session, attempts: list[AttemptRun], stamp: int) -> dict[tuple[str, str], int]:
    """The experiment id for each (namespace, wanted name). A name another team's experiment
    already holds is not joined: the team gets ``<namespace>/<name>`` (made unique if need be)."""
    wanted = {(a.namespace, a.experiment_name): a.owner for a in attempts}
    names = {name for _, name in wanted} | {f"{ns}/{name}" for ns, name in wanted}
    names |= {f"{ns}/{name}/{stamp}" for ns, name in wanted}
    found = {
        e.name: e
        for e in session.scalars(select(TrackingExperiment).where(TrackingExperiment.name.in_(names)))
    }
    chosen: dict[tuple[str, str], int] = {}
    for (namespace, name), owner in wanted.items():
        for candidate in (name, f"{namespace}/{name}", f"{namespace}/{name}/{stamp}"):
            existing = found.get(candidate)
            if existing is None:
                created = TrackingExperiment(
                    name=candidate,
                    namespace=namespace,
                    owner=owner,
                    artifact_location="",
                    lifecycle_stage=ACTIVE,
                    creation_time=stamp,
                    last_update_time=stamp,
                )
                session.add(created)
                session.flush()
                created.artifact_location = f"mlflow-artifacts:/{created.id}"
                found[candidate] = created
                chosen[(namespace, name)] = created.id
                break
            if existing.namespace == namespace:
                if existing.lifecycle_stage != ACTIVE:  # deleted by a user: the team's work revives it
                    existing.lifecycle_stage = ACTIVE
                    existing.last_update_time = stamp
                chosen[(namespace, name)] = existing.id
                break
    return chosen


def follow_status(session: Session, uid: str, workload_status: str, *, killed: bool = False) -> None:
    """Move the run of attempt ``uid`` to match its workload's new status (a run already ended
    stays as it ended: a finished run deleted later is still FINISHED). ``killed``: the failure
    was a user's stop, which MLflow calls KILLED."""
    status = "KILLED" if killed else RUN_STATUS[workload_status]
    values: dict[str, object] = {"status": status}
    if status in ENDED:
        values["end_time"] = millis()
    session.execute(
        update(TrackingRun)
        .where(TrackingRun.run_id == uid, TrackingRun.status.not_in(ENDED))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def end_superseded(session: Session, uid: str) -> None:
    """End the run of an attempt a new attempt replaces (its cluster was lost, or it is revived)."""
    session.execute(
        update(TrackingRun)
        .where(TrackingRun.run_id == uid, TrackingRun.status.not_in(ENDED))
        .values(status="KILLED", end_time=millis())
        .execution_options(synchronize_session=False)
    )


def _insert_ignoring(session: Session, entity: type[TrackingRun] | type[TrackingTag]) -> Any:
    """INSERT .. ON CONFLICT DO NOTHING in the session's dialect."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return insert(entity).on_conflict_do_nothing()
