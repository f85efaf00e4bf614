"""The workload state machine: Submarine's statuses, the allowed moves, and the one write path.

Every status change goes through :func:`transition`, which refuses illegal moves (a late
"Running" report after a delete, a revived terminal run), stamps the matching time column of the
current attempt and writes an event row, in the caller's transaction. The other moves: back to
Accepted for a new attempt (:func:`reopen`), and a serve back to the attempt that kept serving
when its rollout failed (:func:`resume`).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from broker.tracking.attempt_runs import follow_status
from broker.workloads.model import Event, Workload


class Status(enum.StrEnum):
    """Submarine 0.8.0 statuses (of experiments, and of every workload), case-exact."""

    ACCEPTED = "Accepted"
    CREATED = "Created"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    DELETED = "Deleted"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @classmethod
    def parse(cls, text: str) -> Status:
        """Case-insensitive lookup (``?status=running``); ``ValueError`` names the valid values."""
        for status in cls:
            if status.value.lower() == text.strip().lower():
                return status
        raise ValueError(f"unknown status '{text}'; expected one of {', '.join(s.value for s in cls)}")


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.DELETED})

#: Statuses (as stored) of workloads with an attempt on a cluster: started there...
ACTIVE = (Status.CREATED.value, Status.RUNNING.value)
#: ...or, with ``cluster`` set while Accepted, chosen for it with the submit in flight.
ON_CLUSTER = (Status.ACCEPTED.value, *ACTIVE)

#: The allowed moves. A fast run may go Created → Succeeded between two polls.
#: Created/Running → Accepted is a failover: the attempt's cluster was lost and a new attempt
#: (new uid) is placed again.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.ACCEPTED: frozenset({Status.CREATED, Status.FAILED, Status.DELETED}),
    Status.CREATED: frozenset(
        {Status.ACCEPTED, Status.RUNNING, Status.SUCCEEDED, Status.FAILED, Status.DELETED}
    ),
    Status.RUNNING: frozenset({Status.ACCEPTED, Status.SUCCEEDED, Status.FAILED, Status.DELETED}),
    Status.SUCCEEDED: frozenset({Status.DELETED}),
    Status.FAILED: frozenset({Status.DELETED}),
    Status.DELETED: frozenset(),
}


class FailureCategory(enum.StrEnum):
    """Why a run failed, beside the free-text reason."""

    KILLED = "killed"
    EXIT_CODE = "exit_code"
    CLUSTER_LOST = "cluster_lost"
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    #: The workload's environment could not be built (the installer's error line is the reason).
    ENVIRONMENT = "environment"


class IllegalTransition(Exception):
    """A move the state machine does not allow; the row is left as it was."""

    def __init__(self, workload_id: str, current: Status, target: Status) -> None:
        super().__init__(f"{workload_id}: {current.value} → {target.value} is not allowed")
        self.current = current
        self.target = target


def now() -> datetime:
    """The current time, UTC, without microseconds noise beyond the database's precision."""
    return datetime.now(UTC)


def can_move(current: Status, target: Status) -> bool:
    """True when ``current`` → ``target`` is allowed."""
    return target in TRANSITIONS[current]


def transition(
    session: Session,
    workload: Workload,
    target: Status,
    reason: str = "",
    *,
    category: FailureCategory | str | None = None,
    at: datetime | None = None,
) -> bool:
    """Move ``workload`` to ``target`` in the caller's transaction and record the event.

    Returns False (and changes nothing) when it is already there; raises
    :class:`IllegalTransition` for a move the table does not allow.
    """
    current = Status(workload.status)
    if current is target:
        return False
    if not can_move(current, target):
        raise IllegalTransition(workload.id, current, target)
    failure = FailureCategory(category).value if category else None  # refuse a bad category before any change
    when = at or now()
    workload.status = target.value
    workload.updated_at = when
    if target is Status.CREATED and workload.created_at is None:
        workload.created_at = when
    elif target is Status.RUNNING and workload.running_at is None:
        workload.running_at = when
    elif target in (Status.SUCCEEDED, Status.FAILED) and workload.finished_at is None:
        workload.finished_at = when
    elif target is Status.DELETED:
        workload.deleted_at = when
    if target is Status.FAILED:
        workload.reason = reason
        workload.failure_category = failure
    elif target is Status.SUCCEEDED:
        workload.reason = reason or None
    workload.status_message = None
    if workload.kind == "experiment":  # its attempt's tracking run follows (broker.tracking)
        follow_status(session, workload.uid, target.value, killed=failure == FailureCategory.KILLED.value)
    _moved(session, workload, current, target, reason, when)
    return True


def _moved(
    session: Session, workload: Workload, current: Status, target: Status, reason: str, when: datetime
) -> None:
    """The event of a status change, under the workload's current attempt."""
    session.add(
        Event(
            workload_id=workload.id,
            at=when,
            from_status=current.value,
            to_status=target.value,
            reason=reason,
            attempt=workload.attempt,
        )
    )


def reopen(session: Session, workload: Workload, reason: str, *, revive: bool = False) -> None:
    """Move ``workload`` back to Accepted for its next attempt, and record it under that attempt.

    Only :func:`broker.workloads.rows.new_attempt` calls it, once the row holds the new attempt.
    Allowed where :data:`TRANSITIONS` allows it (Created or Running: a failover) and, with
    ``revive``, from Succeeded or Failed: that move is not in the table on purpose, so no cluster
    report may revive an ended run; only an explicit user action does (a notebook started again).
    """
    current = Status(workload.status)
    if not may_reopen(current, revive=revive):
        raise IllegalTransition(workload.id, current, Status.ACCEPTED)
    when = now()
    workload.status = Status.ACCEPTED.value
    workload.updated_at = when
    workload.status_message = None
    _moved(session, workload, current, Status.ACCEPTED, reason, when)


def resume(session: Session, workload: Workload, target: Status, reason: str) -> None:
    """Move ``workload`` back to an attempt that still runs on its cluster (``target``: Created or
    Running), in the caller's transaction: the row already holds that attempt again. Only a serve
    going back from a rollout does it (:func:`broker.serving.rollout.roll_back`): the attempt it
    goes back to never stopped. The new attempt's outcome (reason, category, end time) is dropped.
    """
    if target not in (Status.CREATED, Status.RUNNING):
        raise IllegalTransition(workload.id, Status(workload.status), target)
    current = Status(workload.status)
    when = now()
    workload.status = target.value
    workload.updated_at = when
    workload.finished_at = None
    workload.reason = None
    workload.failure_category = None
    workload.status_message = None
    _moved(session, workload, current, target, reason, when)


def may_reopen(current: Status, *, revive: bool = False) -> bool:
    """Whether :func:`reopen` allows a move from ``current`` (see there)."""
    return can_move(current, Status.ACCEPTED) or (revive and current in (Status.SUCCEEDED, Status.FAILED))


def record(session: Session, workload: Workload, reason: str, *, at: datetime | None = None) -> None:
    """Record an event that is not a status change (placement, a waiting reason, a warning)."""
    session.add(
        Event(
            workload_id=workload.id,
            at=at or now(),
            from_status=workload.status,
            to_status=None,
            reason=reason,
            attempt=workload.attempt,
        )
    )
