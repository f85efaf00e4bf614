"""The environment tables: environments (global, the name as key), their revisions, and the
builds each cluster holds.

An environment's ``revision`` is its current revision; each content change adds an
:class:`EnvironmentRevision` (the Submarine ``environmentSpec`` as stored, and the identity hash
of what it installs). A workload pins the revision it was submitted with (the workload row's
``environment`` column), so an edit never changes running work. :class:`EnvironmentBuild` rows are
keyed by cluster and hash, not by environment: two names with the same content share a build.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from broker.store.models import Base

#: Build states.
BUILT = "built"
FAILED = "failed"


class Environment(Base):
    """A registered environment: ``environment_<ms>_<NNNN>``, its unique name, its current revision."""

    __tablename__ = "environment"
    __table_args__ = (UniqueConstraint("name", name="uq_environment_name"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    revision: Mapped[int] = mapped_column(Integer)
    owner: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EnvironmentRevision(Base):
    """One revision's content (the ``environmentSpec``) and its identity hash."""

    __tablename__ = "environment_revision"
    __table_args__ = (Index("ix_environment_revision_hash", "hash"),)

    environment_id: Mapped[str] = mapped_column(
        ForeignKey("environment.id", ondelete="CASCADE"), primary_key=True
    )
    revision: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    hash: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]


class EnvironmentBuild(Base):
    """A cluster's build of one environment hash: ``built`` (reusable) or ``failed`` (with the
    installer's line in ``message``); ``name`` is the environment that asked for it last."""

    __tablename__ = "environment_build"
    __table_args__ = (Index("ix_environment_build_hash", "hash"),)

    cluster: Mapped[str] = mapped_column(String(63), primary_key=True)
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    message: Mapped[str | None] = mapped_column(Text, default=None)
    built_at: Mapped[datetime]
    last_used_at: Mapped[datetime]
