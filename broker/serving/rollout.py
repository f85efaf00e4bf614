"""Rolling a serve out to another version: the rollout record and its units of work.

``PATCH /api/v1/serve/{id}`` (or the alias a serve follows moving) starts a new attempt of the serve
with the new version (:func:`begin`): placed, dispatched and watched like any attempt, while the
previous attempt's replicas go on answering the proxy. What the serve needs of that previous attempt
is kept in the new attempt's ``access`` record under ``rollout``. Once every replica of the new
attempt answers ``/ping``, the serve watch switches (:func:`switch`): the proxy's resolver answers
with the new replicas from then on, and the previous attempt moves to ``retiring``. It is cancelled
on its cluster (:func:`retired`) :data:`RETIRE_AFTER` seconds later, longer than any broker keeps a
resolved serve (:data:`broker.serving.replicas.RESOLVE_TTL`), and once the requests this broker
sends it have ended: no request is refused on the way. If the new attempt fails instead, or the
caller rolls out to the version the previous attempt serves, the serve goes back to that attempt
(:func:`roll_back`), which never stopped serving.

Both records outlive a new attempt of the same rollout (a failover requeue, another ``PATCH``):
:func:`broker.workloads.rows.new_attempt` keeps them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.errors import Conflict, NotFound
from broker.serving.views import MODEL_KEY, ROLLOUT, attempt_access, rollout_of
from broker.state import Status, now, record, resume
from broker.workloads.model import SupersededAttempt, Workload
from broker.workloads.rows import new_attempt

#: Seconds between the switch to the new replicas and cancelling the previous ones.
RETIRE_AFTER = 5.0
RETIRING = "retiring"
#: The attempt columns a rollout keeps of the previous attempt, to cancel it or go back to it.
_KEPT = ("uid", "attempt", "cluster", "handle", "placement", "environment", "environment_hash")


def version_text(model: dict[str, Any]) -> str:
    """``version 3 of model 'iris'`` (``(alias champion)`` added when the serve follows one)."""
    text = f"version {model.get('version')} of model '{model.get('name')}'"
    return f"{text} (alias {model['alias']})" if model.get("alias") else text


def _previous(row: Workload) -> dict[str, Any] | None:
    """What a rollout keeps of ``row``'s current attempt; None when it has nothing on a cluster yet."""
    if row.handle is None or row.status not in (Status.CREATED.value, Status.RUNNING.value):
        return None
    kept = {name: getattr(row, name) for name in _KEPT}
    kept["status"] = row.status
    kept["createdAt"] = row.created_at.isoformat() if row.created_at else None
    kept["runningAt"] = row.running_at.isoformat() if row.running_at else None
    kept["access"] = {k: v for k, v in attempt_access(row).items() if k not in (ROLLOUT, RETIRING)}
    return kept


