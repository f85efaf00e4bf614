"""The audited history: one event per change, written in the change's transaction.

The actor is the caller's user. A change made with a replica's run token records the user too,
and the run in ``via_run``; the event's message then ends with ``(via run <run id>)``.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, Table, select
from sqlalchemy.orm import Session

from broker.model_registry.model import RegisteredModel, RegistryEvent
from broker.model_registry.views import HistoryEvent
from broker.tracking.experiments import now_ms

EVENT = cast(Table, RegistryEvent.__table__)
MODEL = cast(Table, RegisteredModel.__table__)

MODEL_CREATED = "model_created"
MODEL_RENAMED = "model_renamed"
DESCRIPTION_CHANGED = "description_changed"
MODEL_DELETED = "model_deleted"
MODEL_TAG_SET = "model_tag_set"
MODEL_TAG_DELETED = "model_tag_deleted"
VERSION_CREATED = "version_created"
STAGE_CHANGED = "stage_changed"
DATASET_CHANGED = "dataset_changed"
VERSION_TAG_SET = "version_tag_set"
VERSION_TAG_DELETED = "version_tag_deleted"
VERSION_DELETED = "version_deleted"
ALIAS_SET = "alias_set"
ALIAS_DELETED = "alias_deleted"
#: A serve following an alias started serving the version the alias moved to (broker.serving).
SERVE_REROLLED = "serve_rerolled"
#: Every action an event may record.
ACTIONS = (
    MODEL_CREATED,
    MODEL_RENAMED,
    DESCRIPTION_CHANGED,
    MODEL_DELETED,
    MODEL_TAG_SET,
    MODEL_TAG_DELETED,
    VERSION_CREATED,
    STAGE_CHANGED,
    DATASET_CHANGED,
    VERSION_TAG_SET,
    VERSION_TAG_DELETED,
    VERSION_DELETED,
    ALIAS_SET,
    ALIAS_DELETED,
    SERVE_REROLLED,
)


class Actor:
    """Who makes a change: the user, and the run when they act through a run token."""

    def __init__(self, user: str, via_run: str | None = None) -> None:
        self.user = user
        self.via_run = via_run


def record(
    session: Session,
    model: Any,
    actor: Actor,
    action: str,
    *,
    version: int | None = None,
    from_value: str | None = None,
    to_value: str | None = None,
    message: str = "",
    at: int | None = None,
) -> None:
    """Add one event about ``model`` (a registry_model row, as it is at the change)."""
    assert action in ACTIONS, action
    session.execute(
        EVENT.insert().values(
            model_key=model.model_key,
            model_name=model.name,
            namespace=model.namespace,
            version=version,
            action=action,
            actor=actor.user,
            via_run=actor.via_run,
            at=at if at is not None else now_ms(),
            from_value=from_value,
            to_value=to_value,
            message=message,
        )
    )


def events_of(conn: Connection | Session, model_key: int, version: int | None = None) -> list[HistoryEvent]:
    """The model's events (only ``version``'s with one), oldest first."""
    query = select(EVENT).where(EVENT.c.model_key == model_key)
    if version is not None:
        query = query.where(EVENT.c.version == version)
    return [to_view(row) for row in conn.execute(query.order_by(EVENT.c.id))]


def last_deleted_named(conn: Connection | Session, name: str) -> Any:
    """The model key and namespace of the newest deleted model whose events name it ``name``
    (its name then), or None."""
    live = select(MODEL.c.model_key)
    query = select(EVENT.c.model_key, EVENT.c.namespace).where(
        EVENT.c.model_name == name, EVENT.c.model_key.not_in(live)
    )
    return conn.execute(query.order_by(EVENT.c.id.desc()).limit(1)).first()


def to_view(row: Any) -> HistoryEvent:
    message = row.message
    if row.via_run:
        message = f"{message} (via run {row.via_run})" if message else f"(via run {row.via_run})"
    return HistoryEvent(
        id=row.id,
        model_name=row.model_name,
        model_key=row.model_key,
        version=row.version,
        namespace=row.namespace,
        action=row.action,
        actor=row.actor,
        at=row.at,
        from_value=row.from_value,
        to_value=row.to_value,
        message=message,
    )
