"""MLflow 3 logged models (``m-<32 hex>``): what ``log_model`` creates, finalizes and finds again.

A model's artifacts live at ``mlflow-artifacts:/<experiment>/models/<model_id>/artifacts``; its
metrics are the points of its source run logged with its ``model_id``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, case, delete, select
from sqlalchemy.orm import Session

from broker.api.mlflow_errors import invalid, not_found
from broker.tracking.experiments import now_ms
from broker.tracking.metrics import METRIC, _insert, _value, chunks
from broker.tracking.model import (
    ACTIVE,
    DELETED,
    TrackingLoggedModel,
    TrackingLoggedModelParam,
    TrackingLoggedModelTag,
)
from broker.tracking.runs import generated_name
from broker.tracking.search import compare, parse_filter
from broker.tracking.validation import double_json

MODEL = cast(Table, TrackingLoggedModel.__table__)
MODEL_TAG = cast(Table, TrackingLoggedModelTag.__table__)
MODEL_PARAM = cast(Table, TrackingLoggedModelParam.__table__)
STATUSES = ("LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED")
ATTRIBUTES = {
    "name": "text",
    "model_id": "text",
    "model_type": "text",
    "status": "text",
    "source_run_id": "text",
    "creation_timestamp": "number",
    "creation_time": "number",
    "last_updated_timestamp": "number",
}
_COLUMNS = {
    "name": MODEL.c.name,
    "model_id": MODEL.c.model_id,
    "model_type": MODEL.c.model_type,
    "status": MODEL.c.status,
    "source_run_id": MODEL.c.source_run_id,
    "creation_timestamp": MODEL.c.creation_timestamp_ms,
    "creation_time": MODEL.c.creation_timestamp_ms,
    "last_updated_timestamp": MODEL.c.last_updated_timestamp_ms,
}


def get(conn: Connection | Session, model_id: str, *, allow_deleted: bool = False) -> Row[Any]:
    row = conn.execute(select(MODEL).where(MODEL.c.model_id == model_id)).first()
    if row is None or (row.lifecycle_stage != ACTIVE and not allow_deleted):
        raise not_found(f"Logged model with ID '{model_id}' not found")
    return row


def create(
    session: Session,
    *,
    experiment_id: int,
    namespace: str,
    name: str | None,
    model_type: str | None,
    source_run_id: str | None,
    params: Sequence[tuple[str, str]],
    tags: Sequence[tuple[str, str]],
) -> str:
    """A new PENDING logged model; its id."""
    model_id = f"m-{uuid.uuid4().hex}"
    stamp = now_ms()
    session.add(
        TrackingLoggedModel(
            model_id=model_id,
            experiment_id=experiment_id,
            namespace=namespace,
            name=name or generated_name(),
            artifact_uri=f"mlflow-artifacts:/{experiment_id}/models/{model_id}/artifacts",
            status="LOGGED_MODEL_PENDING",
            model_type=model_type,
            source_run_id=source_run_id,
            lifecycle_stage=ACTIVE,
            creation_timestamp_ms=stamp,
            last_updated_timestamp_ms=stamp,
        )
    )
    session.flush()
    set_params(session, model_id, params)
    set_tags(session, model_id, tags)
    return model_id


def _touch(session: Session, model_id: str) -> TrackingLoggedModel:
    row = session.get(TrackingLoggedModel, model_id)
    if row is None or row.lifecycle_stage != ACTIVE:
        raise not_found(f"Logged model with ID '{model_id}' not found")
    row.last_updated_timestamp_ms = now_ms()
    return row


def finalize(session: Session, model_id: str, status: str) -> None:
    if status not in STATUSES[1:]:
        raise invalid(
            f"Invalid value {status!r} for parameter 'status': "
            "expected LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED"
        )
    _touch(session, model_id).status = status


def set_tags(session: Session, model_id: str, tags: Sequence[tuple[str, str]]) -> None:
    if tags:
        _touch(session, model_id)
        statement = _insert(session)(MODEL_TAG)
        session.connection().execute(
            statement.on_conflict_do_update(
                index_elements=[MODEL_TAG.c.model_id, MODEL_TAG.c.key],
                set_={"value": statement.excluded.value},
            ),
            [{"model_id": model_id, "key": k, "value": v} for k, v in dict(tags).items()],
        )


def delete_tag(session: Session, model_id: str, key: str) -> None:
    _touch(session, model_id)
    session.execute(delete(MODEL_TAG).where(MODEL_TAG.c.model_id == model_id, MODEL_TAG.c.key == key))


def set_params(session: Session, model_id: str, params: Sequence[tuple[str, str]]) -> None:
    if params:
        _touch(session, model_id)
        session.connection().execute(
            _insert(session)(MODEL_PARAM).on_conflict_do_nothing(),
            [{"model_id": model_id, "key": k, "value": v} for k, v in dict(params).items()],
        )


def remove(session: Session, model_id: str) -> None:
    _touch(session, model_id).lifecycle_stage = DELETED


def to_json(conn: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """MLflow's LoggedModel messages, tags and params read in one query each."""
    ids = [r.model_id for r in rows]
    tags: dict[str, list[dict[str, str]]] = {}
    params: dict[str, list[dict[str, str]]] = {}
    for chunk in chunks(ids):
        for t in conn.execute(select(MODEL_TAG).where(MODEL_TAG.c.model_id.in_(chunk))):
            tags.setdefault(t.model_id, []).append({"key": t.key, "value": t.value})
        for p in conn.execute(select(MODEL_PARAM).where(MODEL_PARAM.c.model_id.in_(chunk))):
            params.setdefault(p.model_id, []).append({"key": p.key, "value": p.value})
    found = []
    for row in rows:
        info: dict[str, Any] = {
            "model_id": row.model_id,
            "experiment_id": str(row.experiment_id),
            "name": row.name,
            "artifact_uri": row.artifact_uri,
            "status": row.status,
            "creation_timestamp_ms": row.creation_timestamp_ms,
            "last_updated_timestamp_ms": row.last_updated_timestamp_ms,
            "tags": tags.get(row.model_id, []),
        }
        for name in ("model_type", "source_run_id", "status_message"):
            if getattr(row, name) is not None:
                info[name] = getattr(row, name)
        found.append(
            {"info": info, "data": {"params": params.get(row.model_id, []), "metrics": _metrics(conn, row)}}
        )
    return found


