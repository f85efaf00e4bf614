"""The workload row and its events: one table for every kind, one event table for their histories.

The tables keep the names they had when experiments were the only kind (``experiment``,
``experiment_event``, and the ``experiment_id`` columns): renaming them would cost every existing
database a migration and change nothing anyone sees.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from broker.redaction import redact_optional
from broker.store.models import Base, BigId
from broker.workloads.kind import Kind


class Workload(Base):
    """One workload (an experiment, a notebook: ``kind`` says which) and its current attempt.

    The attempt is the last one started: ``uid``, ``attempt``, ``cluster``, ``handle``,
    ``placement``, the times ``created_at``/``running_at``/``finished_at`` and the outcome
    (``reason``, ``failure_category``) are its own; :func:`broker.workloads.rows.new_attempt` starts
    the next one. ``accepted_at`` is when the workload was submitted (its place in the queue), and
    the event history keeps every attempt.

    ``slot`` (``notebook:<namespace>/<name>``) is unique while a notebook is not deleted, so two
    notebooks never share a name in a namespace, even when two broker replicas create them at once.
    ``access_token`` is the notebook server's token, encrypted with the broker's secret key
    (:mod:`broker.secret_key`; never stored in clear, never shown); ``access`` what the broker
    learnt about the current attempt's server: ``{uid, url, readyAt, lastActivity}``.
    """

    __tablename__ = "experiment"
    __table_args__ = (
        UniqueConstraint("owner", "idempotency_key", name="uq_experiment_owner_idempotency"),
        Index("ix_experiment_status_accepted", "status", "accepted_at"),
        Index("ix_experiment_cluster_status", "cluster", "status"),
        Index("ix_experiment_kind_status", "kind", "status"),
        # The lists (broker.workloads.listing): newest first; of a status; in a namespace; both.
        Index("ix_experiment_kind_accepted", "kind", "accepted_at", "id"),
        Index("ix_experiment_kind_status_accepted", "kind", "status", "accepted_at", "id"),
        Index("ix_experiment_namespace_kind_accepted", "namespace", "kind", "accepted_at", "id"),
        Index("ix_experiment_namespace_status_accepted", "namespace", "status", "accepted_at", "id"),
        UniqueConstraint("slot", name="uq_experiment_slot"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    name: Mapped[str] = mapped_column(String(128))
    namespace: Mapped[str] = mapped_column(String(63), index=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    framework: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    status_message: Mapped[str | None] = mapped_column(Text, default=None)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), default=None)
    cluster: Mapped[str | None] = mapped_column(String(63), default=None)
    handle: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    placement: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    dispatch_tries: Mapped[int] = mapped_column(Integer, default=0)
    next_dispatch_at: Mapped[datetime | None] = mapped_column(default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    failure_category: Mapped[str | None] = mapped_column(String(32), default=None)
    accepted_at: Mapped[datetime]
    created_at: Mapped[datetime | None] = mapped_column(default=None)
    running_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(
        String(16), default=Kind.EXPERIMENT.value, server_default=Kind.EXPERIMENT.value
    )
    slot: Mapped[str | None] = mapped_column(String(200), default=None)
    access_token: Mapped[str | None] = mapped_column(String(512), default=None)
    access: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The environment the workload was submitted with (an EnvironmentPlan, its revision pinned)
    # and its hash (what housekeeping asks before dropping a build).
    environment: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    environment_hash: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    #: The template an experiment was submitted from: ``{name, namespace, params}``.
    template: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Event(Base):
    """One thing that happened to a workload: a status change, or a note when ``to_status`` is null.

    ``attempt`` is the attempt it belongs to, so the history keeps every attempt's times."""

    __tablename__ = "experiment_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workload_id: Mapped[str] = mapped_column(
        "experiment_id", ForeignKey("experiment.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # Declared so the unit of work inserts a workload before its first event.
    workload: Mapped[Workload] = relationship(lazy="raise")


class SupersededAttempt(Base):
    """An attempt replaced by a newer one after its cluster was lost; cancelled there once it returns."""

    __tablename__ = "superseded_attempt"

    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    workload_id: Mapped[str] = mapped_column(
        "experiment_id", ForeignKey("experiment.id", ondelete="CASCADE"), index=True
    )
    cluster: Mapped[str] = mapped_column(String(63), index=True)
    handle: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    attempt: Mapped[int] = mapped_column(Integer)
    superseded_at: Mapped[datetime]
    swept_at: Mapped[datetime | None] = mapped_column(default=None)


def _redacted(target: object, value: str | None, old: object, initiator: object) -> str | None:
    return redact_optional(value)


# Whatever sets them, these texts are stored with every known cluster secret masked (a message
# about a cluster is masked where it is made too; this is the net under it).
for _attribute in (Workload.status_message, Workload.reason, Event.reason):
    event.listen(_attribute, "set", _redacted, retval=True)
