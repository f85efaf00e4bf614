"""What the tracking store holds for one experiment (workload), read for its page: the runs of its
attempts, every metric point with the replica that logged it, and the params and tags.

The same rows ``/api/metric``, ``/api/param`` and MLflow's ``runs/get`` answer from (each attempt
is one run whose id is the attempt's uid, :mod:`broker.tracking.attempt_runs`); the caller must
already have been allowed to read the experiment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from broker.tracking.model import TrackingMetric, TrackingParam, TrackingRun, TrackingTag


@dataclass(frozen=True)
class SeriesPoint:
    """One point of a metric line: step, epoch milliseconds, value (NaN kept as NaN)."""

    step: int
    timestamp: int
    value: float


@dataclass
class AttemptTracking:
    """One attempt's run: its id, status, artifact root, params, tags, and its points by
    ``(metric key, replica)`` ("" when the writer named no replica)."""

    run_id: str
    attempt: int
    status: str
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    series: dict[tuple[str, str], list[SeriesPoint]] = field(default_factory=dict)


def experiment_tracking(conn: Connection, workload_id: str) -> list[AttemptTracking]:
    """Every attempt's run of workload ``workload_id``, first attempt first, with its points in
    (step, timestamp) order per key and replica."""
    runs = {
        r.run_id: AttemptTracking(r.run_id, r.attempt or 0, r.status, r.artifact_uri)
        for r in conn.execute(
            select(TrackingRun.run_id, TrackingRun.attempt, TrackingRun.status, TrackingRun.artifact_uri)
            .where(TrackingRun.workload_id == workload_id)
            .order_by(TrackingRun.attempt)
        )
    }
    if not runs:
        return []
    ids = list(runs)
    for run_id, key, value in conn.execute(
        select(TrackingParam.run_id, TrackingParam.key, TrackingParam.value)
        .where(TrackingParam.run_id.in_(ids))
        .order_by(TrackingParam.key)
    ):
        runs[run_id].params[key] = value
    for run_id, key, value in conn.execute(
        select(TrackingTag.run_id, TrackingTag.key, TrackingTag.value)
        .where(TrackingTag.run_id.in_(ids))
        .order_by(TrackingTag.key)
    ):
        runs[run_id].tags[key] = value
    metric = TrackingMetric
    for row in conn.execute(
        select(
            metric.run_id,
            metric.key,
            metric.replica,
            metric.step,
            metric.timestamp,
            metric.value,
            metric.is_nan,
        )
        .where(metric.run_id.in_(ids))
        .order_by(metric.run_id, metric.key, metric.replica, metric.step, metric.timestamp)
    ):
        number = math.nan if row.is_nan else float(row.value)
        runs[row.run_id].series.setdefault((row.key, row.replica or ""), []).append(
            SeriesPoint(row.step, row.timestamp, number)
        )
    return list(runs.values())
