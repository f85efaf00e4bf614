"""SQLAlchemy 2 models: experiments, their events, scheduler leases and id epochs.

Specs live as JSON beside indexed columns (status, owner, namespace, cluster, times). Times are
stored as naive UTC and come back timezone-aware, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from broker.redaction import redact_optional

#: An auto-incrementing 64-bit key that SQLite also auto-increments.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, naive UTC in the database."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Experiment(Base):
    """One workload (an experiment, or a notebook when ``kind`` says so) and its current attempt.

    Notebooks share the table, and with it dispatch, monitoring, failover and events. ``slot``
    (``notebook:<namespace>/<name>``) is unique while a notebook is not deleted, so two notebooks
    never share a name in a namespace, even when two broker replicas create them at once.
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
    kind: Mapped[str] = mapped_column(String(16), default="experiment", server_default="experiment")
    slot: Mapped[str | None] = mapped_column(String(200), default=None)
    access_token: Mapped[str | None] = mapped_column(String(512), default=None)
    access: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Event(Base):
    """One thing that happened to an experiment: a status change, or a note when ``to_status`` is null."""

    __tablename__ = "experiment_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime]
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # Declared so the unit of work inserts an experiment before its first event.
    experiment: Mapped[Experiment] = relationship(lazy="raise")


def _redacted(target: object, value: str | None, old: object, initiator: object) -> str | None:
    return redact_optional(value)


# Whatever sets them, these texts are stored with every known cluster secret masked (a message
# about a cluster is masked where it is made too; this is the net under it).
for _attribute in (Experiment.status_message, Experiment.reason, Event.reason):
    event.listen(_attribute, "set", _redacted, retval=True)


class Lease(Base):
    """Which broker replica runs the scheduler loops, until when."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime]


class IdEpoch(Base):
    """A millisecond stamp claimed by one broker process for its ids, so ids never repeat."""

    __tablename__ = "id_epoch"

    prefix: Mapped[str] = mapped_column(String(32), primary_key=True)
    epoch_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    claimed_at: Mapped[datetime]


class Team(Base):
    """A team; its name is the namespace its work runs under and the Casbin domain of its rules."""

    __tablename__ = "team"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    created_at: Mapped[datetime]


class User(Base):
    """Someone who may call the API. What they may do is in the policy (``g`` and ``p`` lines)."""

    __tablename__ = "broker_user"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime]


class ApiToken(Base):
    """An API token: only the SHA-256 of its secret part is kept."""

    __tablename__ = "api_token"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("broker_user.name", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class PolicyLineRow(Base):
    """One live Casbin policy line, as its canonical CSV text."""

    __tablename__ = "policy_line"

    text: Mapped[str] = mapped_column(String(1024), primary_key=True)
    ptype: Mapped[str] = mapped_column(String(8))


class PolicyRevision(Base):
    """One change to the policy: who, when, which lines came and went."""

    __tablename__ = "policy_revision"

    revision: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    author: Mapped[str] = mapped_column(String(128))
    at: Mapped[datetime]
    added: Mapped[list[str]] = mapped_column(JSON)
    removed: Mapped[list[str]] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text, default="")


class SupersededAttempt(Base):
    """An attempt replaced by a newer one after its cluster was lost; cancelled there once it returns."""

    __tablename__ = "superseded_attempt"

    uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"), index=True)
    cluster: Mapped[str] = mapped_column(String(63), index=True)
    handle: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    attempt: Mapped[int] = mapped_column(Integer)
    superseded_at: Mapped[datetime]
    swept_at: Mapped[datetime | None] = mapped_column(default=None)


class ClusterFlag(Base):
    """An admin's cordon or drain of a cluster, shared by every broker replica."""

    __tablename__ = "cluster_flag"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    cordoned: Mapped[bool] = mapped_column(default=False)
    draining: Mapped[bool] = mapped_column(default=False)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime]


class SecretKeyCheck(Base):
    """An HMAC of the broker's secret key, so a broker replica holding another key refuses to start."""

    __tablename__ = "secret_key_check"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime]