def begin(
    session: Session,
    row: Workload,
    model: dict[str, Any],
    spec_fields: dict[str, Any],
    by: str,
    *,
    environment: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Start serving ``model`` (the ``model`` record of the spec) in ``row``, in the caller's
    transaction. Returns the attempt to cancel on its cluster once committed (the new attempt of
    a rollout in progress, now superseded), else None.

    A stopped serve (Failed) only takes the new version: it starts with it. An active one gets a
    new attempt; its current attempt keeps serving until the new one is ready (a rollout), unless
    a rollout is in progress already: then that rollout's own new attempt is superseded (the
    previous attempt keeps serving), or, when ``model`` is the previous attempt's version, the
    serve goes back to it at once. ``environment`` holds the environment columns the new version
    takes (None: the serve's stay).
    """
    old = dict((row.spec or {}).get(MODEL_KEY) or {})
    row.spec = {**(row.spec or {}), **spec_fields, MODEL_KEY: model}
    status = Status(row.status)
    if status is Status.DELETED:
        raise NotFound("Serve not found.")
    if status.is_terminal:
        _take(row, environment)
        record(
            session, row, f"{version_text(model)} set by {by} (was {version_text(old)}); it starts with it"
        )
        return None
    progress = rollout_of(row)
    retiring = attempt_access(row).get(RETIRING)
    superseded: dict[str, Any] | None = None
    if progress is not None:
        superseded = {name: getattr(row, name) for name in _KEPT}
        if progress["from"].get("version") == model.get("version"):
            roll_back(session, row, f"rollout to {version_text(old)} cancelled by {by}", model=model)
            return superseded if superseded["handle"] else None
        previous, started = progress["previous"], progress
    else:
        previous, started = _previous(row), None
    _take(row, environment)  # after the previous attempt's were kept
    reason = f"rolling out {version_text(model)} (from {version_text(old)}) by {by}"
    new_attempt(session, row, reason)
    access: dict[str, Any] = {"uid": row.uid}
    if previous is not None:
        access[ROLLOUT] = {
            "from": started["from"] if started else old,
            "to": model,
            "by": by,
            "startedAt": now().isoformat(),
            "previous": previous,
        }
    if retiring is not None:
        access[RETIRING] = retiring
    row.access = access
    if superseded is not None and superseded["handle"] is not None:
        return superseded
    return None


def _take(row: Workload, environment: dict[str, Any] | None) -> None:
    """Give ``row`` the new version's own environment columns, when it brings them."""
    for column, value in (environment or {}).items():
        setattr(row, column, value)


def switch(session: Session, workload_id: str, uid: str) -> dict[str, Any] | None:
    """The new attempt ``uid`` answers on every replica: requests go to it from now on, and the
    previous attempt retires. Returns the rollout record switched (None when the row moved on)."""
    row = session.get(Workload, workload_id, with_for_update=True)
    if row is None or row.uid != uid or row.status != Status.RUNNING.value:
        return None
    progress = rollout_of(row)
    if progress is None:
        return None
    access = {k: v for k, v in attempt_access(row).items() if k != ROLLOUT}
    access[RETIRING] = {**progress["previous"], "switchedAt": now().isoformat()}
    row.access = access
    where = row.cluster
    record(
        session, row, f"{version_text(progress['to'])} answers on every replica on {where}: requests go to it"
    )
    return progress


def retire_due(row: Workload, at: datetime) -> dict[str, Any] | None:
    """The previous attempt of ``row`` to cancel now (switched over :data:`RETIRE_AFTER` ago)."""
    retiring = attempt_access(row).get(RETIRING)
    if retiring is None:
        return None
    switched = datetime.fromisoformat(retiring["switchedAt"])
    return retiring if (at - switched).total_seconds() >= RETIRE_AFTER else None


def retired(session: Session, workload_id: str, kept: dict[str, Any], note: str = "") -> None:
    """The previous attempt ``kept`` was cancelled on its cluster (``note`` when it could not be
    yet and was left to the orphan sweep): forget it, and say so in the serve's history."""
    row = session.get(Workload, workload_id, with_for_update=True)
    if row is None:
        return
    access = dict(row.access or {})
    if (access.get(RETIRING) or {}).get("uid") != kept["uid"]:
        return
    del access[RETIRING]
    row.access = access
    record(session, row, f"attempt {kept['attempt']}'s replicas on {kept['cluster']} stopped{note}")


def supersede(session: Session, workload_id: str, kept: dict[str, Any]) -> None:
    """Leave attempt ``kept`` to the orphan sweep (cancelled once its cluster answers)."""
    if kept.get("handle") is None or session.get(SupersededAttempt, kept["uid"]) is not None:
        return
    session.add(
        SupersededAttempt(
            uid=kept["uid"],
            workload_id=workload_id,
            cluster=kept["cluster"],
            handle=kept["handle"],
            attempt=kept["attempt"],
            superseded_at=now(),
        )
    )


def roll_back(session: Session, row: Workload, reason: str, *, model: dict[str, Any] | None = None) -> None:
    """Go back to the previous attempt of the rollout in progress: its uid, cluster, handle and
    readiness, its version in the spec; the new attempt is over (the caller cancels it)."""
    progress = rollout_of(row)
    if progress is None:
        raise Conflict(f"serve {row.id} has no rollout in progress")
    previous = progress["previous"]
    retiring = attempt_access(row).get(RETIRING)
    old = progress["from"]
    row.spec = {**(row.spec or {}), MODEL_KEY: model or old}
    for name in _KEPT:
        setattr(row, name, previous[name])
    row.created_at = datetime.fromisoformat(previous["createdAt"]) if previous.get("createdAt") else None
    row.running_at = datetime.fromisoformat(previous["runningAt"]) if previous.get("runningAt") else None
    access = dict(previous.get("access") or {"uid": previous["uid"]})
    if retiring is not None:
        access[RETIRING] = retiring
    row.access = access
    resume(
        session, row, Status(previous["status"]), f"{reason}: back to {version_text(old)}, which kept serving"
    )


def rolled_back_on_failure(session: Session, workload_id: str, uid: str) -> dict[str, Any] | None:
    """The new attempt ``uid`` of a rollout failed: go back to the previous one. Returns the failed
    attempt (to cancel on its cluster), None when the row moved on."""
    row = session.get(Workload, workload_id, with_for_update=True)
    if row is None or row.uid != uid or row.status != Status.FAILED.value or rollout_of(row) is None:
        return None
    failed = {name: getattr(row, name) for name in _KEPT}
    progress = rollout_of(row)
    assert progress is not None
    why = row.reason or "it failed"
    roll_back(session, row, f"rollout to {version_text(progress['to'])} failed ({why})")
    return failed


def kept_attempts(session: Session, cluster: str) -> set[str]:
    """The uids of attempts on ``cluster`` that rollouts keep besides their serve's current one
    (serving until a switch, or retiring after it): not orphans, whatever the sweep finds."""
    rows = session.scalars(
        select(Workload).where(Workload.kind == "serve", Workload.status != Status.DELETED.value)
    ).all()
    kept: set[str] = set()
    for row in rows:
        access = row.access or {}
        for attempt in ((access.get(ROLLOUT) or {}).get("previous"), access.get(RETIRING)):
            if attempt and attempt.get("cluster") == cluster:
                kept.add(attempt["uid"])
    return kept
