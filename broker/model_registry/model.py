"""The registry's tables: registered models, their versions, tags, aliases, the files each
version holds, and the audited history.

A model's numeric ``model_key`` is its identity: a rename keeps it, and every version, tag, alias
and file row hangs off it (deleted with the model). A version's files are rows pointing at
content-addressed blobs (``_registry/blobs/<sha[:2]>/<sha>`` in the artifact store), so two
versions with an identical file share one blob. History events have no foreign key to the model:
deleting a model keeps its events, which carry the model's name and namespace at the time.
Times are epoch milliseconds, as in the tracking tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from broker.store.models import Base, BigId


class RegisteredModel(Base):
    """A registered model; ``namespace`` is the team it belongs to. Names are unique across teams
    (MLflow's clients address a model by its name alone)."""

    __tablename__ = "registry_model"
    # Keys are never reused (SQLite would hand a deleted model's key out again): the history of
    # a deleted model is found by its key.
    __table_args__ = {"sqlite_autoincrement": True}

    model_key: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    namespace: Mapped[str] = mapped_column(String(63), index=True)
    user_id: Mapped[str] = mapped_column(String(256), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    creation_time: Mapped[int] = mapped_column(BigInteger)
    last_updated_time: Mapped[int] = mapped_column(BigInteger)


class RegisteredModelTag(Base):
    __tablename__ = "registry_model_tag"

    model_key: Mapped[int] = mapped_column(
        ForeignKey("registry_model.model_key", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ModelVersion(Base):
    """One immutable version: where it came from (``source`` as given, the run, the logged model,
    the lineage) and what may still change (stage, description, Submarine's dataset field)."""

    __tablename__ = "registry_version"
    __table_args__ = (Index("ix_registry_version_run_id", "run_id"),)

    model_key: Mapped[int] = mapped_column(
        ForeignKey("registry_model.model_key", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    user_id: Mapped[str] = mapped_column(String(256), default="")
    stage: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str | None] = mapped_column(String(32), default=None)
    logged_model_id: Mapped[str | None] = mapped_column(String(64), default=None)
    run_link: Mapped[str] = mapped_column(Text, default="")
    dataset: Mapped[str | None] = mapped_column(Text, default=None)
    model_type: Mapped[str | None] = mapped_column(String(500), default=None)
    submarine_id: Mapped[str | None] = mapped_column(String(500), default=None)
    tracking_experiment_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    workload_id: Mapped[str | None] = mapped_column(String(64), default=None)
    cluster: Mapped[str | None] = mapped_column(String(253), default=None)
    #: ``[{name, digest, source}]``: the dataset inputs of the source run.
    datasets: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    creation_time: Mapped[int] = mapped_column(BigInteger)
    last_updated_time: Mapped[int] = mapped_column(BigInteger)


class ModelVersionTag(Base):
    __tablename__ = "registry_version_tag"
    __table_args__ = (
        ForeignKeyConstraint(
            ["model_key", "version"],
            ["registry_version.model_key", "registry_version.version"],
            ondelete="CASCADE",
        ),
    )

    model_key: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ModelAlias(Base):
    """``alias`` of a model points at one of its versions (deleted with that version)."""

    __tablename__ = "registry_alias"
    __table_args__ = (
        ForeignKeyConstraint(
            ["model_key", "version"],
            ["registry_version.model_key", "registry_version.version"],
            ondelete="CASCADE",
        ),
    )

    model_key: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    alias: Mapped[str] = mapped_column(String(255), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class ModelVersionFile(Base):
    """One file of a version: its path inside the version and the blob holding its bytes."""

    __tablename__ = "registry_version_file"
    __table_args__ = (
        ForeignKeyConstraint(
            ["model_key", "version"],
            ["registry_version.model_key", "registry_version.version"],
            ondelete="CASCADE",
        ),
        Index("ix_registry_version_file_sha256", "sha256"),
    )

    model_key: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(900), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)


class RegistryEvent(Base):
    """One audited change (see :class:`broker.model_registry.views.HistoryEvent`)."""

    __tablename__ = "registry_event"
    __table_args__ = (
        Index("ix_registry_event_model", "model_key", "id"),
        Index("ix_registry_event_name", "model_name"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # No foreign key: the model's deletion keeps its events.
    model_key: Mapped[int] = mapped_column(BigInteger)
    model_name: Mapped[str] = mapped_column(String(256))
    namespace: Mapped[str] = mapped_column(String(63))
    version: Mapped[int | None] = mapped_column(Integer, default=None)
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(256))
    via_run: Mapped[str | None] = mapped_column(String(32), default=None)
    at: Mapped[int] = mapped_column(BigInteger)
    from_value: Mapped[str | None] = mapped_column(Text, default=None)
    to_value: Mapped[str | None] = mapped_column(Text, default=None)
    message: Mapped[str] = mapped_column(Text, default="")
