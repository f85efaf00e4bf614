"""Metric points: bulk writes with deduplication, the latest value per key, history reads.

This is the one way points reach the store, for MLflow's REST API and for Submarine's
``/api/metric`` endpoints alike:

- :func:`log_points` writes a batch with one ``INSERT .. ON CONFLICT DO NOTHING`` (an identical
  point sent twice is stored once: the client retries, ``log_model`` re-sends) and then keeps
  ``tracking_latest_metric`` current with one upsert, under MLflow's rule: the newest point is the
  one with the highest ``(step, timestamp, value)``, NaN counting as its stored value 0.
- :func:`metric_history` pages through one key's points in ``(step, timestamp, value)`` order.

NaN is stored as value 0 with ``is_nan``; ±Infinity as itself (SQLite REAL and PostgreSQL double
precision both keep it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from broker.tracking.model import TrackingLatestMetric, TrackingMetric
from broker.tracking.validation import double_json

METRIC = cast(Table, TrackingMetric.__table__)
LATEST = cast(Table, TrackingLatestMetric.__table__)


@dataclass(frozen=True)
class Point:
    """One metric point as logged (``value`` may be NaN or ±Infinity)."""

    key: str
    value: float
    timestamp: int
    step: int = 0
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


@dataclass(frozen=True)
class StoredPoint:
    """A point as read back, with the replica that logged it (None: not a run-scoped caller)."""

    key: str
    value: float
    timestamp: int
    step: int
    replica: str | None
    run_id: str

    def to_json(self) -> dict[str, Any]:
        """MLflow's Metric message."""
        return {
            "key": self.key,
            "value": double_json(self.value),
            "timestamp": self.timestamp,
            "step": self.step,
        }


def _insert(session: Session | Connection) -> Any:
    name = session.get_bind().dialect.name if isinstance(session, Session) else session.dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert


#: The columns of the point rows :func:`log_points` builds, in their order.
_POINT_COLUMNS = (
    "run_id",
    "key",
    "step",
    "timestamp",
    "value",
    "is_nan",
    "replica",
    "model_id",
    "dataset_name",
    "dataset_digest",
)
#: SQLite's insert of the points, run at the driver: SQLAlchemy's building and type processing of
#: each row's parameters on the way to ``executemany`` cost about as much CPU as SQLite's own work
#: on a 1,000-point batch, and sqlite3 takes the tuples as they are.
_SQLITE_INSERT_POINTS = (
    f"INSERT INTO {METRIC.name} ({', '.join(_POINT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_POINT_COLUMNS))}) ON CONFLICT DO NOTHING"
)

#: PostgreSQL's (psycopg's) insert of the points: one statement over a column of arrays each, where
#: ``executemany`` runs the insert once per point (a 1,000-point batch about 2x faster).
_POSTGRES_INSERT_POINTS = (
    f"INSERT INTO {METRIC.name} ({', '.join(_POINT_COLUMNS)}) SELECT * FROM unnest("
    "%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::float8[], %s::boolean[], "
    "%s::text[], %s::text[], %s::text[], %s::text[]) ON CONFLICT DO NOTHING"
)


