"""MLflow runs in the tracking store: create, read (in bulk, for search), update, delete/restore,
params, tags, inputs and outputs. Metric points are :mod:`broker.tracking.metrics`'."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, delete, select
from sqlalchemy.orm import Session

from broker.api.mlflow_errors import invalid, not_found
from broker.tracking.experiments import now_ms
from broker.tracking.metrics import _insert, chunks, latest_of
from broker.tracking.model import ACTIVE, DELETED, TrackingParam, TrackingRun, TrackingTag

RUN = cast(Table, TrackingRun.__table__)
PARAM = cast(Table, TrackingParam.__table__)
TAG = cast(Table, TrackingTag.__table__)
STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
RUN_NAME_TAG = "mlflow.runName"
_ADJECTIVES = (
    "able",
    "bold",
    "brave",
    "calm",
    "clever",
    "eager",
    "fast",
    "gentle",
    "keen",
    "lucky",
    "quiet",
    "wise",
)
_NOUNS = ("ant", "bee", "cat", "crow", "deer", "fox", "hawk", "lynx", "mole", "owl", "seal", "wolf")


def new_run_id() -> str:
    return uuid.uuid4().hex


def generated_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(100, 999)}"


def get(conn: Connection | Session, run_id: str) -> Row[Any] | None:
    return conn.execute(select(RUN).where(RUN.c.run_id == run_id)).first()


def require(conn: Connection | Session, run_id: str) -> Row[Any]:
    row = get(conn, run_id)
    if row is None:
        raise not_found(f"Run with id={run_id} not found")
    return row


def require_active(run: Any) -> None:
    """400 unless ``run`` may be logged to (MLflow refuses deleted runs)."""
    if run.lifecycle_stage != ACTIVE:
        raise invalid(
            f"The run {run.run_id} must be in the 'active' state. Current state is {run.lifecycle_stage}."
        )


def create(
    session: Session,
    *,
    experiment_id: int,
    namespace: str,
    user_id: str,
    run_name: str | None,
    start_time: int | None,
    tags: list[tuple[str, str]],
    run_id: str | None = None,
    workload_id: str | None = None,
    attempt: int | None = None,
) -> str:
    """A new RUNNING run; its name is ``run_name``, else the ``mlflow.runName`` tag, else generated
    (and then recorded as that tag, as MLflow does). Returns the run id (uuid4 hex unless given)."""
    tag_map = dict(tags)
    name = run_name or tag_map.get(RUN_NAME_TAG) or generated_name()
    tag_map[RUN_NAME_TAG] = name
    run_id = run_id or new_run_id()
    session.add(
        TrackingRun(
            run_id=run_id,
            experiment_id=experiment_id,
            namespace=namespace,
            name=name[:250],
            user_id=user_id,
            status="RUNNING",
            start_time=start_time if start_time is not None else now_ms(),
            lifecycle_stage=ACTIVE,
            artifact_uri=f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
            workload_id=workload_id,
            attempt=attempt,
        )
    )
    session.flush()
    if tag_map:
        session.connection().execute(
            TAG.insert(), [{"run_id": run_id, "key": k, "value": v} for k, v in tag_map.items()]
        )
    return run_id


def update(
    session: Session, run_id: str, *, status: str | None, end_time: int | None, run_name: str | None
) -> None:
    run = session.get(TrackingRun, run_id)
    if run is None:
        raise not_found(f"Run with id={run_id} not found")
    require_active(run)
    if status is not None:
        run.status = status
    if end_time is not None:
        run.end_time = end_time
    if run_name:
        run.name = run_name[:250]
        set_tags(session, run_id, [(RUN_NAME_TAG, run_name)], rename=False)


def set_stage(session: Session, run_id: str, stage: str) -> None:
    run = session.get(TrackingRun, run_id)
    if run is None:
        raise not_found(f"Run with id={run_id} not found")
    run.lifecycle_stage = stage
    run.deleted_time = now_ms() if stage == DELETED else None


def log_params(session: Session, run_id: str, params: Sequence[tuple[str, str]]) -> None:
    """Record params; one already logged with another value (in the store or in ``params``) is a 400."""
    if not params:
        return
    wanted: dict[str, str] = {}
    for key, value in params:
        if wanted.setdefault(key, value) != value:
            raise invalid(
                f"Duplicate parameter keys have been submitted: '{key}' with values "
                f"'{wanted[key][:100]}' and '{value[:100]}'"
            )
    existing = session.execute(
        select(PARAM.c.key, PARAM.c.value).where(PARAM.c.run_id == run_id, PARAM.c.key.in_(list(wanted)))
    )
    for row in existing:
        if row.value != wanted[row.key]:
            raise invalid(
                "Changing param values is not allowed. Param with key='"
                f"{row.key}' was already logged with value='{row.value[:200]}' for run ID='{run_id}'. "
                f"Attempted logging new value '{wanted[row.key][:200]}'."
            )
    insert = _insert(session)
    session.connection().execute(
        insert(PARAM).on_conflict_do_nothing(),
        [{"run_id": run_id, "key": k, "value": v} for k, v in wanted.items()],
    )


def set_tags(session: Session, run_id: str, tags: Sequence[tuple[str, str]], *, rename: bool = True) -> None:
    """Set (overwrite) tags; ``mlflow.runName`` also renames the run, as in MLflow."""
    if not tags:
        return
    latest = dict(tags)
    insert = _insert(session)
    statement = insert(TAG)
    session.connection().execute(
        statement.on_conflict_do_update(
            index_elements=[TAG.c.run_id, TAG.c.key], set_={"value": statement.excluded.value}
        ),
        [{"run_id": run_id, "key": k, "value": v} for k, v in latest.items()],
    )
    if rename and RUN_NAME_TAG in latest:
        run = session.get(TrackingRun, run_id)
        if run is not None:
            run.name = latest[RUN_NAME_TAG][:250]


def delete_tag(session: Session, run_id: str, key: str) -> None:
    gone = session.execute(delete(TAG).where(TAG.c.run_id == run_id, TAG.c.key == key))
    if gone.rowcount == 0:  # type: ignore[attr-defined]
        raise not_found(f"No tag with name: {key} in run with id {run_id}")


def add_inputs(session: Session, run_id: str, datasets: list[dict[str, Any]], models: list[str]) -> None:
    """Record ``runs/log-inputs``: datasets (once per name and digest) and model inputs."""
    run = session.get(TrackingRun, run_id)
    if run is None:
        raise not_found(f"Run with id={run_id} not found")
    entries = list(run.inputs or [])
    seen = {(e["dataset"].get("name"), e["dataset"].get("digest")) for e in entries if "dataset" in e}
    for item in datasets:
        mark = (item["dataset"].get("name"), item["dataset"].get("digest"))
        if mark not in seen:
            seen.add(mark)
            entries.append(item)
    have = {e.get("model_id") for e in entries if "model_id" in e}
    entries.extend({"model_id": m} for m in models if m not in have)
    run.inputs = entries


def add_outputs(session: Session, run_id: str, models: list[tuple[str, int]]) -> None:
    """Record ``runs/outputs``: the logged models a run produced, at a step."""
    run = session.get(TrackingRun, run_id)
    if run is None:
        raise not_found(f"Run with id={run_id} not found")
    outputs = list(run.outputs or [])
    have = {(o["model_id"], o["step"]) for o in outputs}
    outputs.extend({"model_id": m, "step": s} for m, s in models if (m, s) not in have)
    run.outputs = outputs


def info_json(row: Any) -> dict[str, Any]:
    """MLflow's RunInfo message."""
    info: dict[str, Any] = {
        "run_id": row.run_id,
        "run_uuid": row.run_id,
        "run_name": row.name,
        "experiment_id": str(row.experiment_id),
        "user_id": row.user_id,
        "status": row.status,
        "start_time": row.start_time,
        "artifact_uri": row.artifact_uri,
        "lifecycle_stage": row.lifecycle_stage,
    }
    if row.end_time is not None:
        info["end_time"] = row.end_time
    return info


