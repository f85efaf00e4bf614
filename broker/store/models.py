"""SQLAlchemy 2 models: the declarative base, and the broker's own tables (scheduler leases, id
epochs, users, teams, tokens, the policy, cluster flags, the secret key check).

Workloads, their events and superseded attempts are in :mod:`broker.workloads.model`. Times are
stored as naive UTC and come back timezone-aware, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

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


class SignInCode(Base):
    """A one-time sign-in code (:mod:`broker.signin_codes`): only its SHA-256 is kept, with the API
    token it signs a browser in with, encrypted with the broker's secret key."""

    __tablename__ = "signin_code"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("broker_user.name", ondelete="CASCADE"), index=True)
    sealed_token: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