@functools.cache
def _point_statements(dialect: str) -> tuple[Any, Any]:
    """The points' insert and the latest-metric upsert of :func:`log_points` for ``dialect``, built
    once: building them (the upsert's ``excluded`` columns above all) cost more CPU than running
    them does for a single point."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    upsert = insert(LATEST)
    excluded = upsert.excluded
    upsert = upsert.on_conflict_do_update(
        index_elements=[LATEST.c.run_id, LATEST.c.key],
        set_={
            "step": excluded.step,
            "timestamp": excluded.timestamp,
            "value": excluded.value,
            "is_nan": excluded.is_nan,
        },
        where=tuple_(excluded.step, excluded.timestamp, excluded.value)
        > tuple_(LATEST.c.step, LATEST.c.timestamp, LATEST.c.value),
    )
    return insert(METRIC).on_conflict_do_nothing(), upsert


def _order(point: Point) -> tuple[int, int, float]:
    return (point.step, point.timestamp, 0.0 if math.isnan(point.value) else point.value)


def log_points(session: Session, run_id: str, points: Sequence[Point], replica: str | None = None) -> None:
    """Store ``points`` of run ``run_id`` (which must exist and be the caller's to write), each
    marked with ``replica``; identical points already stored are skipped. Two statements whatever
    the batch size: the insert of every point, the upsert of each key's newest."""
    if not points:
        return
    rows = [
        (
            run_id,
            p.key,
            p.step,
            p.timestamp,
            0.0 if nan else p.value,
            nan,
            replica or "",
            p.model_id,
            p.dataset_name,
            p.dataset_digest,
        )
        for p in points
        for nan in (math.isnan(p.value),)
    ]
    conn = session.connection()
    insert_points, upsert_latest = _point_statements(conn.dialect.name)
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(_SQLITE_INSERT_POINTS, rows)
    elif conn.dialect.driver == "psycopg":
        conn.exec_driver_sql(
            _POSTGRES_INSERT_POINTS, tuple(list(column) for column in zip(*rows, strict=True))
        )
    else:
        conn.execute(insert_points, [dict(zip(_POINT_COLUMNS, row, strict=True)) for row in rows])
    newest: dict[str, Point] = {}
    for point in points:
        best = newest.get(point.key)
        if best is None or _order(point) > _order(best):
            newest[point.key] = point
    latest = [
        {
            "run_id": run_id,
            "key": p.key,
            "step": p.step,
            "timestamp": p.timestamp,
            "value": 0.0 if math.isnan(p.value) else p.value,
            "is_nan": math.isnan(p.value),
        }
        for p in newest.values()
    ]
    conn.execute(upsert_latest, latest)


def _value(value: float, is_nan: bool) -> float:
    return math.nan if is_nan else value


def metric_history(
    conn: Connection, run_id: str, key: str, *, limit: int | None = None, offset: int = 0
) -> list[StoredPoint]:
    """The points of ``key`` in run ``run_id`` by (step, timestamp, value): ``limit`` of them from
    ``offset`` (all when ``limit`` is None)."""
    statement = (
        select(
            METRIC.c.key, METRIC.c.value, METRIC.c.is_nan, METRIC.c.timestamp, METRIC.c.step, METRIC.c.replica
        )
        .where(METRIC.c.run_id == run_id, METRIC.c.key == key)
        .order_by(METRIC.c.step, METRIC.c.timestamp, METRIC.c.value, METRIC.c.is_nan, METRIC.c.replica)
        .offset(offset)
    )
    if limit is not None:
        statement = statement.limit(limit)
    return [
        StoredPoint(r.key, _value(r.value, r.is_nan), r.timestamp, r.step, r.replica or None, run_id)
        for r in conn.execute(statement)
    ]


def history_interval(
    conn: Connection, run_ids: Iterable[str], key: str, start: int | None, end: int | None, max_results: int
) -> list[StoredPoint]:
    """For each run, the points of ``key`` at up to ``max_results`` steps in ``[start, end]``, spread
    evenly over the steps there are, the first and the last always included (MLflow's sampling)."""
    found: list[StoredPoint] = []
    for run_id in run_ids:
        statement = select(
            METRIC.c.key, METRIC.c.value, METRIC.c.is_nan, METRIC.c.timestamp, METRIC.c.step
        ).where(METRIC.c.run_id == run_id, METRIC.c.key == key)
        if start is not None:
            statement = statement.where(METRIC.c.step >= start)
        if end is not None:
            statement = statement.where(METRIC.c.step <= end)
        rows = list(conn.execute(statement.order_by(METRIC.c.step, METRIC.c.timestamp, METRIC.c.value)))
        steps = sorted({r.step for r in rows})
        if len(steps) > max_results:
            if max_results <= 1:
                keep = set(steps[:max_results])
            else:
                last = len(steps) - 1
                keep = {steps[round(i * last / (max_results - 1))] for i in range(max_results)}
        else:
            keep = set(steps)
        found.extend(
            StoredPoint(r.key, _value(r.value, r.is_nan), r.timestamp, r.step, None, run_id)
            for r in rows
            if r.step in keep
        )
    return found


def latest_of(conn: Connection, run_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Each run's newest point per key, as MLflow's Metric messages."""
    found: dict[str, list[dict[str, Any]]] = {}
    for chunk in chunks(run_ids):
        rows = conn.execute(
            select(
                LATEST.c.run_id,
                LATEST.c.key,
                LATEST.c.value,
                LATEST.c.is_nan,
                LATEST.c.timestamp,
                LATEST.c.step,
            ).where(LATEST.c.run_id.in_(chunk))
        ).all()  # fetchall: far cheaper than row-by-row iteration over 100,000 rows
        for run_id, key, value, is_nan, timestamp, step in rows:
            shown: float | str = "NaN" if is_nan else (value if math.isfinite(value) else double_json(value))
            entry = {"key": key, "value": shown, "timestamp": timestamp, "step": step}
            if run_id in found:
                found[run_id].append(entry)
            else:
                found[run_id] = [entry]
    return found


def chunks(items: Sequence[str], size: int = 5000) -> Iterable[Sequence[str]]:
    """``items`` in slices small enough for one ``IN (...)`` (SQLite allows 32766 variables)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
