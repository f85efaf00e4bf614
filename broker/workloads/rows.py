"""The life of a workload row: its first attempt (:func:`new_row`, :func:`insert_accepted`), each
next one (:func:`new_attempt`), and its history (:func:`events_of`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from broker.ids import new_uid
from broker.state import IllegalTransition, Status, may_reopen, now, record, reopen
from broker.tracking.attempt_runs import end_superseded
from broker.workloads.kind import Kind
from broker.workloads.model import Event, Workload
from runtimes.environment import EnvironmentPlan

#: Keys of a serve's ``access`` record that belong to no one attempt (see broker.serving.rollout).
_ATTEMPT_INDEPENDENT = ("rollout", "retiring")


def new_row(workload_id: str, **fields: Any) -> dict[str, Any]:
    """The column values of a new workload row: a first attempt, Accepted now, plus ``fields``."""
    stamp = now()
    return {
        "id": workload_id,
        "uid": new_uid(),
        "attempt": 1,
        "status": Status.ACCEPTED.value,
        "priority": 0,
        "dispatch_tries": 0,
        "accepted_at": stamp,
        "updated_at": stamp,
        **fields,
    }


def pinned_columns(environment: EnvironmentPlan | None) -> dict[str, Any]:
    """The row's columns for the environment a submission pins (none: both null)."""
    if environment is None:
        return {"environment": None, "environment_hash": None}
    return {"environment": environment.model_dump(mode="json"), "environment_hash": environment.hash}


def insert_accepted(values: dict[str, Any], reason: str) -> Callable[[Session], Workload]:
    """The unit of work that stores a new workload row (``values``) as Accepted with its first event.

    Core inserts: the hottest write of the broker, about half the cost of an ORM flush.
    """
    event = {
        "workload_id": values["id"],
        "at": values["accepted_at"],
        "from_status": None,
        "to_status": Status.ACCEPTED.value,
        "reason": reason,
        "attempt": 1,
    }

    def insert_rows(session: Session) -> Workload:
        session.execute(insert(Workload), [values])
        session.execute(insert(Event), [event])
        return Workload(**values)

    return insert_rows


def new_attempt(session: Session, row: Workload, reason: str, *, revive: bool = False) -> None:
    """Start the next attempt of ``row``, in the caller's transaction: a new uid and number,
    Accepted and unplaced, and nothing of the previous attempt (cluster, handle, placement,
    dispatch retries, times, outcome, a notebook server's access record; a serve's rollout
    records stay).

    From Created or Running (a requeue after a lost cluster) the row moves back to Accepted; from
    Accepted (the submit to a lost cluster in flight) it stays there. Either way one event,
    ``reason``, opens the new attempt in the history, which keeps the previous attempts' events
    (and with them their times). ``revive`` starts an ended workload again (Succeeded or Failed;
    a notebook its user starts again), for kinds that may be restarted. Raises
    :class:`IllegalTransition`, changing nothing, from any other state.
    """
    current = Status(row.status)
    allowed = current is Status.ACCEPTED or may_reopen(current, revive=revive)
    if not allowed or (revive and not Kind(row.kind).restartable):
        raise IllegalTransition(row.id, current, Status.ACCEPTED)
    if row.kind == Kind.EXPERIMENT.value:
        end_superseded(session, row.uid)
    row.uid = new_uid()
    # Past the highest number used: a serve that went back from a rollout runs an older attempt.
    used = session.scalar(select(func.max(Event.attempt)).where(Event.workload_id == row.id))
    row.attempt = max(row.attempt, used or 0) + 1
    row.cluster = None
    row.handle = None
    row.placement = None
    row.dispatch_tries = 0
    row.next_dispatch_at = None
    row.created_at = row.running_at = row.finished_at = None
    row.reason = None
    row.failure_category = None
    # A serve's rollout records outlive its attempts: the replicas they name still serve.
    kept = {k: v for k, v in (row.access or {}).items() if k in _ATTEMPT_INDEPENDENT}
    row.access = {"uid": row.uid, **kept} if kept else None
    if current is Status.ACCEPTED:
        row.status_message = None
        row.updated_at = now()
        record(session, row, reason)
    else:
        reopen(session, row, reason, revive=revive)


def events_of(workload_id: str) -> Callable[[Session], list[Event]]:
    """The unit of work reading a workload's events, oldest first."""
    return lambda s: list(
        s.scalars(select(Event).where(Event.workload_id == workload_id).order_by(Event.id)).all()
    )