def _metrics(conn: Connection, row: Any) -> list[dict[str, Any]]:
    if row.source_run_id is None:
        return []
    points = conn.execute(
        select(METRIC).where(METRIC.c.run_id == row.source_run_id, METRIC.c.model_id == row.model_id)
    )
    return [
        {
            "key": p.key,
            "value": double_json(_value(p.value, p.is_nan)),
            "timestamp": p.timestamp,
            "step": p.step,
            "run_id": p.run_id,
            "model_id": p.model_id,
            **({"dataset_name": p.dataset_name} if p.dataset_name else {}),
            **({"dataset_digest": p.dataset_digest} if p.dataset_digest else {}),
        }
        for p in points
    ]


def search(
    conn: Connection,
    *,
    experiment_ids: Sequence[int],
    filter_text: str | None,
    order_by: list[dict[str, Any]],
    visible: Callable[[Any], bool],
    offset: int,
    limit: int,
) -> tuple[list[Any], bool]:
    """One page of the active logged models of ``experiment_ids`` the caller may read."""
    dialect = conn.dialect.name
    statement = select(MODEL).where(
        MODEL.c.experiment_id.in_(list(experiment_ids)), MODEL.c.lifecycle_stage == ACTIVE
    )
    for clause in parse_filter(filter_text, ATTRIBUTES):
        if clause.entity == "attribute":
            statement = statement.where(compare(_COLUMNS[clause.key], clause.op, clause.value, dialect))
        elif clause.entity in ("tag", "param"):
            table = MODEL_TAG if clause.entity == "tag" else MODEL_PARAM
            match = select(table.c.model_id).where(
                table.c.key == clause.key, compare(table.c.value, clause.op, clause.value, dialect)
            )
            statement = statement.where(MODEL.c.model_id.in_(match))
        else:
            raise invalid(
                "Invalid filter: logged models are searched by attributes, tags.<key> or params.<key>"
            )
    keys: list[Any] = []
    for index, order in enumerate(order_by):
        field = order.get("field_name")
        column = _COLUMNS.get(field.removeprefix("attributes.")) if isinstance(field, str) else None
        if column is None:
            raise invalid(f"Invalid value {field!r} for parameter 'order_by[{index}].field_name'")
        keys += [
            case((column.is_(None), 1), else_=0),
            column.asc() if order.get("ascending", True) is not False else column.desc(),
        ]
    keys += [MODEL.c.creation_timestamp_ms.desc(), MODEL.c.model_id]
    rows = [row for row in conn.execute(statement.order_by(*keys)) if visible(row)]
    return rows[offset : offset + limit], offset + limit < len(rows)
