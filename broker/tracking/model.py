"""The tracking tables: MLflow's entities, with the namespace (team) each belongs to and, for the
runs the broker opens itself, the workload attempt a run records.

Times are epoch milliseconds (MLflow's unit on the wire), so nothing converts on the hot paths.
A metric point's primary key is the whole point (run, key, step, timestamp, value, NaN flag,
replica): a
point sent twice (the client retries; ``log_model`` re-sends a run's metrics) is stored once, and
the key's order is the index that metric history reads. ``tracking_latest_metric`` keeps each
run's newest value per key (MLflow's rule: highest step, then timestamp, then value) for
``runs/search`` and the run view.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from broker.store.models import Base, BigId

#: MLflow's lifecycle stages.
ACTIVE = "active"
DELETED = "deleted"

#: The experiment every MLflow client falls back to (``experiment_id`` "0").
DEFAULT_EXPERIMENT_ID = 0
DEFAULT_EXPERIMENT_NAME = "Default"


class TrackingExperiment(Base):
    """An MLflow experiment; ``namespace`` is the team whose members may read it."""

    __tablename__ = "tracking_experiment"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(500), unique=True)
    namespace: Mapped[str] = mapped_column(String(63), index=True)
    owner: Mapped[str] = mapped_column(String(256), default="")
    artifact_location: Mapped[str] = mapped_column(Text)
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    creation_time: Mapped[int] = mapped_column(BigInteger)
    last_update_time: Mapped[int] = mapped_column(BigInteger)


class TrackingExperimentTag(Base):
    __tablename__ = "tracking_experiment_tag"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("tracking_experiment.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class TrackingRun(Base):
    """An MLflow run. ``workload_id`` and ``attempt`` are set on the runs the broker opens for an
    experiment's attempts (then ``run_id`` is the attempt's uid); a client's own runs have neither."""

    __tablename__ = "tracking_run"
    __table_args__ = (Index("ix_tracking_run_experiment_start", "experiment_id", "start_time"),)

    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("tracking_experiment.id", ondelete="CASCADE"))
    namespace: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(250), default="")
    user_id: Mapped[str] = mapped_column(String(256), default="")
    status: Mapped[str] = mapped_column(String(16))
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int | None] = mapped_column(BigInteger, default=None)
    deleted_time: Mapped[int | None] = mapped_column(BigInteger, default=None)
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    artifact_uri: Mapped[str] = mapped_column(Text)
    workload_id: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    attempt: Mapped[int | None] = mapped_column(Integer, default=None)
    #: ``runs/log-inputs``: ``[{dataset: {...}, tags: [...]}]``; ``runs/outputs``: ``[{model_id, step}]``.
    inputs: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    outputs: Mapped[list[Any] | None] = mapped_column(JSON, default=None)


class TrackingParam(Base):
    __tablename__ = "tracking_param"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("tracking_run.run_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class TrackingTag(Base):
    __tablename__ = "tracking_tag"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("tracking_run.run_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class TrackingMetric(Base):
    """One metric point. NaN is stored as value 0 with ``is_nan``; ±Infinity as itself.
    ``replica`` is the replica that logged it (``worker-1``), when a run token said so, else "".
    It is part of the key: replicas of a data-parallel run log the same all-reduced loss at the
    same step, often in the same millisecond, and each point is its own."""

    __tablename__ = "tracking_metric"

    # No foreign key to tracking_run: checking one per point cost about a third of a batch insert
    # on PostgreSQL. Points are only written to a run the writer has just read, and the one
    # delete of runs (broker.tracking.purge) deletes their points first.
    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    timestamp: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Float, primary_key=True)
    is_nan: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    replica: Mapped[str] = mapped_column(String(64), primary_key=True, default="")
    model_id: Mapped[str | None] = mapped_column(String(64), default=None)
    dataset_name: Mapped[str | None] = mapped_column(String(500), default=None)
    dataset_digest: Mapped[str | None] = mapped_column(String(36), default=None)


class TrackingLatestMetric(Base):
    """A run's newest point per key, kept current by every write of points."""

    __tablename__ = "tracking_latest_metric"
    __table_args__ = (Index("ix_tracking_latest_metric_key_value", "key", "value"),)

    run_id: Mapped[str] = mapped_column(
        ForeignKey("tracking_run.run_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)
    is_nan: Mapped[bool] = mapped_column(Boolean)


class TrackingLoggedModel(Base):
    """An MLflow 3 logged model (``m-<32 hex>``)."""

    __tablename__ = "tracking_logged_model"

    model_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("tracking_experiment.id", ondelete="CASCADE"), index=True
    )
    namespace: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(500))
    artifact_uri: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))
    status_message: Mapped[str | None] = mapped_column(Text, default=None)
    model_type: Mapped[str | None] = mapped_column(String(500), default=None)
    source_run_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    creation_timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    last_updated_timestamp_ms: Mapped[int] = mapped_column(BigInteger)


class TrackingLoggedModelTag(Base):
    __tablename__ = "tracking_logged_model_tag"

    model_id: Mapped[str] = mapped_column(
        ForeignKey("tracking_logged_model.model_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class TrackingLoggedModelParam(Base):
    __tablename__ = "tracking_logged_model_param"

    model_id: Mapped[str] = mapped_column(
        ForeignKey("tracking_logged_model.model_id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
