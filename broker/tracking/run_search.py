"""``runs/search`` in SQL: the filter's clauses as subqueries on the params, tags and latest-metric
tables (each uses its primary key or the latest metrics' ``(key, value)`` index), the order by as
outer joins, one page read with ``LIMIT``/``OFFSET``. The page's params, tags and metrics are then
read by :func:`broker.tracking.runs.to_json` in one query each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, false, or_, select

from broker.tracking.metrics import LATEST
from broker.tracking.model import ACTIVE, DELETED
from broker.tracking.runs import PARAM, RUN, TAG
from broker.tracking.search import Clause, Order, compare, parse_filter, parse_order_by

#: Run attributes a filter or order may name, and their kind.
ATTRIBUTES = {
    "run_id": "text",
    "run_name": "text",
    "status": "text",
    "user_id": "text",
    "artifact_uri": "text",
    "lifecycle_stage": "text",
    "start_time": "number",
    "end_time": "number",
    "created": "number",
}
_COLUMNS = {
    "run_id": RUN.c.run_id,
    "run_name": RUN.c.name,
    "status": RUN.c.status,
    "user_id": RUN.c.user_id,
    "artifact_uri": RUN.c.artifact_uri,
    "lifecycle_stage": RUN.c.lifecycle_stage,
    "start_time": RUN.c.start_time,
    "end_time": RUN.c.end_time,
    "created": RUN.c.start_time,
}
VIEW_TYPES = ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")


@dataclass
class Visibility:
    """Which runs of the searched experiments the caller may read: every run of ``experiments``,
    the runs of ``by_namespace[experiment]`` in the namespaces listed, and ``runs``. ``everything``
    (the unrestricted admin) skips the check."""

    everything: bool = False
    experiments: set[int] = field(default_factory=set)
    by_namespace: dict[int, set[str]] = field(default_factory=dict)
    runs: set[str] = field(default_factory=set)

    def condition(self) -> ColumnElement[bool] | None:
        if self.everything:
            return None
        parts: list[ColumnElement[bool]] = []
        if self.experiments:
            parts.append(RUN.c.experiment_id.in_(sorted(self.experiments)))
        for experiment_id, namespaces in self.by_namespace.items():
            parts.append(and_(RUN.c.experiment_id == experiment_id, RUN.c.namespace.in_(sorted(namespaces))))
        if self.runs:
            parts.append(RUN.c.run_id.in_(sorted(self.runs)))
        return or_(*parts) if parts else false()


def _condition(clause: Clause, dialect: str) -> ColumnElement[bool]:
    if clause.entity == "attribute":
        return compare(_COLUMNS[clause.key], clause.op, clause.value, dialect)
    if clause.entity == "metric":
        match = select(LATEST.c.run_id).where(
            LATEST.c.key == clause.key,
            LATEST.c.is_nan == false(),
            compare(LATEST.c.value, clause.op, clause.value, dialect),
        )
        return RUN.c.run_id.in_(match)
    table = PARAM if clause.entity == "param" else TAG
    match = select(table.c.run_id).where(
        table.c.key == clause.key, compare(table.c.value, clause.op, clause.value, dialect)
    )
    return RUN.c.run_id.in_(match)


def search(
    conn: Connection,
    *,
    experiment_ids: Sequence[int],
    filter_text: str | None,
    order_by: list[str],
    view_type: str,
    visibility: Visibility,
    offset: int,
    limit: int,
) -> tuple[list[Any], bool]:
    """One page of runs (rows of ``tracking_run``) and whether more follow."""
    clauses = parse_filter(filter_text, ATTRIBUTES)
    orders = parse_order_by(order_by, ATTRIBUTES)
    dialect = conn.dialect.name
    statement = select(RUN).where(RUN.c.experiment_id.in_(list(experiment_ids)))
    if view_type == "ACTIVE_ONLY":
        statement = statement.where(RUN.c.lifecycle_stage == ACTIVE)
    elif view_type == "DELETED_ONLY":
        statement = statement.where(RUN.c.lifecycle_stage == DELETED)
    visible = visibility.condition()
    if visible is not None:
        statement = statement.where(visible)
    for clause in clauses:
        statement = statement.where(_condition(clause, dialect))
    source: Any = RUN
    keys: list[Any] = []
    for number, order in enumerate(orders):
        source, keys = _order(source, keys, order, number)
    statement = statement.select_from(source)
    if not any(o.entity == "attribute" and o.key in ("start_time", "created") for o in orders):
        keys.append(RUN.c.start_time.desc())
    keys.append(RUN.c.run_id)
    rows = list(conn.execute(statement.order_by(*keys).offset(offset).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def _order(source: Any, keys: list[Any], order: Order, number: int) -> tuple[Any, list[Any]]:
    """Add ``order`` to the sort: missing values last whatever the direction, as MLflow sorts."""
    if order.entity == "attribute":
        column: Any = _COLUMNS[order.key]
        keys = [*keys, case((column.is_(None), 1), else_=0)]
    elif order.entity == "metric":
        joined = LATEST.alias(f"order_{number}")
        source = source.outerjoin(joined, and_(joined.c.run_id == RUN.c.run_id, joined.c.key == order.key))
        column = joined.c.value
        keys = [*keys, case((joined.c.value.is_(None), 2), (joined.c.is_nan, 1), else_=0)]
    else:
        joined = (PARAM if order.entity == "param" else TAG).alias(f"order_{number}")
        source = source.outerjoin(joined, and_(joined.c.run_id == RUN.c.run_id, joined.c.key == order.key))
        column = joined.c.value
        keys = [*keys, case((column.is_(None), 1), else_=0)]
    keys.append(column.asc() if order.ascending else column.desc())
    return source, keys
