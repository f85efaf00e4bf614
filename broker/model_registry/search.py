"""MLflow's registry searches: filters, order-by and paging for registered models and versions.

The grammar is the tracking store's (:mod:`broker.tracking.search`); tags match as MLflow's
client expects: ``tags.k = 'v'`` (and LIKE, ILIKE, IN) needs the tag, ``tags.k != 'v'`` also
matches a model without it (the client appends ``tag.`mlflow.prompt.is_prompt` != 'true'`` to
every model search). Stage names in a ``current_stage`` filter are read as
:func:`~broker.model_registry.stages.canonical_stage` does. The caller's read permission is
applied to the matching rows before paging, as the experiment search does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, case, select

from broker.api.mlflow_errors import MlflowError
from broker.errors import BadRequest
from broker.model_registry.records import MODEL, MODEL_TAG, VERSION, VERSION_TAG
from broker.model_registry.stages import canonical_stage
from broker.tracking import paging
from broker.tracking.search import Clause, compare, parse_filter, parse_order_by

MODEL_ATTRIBUTES = {"name": "text", "creation_timestamp": "number", "last_updated_timestamp": "number"}
VERSION_ATTRIBUTES = {
    "name": "text",
    "version_number": "number",
    "version": "number",
    "run_id": "text",
    "source_path": "text",
    "current_stage": "text",
    "creation_timestamp": "number",
    "last_updated_timestamp": "number",
}
_MODEL_COLUMNS = {
    "name": MODEL.c.name,
    "creation_timestamp": MODEL.c.creation_time,
    "last_updated_timestamp": MODEL.c.last_updated_time,
}
_VERSION_COLUMNS = {
    "name": MODEL.c.name,
    "version_number": VERSION.c.version,
    "version": VERSION.c.version,
    "run_id": VERSION.c.run_id,
    "source_path": VERSION.c.source,
    "current_stage": VERSION.c.stage,
    "creation_timestamp": VERSION.c.creation_time,
    "last_updated_timestamp": VERSION.c.last_updated_time,
}
MAX_MODELS = 1000
MAX_VERSIONS = 200000


def _bad(exc: MlflowError, field: str) -> BadRequest:
    return BadRequest(f"{field}: {exc.message}", field=field)


def check_page(max_results: int, page_token: str | None, cap: int) -> int:
    """The offset ``page_token`` names; 400 naming the field for a bad size or token."""
    if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= cap:
        raise BadRequest(
            f"max_results: must be a whole number from 1 to {cap}, got {max_results!r}"[:200],
            field="max_results",
        )
    try:
        return paging.decode(page_token)
    except MlflowError as exc:
        raise _bad(exc, "page_token") from None


def _parsed(
    filter_text: str | None, order_by: Sequence[str], attributes: dict[str, str]
) -> tuple[list[Clause], list[Any]]:
    try:
        clauses = parse_filter(filter_text, attributes)
    except MlflowError as exc:
        raise _bad(exc, "filter") from None
    try:
        orders = parse_order_by(list(order_by), attributes)
    except MlflowError as exc:
        raise _bad(exc, "order_by") from None
    for clause in clauses:
        if clause.entity not in ("attribute", "tag"):
            raise BadRequest(
                f"filter: registered models and versions are searched by "
                f"{', '.join(sorted(attributes))} or tags.<key>, not {clause.entity}s",
                field="filter",
            )
    for order in orders:
        if order.entity != "attribute":
            raise BadRequest(f"order_by: sort by one of {', '.join(sorted(attributes))}", field="order_by")
    return clauses, orders


def _tag_condition(clause: Clause, table: Table, links: Sequence[tuple[str, Any]], dialect: str) -> Any:
    """A tag clause as a correlated EXISTS on ``table`` (whose ``links`` columns equal the outer
    row's); ``!=`` and ``NOT IN`` as NOT EXISTS of the opposite, so a row without the tag matches."""
    negated = {"!=": "=", "NOT IN": "IN"}.get(clause.op)
    found = (
        select(table.c.key)
        .where(
            table.c.key == clause.key,
            compare(table.c.value, negated or clause.op, clause.value, dialect),
            *(table.c[name] == outer for name, outer in links),
        )
        .exists()
    )
    return ~found if negated else found


def _stage_value(clause: Clause) -> Any:
    if clause.op in ("IN", "NOT IN"):
        return tuple(canonical_stage(v, "filter") for v in clause.value)
    if clause.op in ("=", "!="):
        return canonical_stage(clause.value, "filter")
    return clause.value


def search_models(
    conn: Connection,
    *,
    filter_text: str | None,
    order_by: Sequence[str],
    visible: Callable[[Any], bool],
    offset: int,
    limit: int,
) -> tuple[list[Any], bool]:
    """One page of the registry_model rows the caller may read, and whether more follow."""
    dialect = conn.dialect.name
    clauses, orders = _parsed(filter_text, order_by, MODEL_ATTRIBUTES)
    statement = select(MODEL)
    for clause in clauses:
        if clause.entity == "tag":
            links = [("model_key", MODEL.c.model_key)]
            statement = statement.where(_tag_condition(clause, MODEL_TAG, links, dialect))
        else:
            statement = statement.where(compare(_MODEL_COLUMNS[clause.key], clause.op, clause.value, dialect))
    keys: list[Any] = []
    for order in orders:
        column = _MODEL_COLUMNS[order.key]
        keys.append(column.asc() if order.ascending else column.desc())
    keys += [MODEL.c.name.asc()]
    rows = [row for row in conn.execute(statement.order_by(*keys)) if visible(row)]
    return rows[offset : offset + limit], offset + limit < len(rows)


def search_versions(
    conn: Connection,
    *,
    filter_text: str | None,
    order_by: Sequence[str],
    visible: Callable[[Any], bool],
    offset: int,
    limit: int,
) -> tuple[list[Any], list[Any], bool]:
    """One page of the registry_version rows of models the caller may read, the model rows
    they belong to, and whether more follow."""
    dialect = conn.dialect.name
    clauses, orders = _parsed(filter_text, order_by, VERSION_ATTRIBUTES)
    statement = select(
        VERSION, MODEL.c.name.label("model_name"), MODEL.c.namespace.label("model_namespace")
    ).join(MODEL, MODEL.c.model_key == VERSION.c.model_key)
    for clause in clauses:
        if clause.entity == "tag":
            links = [("model_key", VERSION.c.model_key), ("version", VERSION.c.version)]
            statement = statement.where(_tag_condition(clause, VERSION_TAG, links, dialect))
            continue
        value = _stage_value(clause) if clause.key == "current_stage" else clause.value
        if clause.key in ("version_number", "version"):
            value = int(value)
        statement = statement.where(compare(_VERSION_COLUMNS[clause.key], clause.op, value, dialect))
    keys: list[Any] = []
    for order in orders:
        column = _VERSION_COLUMNS[order.key]
        keys += [case((column.is_(None), 1), else_=0), column.asc() if order.ascending else column.desc()]
    keys += [MODEL.c.name.asc(), VERSION.c.version.desc()]
    rows = [row for row in conn.execute(statement.order_by(*keys)) if visible(row)]
    page = rows[offset : offset + limit]
    keys_wanted = sorted({r.model_key for r in page})
    models = (
        list(conn.execute(select(MODEL).where(MODEL.c.model_key.in_(keys_wanted)))) if keys_wanted else []
    )
    return page, models, offset + limit < len(rows)
