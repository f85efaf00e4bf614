"""``experiments/search``: MLflow's filter (``name``, ``creation_time``, ``last_update_time``,
``tags.<key>``) and order by (the same attributes plus ``experiment_id``) in SQL. Experiments are
few, so the caller's permission check runs over the matching rows (``visible``) before paging."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, case, select

from broker.api.mlflow_errors import invalid
from broker.tracking.experiments import EXPERIMENT, EXPERIMENT_TAG
from broker.tracking.model import ACTIVE, DELETED
from broker.tracking.search import compare, parse_filter, parse_order_by

ATTRIBUTES = {
    "name": "text",
    "experiment_id": "number",
    "creation_time": "number",
    "last_update_time": "number",
    "lifecycle_stage": "text",
}
_COLUMNS = {
    "name": EXPERIMENT.c.name,
    "experiment_id": EXPERIMENT.c.id,
    "creation_time": EXPERIMENT.c.creation_time,
    "last_update_time": EXPERIMENT.c.last_update_time,
    "lifecycle_stage": EXPERIMENT.c.lifecycle_stage,
}


def search(
    conn: Connection,
    *,
    filter_text: str | None,
    order_by: list[str],
    view_type: str,
    visible: Callable[[Any], bool],
    offset: int,
    limit: int,
) -> tuple[list[Any], bool]:
    """One page of the experiments the caller may read, and whether more follow."""
    dialect = conn.dialect.name
    statement = select(EXPERIMENT)
    if view_type == "ACTIVE_ONLY":
        statement = statement.where(EXPERIMENT.c.lifecycle_stage == ACTIVE)
    elif view_type == "DELETED_ONLY":
        statement = statement.where(EXPERIMENT.c.lifecycle_stage == DELETED)
    for clause in parse_filter(filter_text, ATTRIBUTES):
        if clause.entity == "attribute":
            statement = statement.where(compare(_COLUMNS[clause.key], clause.op, clause.value, dialect))
        elif clause.entity == "tag":
            match = select(EXPERIMENT_TAG.c.experiment_id).where(
                EXPERIMENT_TAG.c.key == clause.key,
                compare(EXPERIMENT_TAG.c.value, clause.op, clause.value, dialect),
            )
            statement = statement.where(EXPERIMENT.c.id.in_(match))
        else:
            raise invalid(
                f"Invalid filter: experiments have no {clause.entity}s (use name, tags.<key> or attributes)"
            )
    keys: list[Any] = []
    for order in parse_order_by(order_by, ATTRIBUTES):
        if order.entity != "attribute":
            raise invalid(
                "Invalid order_by: experiments sort by name, experiment_id, creation_time or last_update_time"
            )
        column = _COLUMNS[order.key]
        keys += [case((column.is_(None), 1), else_=0), column.asc() if order.ascending else column.desc()]
    if not keys:
        keys = [EXPERIMENT.c.creation_time.desc()]
    keys.append(EXPERIMENT.c.id)
    rows = [row for row in conn.execute(statement.order_by(*keys)) if visible(row)]
    page = rows[offset : offset + limit]
    return page, offset + limit < len(rows)
