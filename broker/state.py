"""The experiment state machine: Submarine's statuses, the allowed moves, and the one write path.

Every status change goes through :func:`transition`, which refuses illegal moves (a late
"Running" report after a delete, a revived terminal run), stamps the matching time column and
writes an event row, in the caller's transaction.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from broker.store.models import Event, Experiment


class Status(enum.StrEnum):
    """Submarine 0.8.0 experiment statuses, case-exact."""

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

#: Statuses (as stored) of experiments with an attempt on a cluster: started there...
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


class IllegalTransition(Exception):
    """A move the state machine does not allow; the row is left as it was."""

    def __init__(self, experiment_id: str, current: Status, target: Status) -> None:
        super().__init__(f"{experiment_id}: {current.value} → {target.value} is not allowed")
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
    experiment: Experiment,
    target: Status,
    reason: str = "",
    *,
    category: FailureCategory | str | None = None,
    at: datetime | None = None,
) -> bool:
    """Move ``experiment`` to ``target`` in the caller's transaction and record the event.

    Returns False (and changes nothing) when it is already there; raises
    :class:`IllegalTransition` for a move the table does not allow.
    """
    current = Status(experiment.status)
    if current is target:
        return False
    if not can_move(current, target):
        raise IllegalTransition(experiment.id, current, target)
    failure = FailureCategory(category).value if category else None  # refuse a bad category before any change
    when = at or now()
    experiment.status = target.value
    experiment.updated_at = when
    if target is Status.CREATED and experiment.created_at is None:
        experiment.created_at = when
    elif target is Status.RUNNING and experiment.running_at is None:
        experiment.running_at = when
    elif target in (Status.SUCCEEDED, Status.FAILED) and experiment.finished_at is None:
        experiment.finished_at = when
    elif target is Status.DELETED:
        experiment.deleted_at = when
    if target is Status.FAILED:
        experiment.reason = reason
        experiment.failure_category = failure
    elif target is Status.SUCCEEDED:
        experiment.reason = reason or None
    experiment.status_message = None
    session.add(
        Event(
            experiment_id=experiment.id,
            at=when,
            from_status=current.value,
            to_status=target.value,
            reason=reason,
            attempt=experiment.attempt,
        )
    )
    return True


def restart(session: Session, workload: Experiment, reason: str, *, uid: str) -> None:
    """Start an ended notebook again as a new attempt (``uid``): Succeeded/Failed → Accepted.

    Not in :data:`TRANSITIONS` on purpose: no cluster report may revive an ended run; only this
    explicit user action does, and only for notebooks (their id, working directory and URL stay).
    """
    current = Status(workload.status)
    if workload.kind != "notebook" or current not in (Status.SUCCEEDED, Status.FAILED):
        raise IllegalTransition(workload.id, current, Status.ACCEPTED)
    when = now()
    workload.status = Status.ACCEPTED.value
    workload.attempt += 1
    workload.uid = uid
    workload.cluster = None
    workload.handle = None
    workload.placement = None
    workload.access = None
    workload.dispatch_tries = 0
    workload.next_dispatch_at = None
    workload.reason = None
    workload.failure_category = None
    workload.status_message = None
    workload.created_at = workload.running_at = workload.finished_at = None
    workload.updated_at = when
    session.add(
        Event(
            experiment_id=workload.id,
            at=when,
            from_status=current.value,
            to_status=Status.ACCEPTED.value,
            reason=reason,
            attempt=workload.attempt,
        )
    )


def record(session: Session, experiment: Experiment, reason: str, *, at: datetime | None = None) -> None:
    """Record an event that is not a status change (placement, a waiting reason, a warning)."""
    session.add(
        Event(
            experiment_id=experiment.id,
            at=at or now(),
            from_status=experiment.status,
            to_status=None,
            reason=reason,
            attempt=experiment.attempt,
        )
    )