def to_json(conn: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """MLflow's Run messages for ``rows``: params, tags and latest metrics read in one query each."""
    ids = [r.run_id for r in rows]
    params: dict[str, list[dict[str, str]]] = {}
    tags: dict[str, list[dict[str, str]]] = {}
    for chunk in chunks(ids):
        query = select(PARAM.c.run_id, PARAM.c.key, PARAM.c.value).where(PARAM.c.run_id.in_(chunk))
        for run_id, key, value in conn.execute(query).all():
            params.setdefault(run_id, []).append({"key": key, "value": value})
        query = select(TAG.c.run_id, TAG.c.key, TAG.c.value).where(TAG.c.run_id.in_(chunk))
        for run_id, key, value in conn.execute(query).all():
            tags.setdefault(run_id, []).append({"key": key, "value": value})
    metrics = latest_of(conn, ids)
    found = []
    for row in rows:
        entries = row.inputs or []
        inputs = {
            "dataset_inputs": [e for e in entries if "dataset" in e],
            "model_inputs": [{"model_id": e["model_id"]} for e in entries if "model_id" in e],
        }
        found.append(
            {
                "info": info_json(row),
                "data": {
                    "metrics": metrics.get(row.run_id, []),
                    "params": params.get(row.run_id, []),
                    "tags": tags.get(row.run_id, []),
                },
                "inputs": inputs,
                "outputs": {"model_outputs": list(row.outputs or [])},
            }
        )
    return found
