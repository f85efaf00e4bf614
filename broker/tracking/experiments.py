"""MLflow experiments in the tracking store: create, read, rename, delete/restore, tags.

Reads take a :class:`~sqlalchemy.Connection` (``db.read``), writes a :class:`~sqlalchemy.orm.Session`
(``db.run``). Every experiment the broker creates stores its artifacts behind the broker's artifact
proxy (``mlflow-artifacts:/<id>``), so clients never hold storage credentials.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, delete, select, update
from sqlalchemy.orm import Session

from broker.api.mlflow_errors import MlflowError, invalid, not_found
from broker.tracking.model import (
    ACTIVE,
    DEFAULT_EXPERIMENT_ID,
    DELETED,
    TrackingExperiment,
    TrackingExperimentTag,
    TrackingRun,
)
from broker.tracking.validation import (
    MAX_EXPERIMENT_NAME,
    MAX_EXPERIMENT_TAG_VALUE,
    check_key,
    check_value,
    shown,
)

EXPERIMENT = cast(Table, TrackingExperiment.__table__)
EXPERIMENT_TAG = cast(Table, TrackingExperimentTag.__table__)
#: The largest experiment id the store hands out (int64).
MAX_ID = 2**63 - 1


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_id(value: str | None, field: str = "experiment_id") -> int:
    """An experiment id from the wire (a string of digits): 400 when missing or not an id, 404 when
    it is an id no experiment of the store can have."""
    if value is None or value == "":
        raise invalid(f"Missing value for required parameter '{field}'")
    if not value.isascii() or not value.isdigit():
        raise not_found(f"No Experiment with id={shown(value)} exists")
    number = int(value) if len(value) <= 19 else MAX_ID + 1
    if number > MAX_ID:
        raise not_found(f"No Experiment with id={shown(value)} exists")
    return number


def check_name(name: str | None, field: str = "name") -> str:
    if name is None or not name.strip():
        raise invalid(f"Missing value for required parameter '{field}'")
    if len(name) > MAX_EXPERIMENT_NAME:
        raise invalid(f"'{field}' exceeds the maximum length of {MAX_EXPERIMENT_NAME} characters")
    return name


def get(conn: Connection | Session, experiment_id: int) -> Row[Any] | None:
    return conn.execute(select(EXPERIMENT).where(EXPERIMENT.c.id == experiment_id)).first()


def by_name(conn: Connection, name: str) -> Row[Any] | None:
    return conn.execute(select(EXPERIMENT).where(EXPERIMENT.c.name == name)).first()


def tags_of(conn: Connection, ids: Iterable[int]) -> dict[int, list[dict[str, str]]]:
    """Each experiment's tags as ``[{key, value}]``."""
    wanted = list(ids)
    found: dict[int, list[dict[str, str]]] = {i: [] for i in wanted}
    if wanted:
        rows = conn.execute(select(EXPERIMENT_TAG).where(EXPERIMENT_TAG.c.experiment_id.in_(wanted)))
        for row in rows:
            found[row.experiment_id].append({"key": row.key, "value": row.value})
    return found


def to_json(row: Any, tags: list[dict[str, str]]) -> dict[str, Any]:
    """MLflow's Experiment message."""
    return {
        "experiment_id": str(row.id),
        "name": row.name,
        "artifact_location": row.artifact_location,
        "lifecycle_stage": row.lifecycle_stage,
        "creation_time": row.creation_time,
        "last_update_time": row.last_update_time,
        "tags": tags,
    }


def check_tag(tag: dict[str, Any], field: str) -> tuple[str, str]:
    key = check_key(tag.get("key"), f"{field}.key")
    value = check_value(tag.get("value"), f"{field}.value", MAX_EXPERIMENT_TAG_VALUE, truncate=False)
    return key, value


def create(session: Session, name: str, namespace: str, owner: str, tags: list[tuple[str, str]]) -> int:
    """A new active experiment (400 ``RESOURCE_ALREADY_EXISTS`` when the name is taken); its id."""
    if session.execute(select(EXPERIMENT.c.id).where(EXPERIMENT.c.name == name)).first() is not None:
        raise MlflowError("RESOURCE_ALREADY_EXISTS", f"Experiment '{name}' already exists.")
    stamp = now_ms()
    row = TrackingExperiment(
        name=name,
        namespace=namespace,
        owner=owner,
        artifact_location="",
        lifecycle_stage=ACTIVE,
        creation_time=stamp,
        last_update_time=stamp,
    )
    session.add(row)
    session.flush()
    row.artifact_location = f"mlflow-artifacts:/{row.id}"
    for key, value in dict(tags).items():
        session.add(TrackingExperimentTag(experiment_id=row.id, key=key, value=value))
    session.flush()
    return row.id


def rename(session: Session, experiment_id: int, new_name: str) -> None:
    row = session.get(TrackingExperiment, experiment_id)
    if row is None:
        raise not_found(f"No Experiment with id={experiment_id} exists")
    if row.lifecycle_stage != ACTIVE:
        raise invalid("Cannot rename a non-active experiment.")
    taken = session.execute(select(EXPERIMENT.c.id).where(EXPERIMENT.c.name == new_name)).first()
    if taken is not None and taken.id != experiment_id:
        raise MlflowError("RESOURCE_ALREADY_EXISTS", f"Experiment '{new_name}' already exists.")
    row.name = new_name
    row.last_update_time = now_ms()


def set_stage(session: Session, experiment_id: int, stage: str) -> None:
    """Delete (``deleted``) or restore (``active``) an experiment and its runs, as MLflow does."""
    row = session.get(TrackingExperiment, experiment_id)
    if row is None:
        raise not_found(f"No Experiment with id={experiment_id} exists")
    if stage == DELETED and experiment_id == DEFAULT_EXPERIMENT_ID:
        raise invalid("The default experiment (id 0) cannot be deleted")
    if stage == ACTIVE and row.lifecycle_stage != DELETED:
        raise invalid(f"Cannot restore an experiment that is not deleted (it is {row.lifecycle_stage})")
    stamp = now_ms()
    row.lifecycle_stage = stage
    row.last_update_time = stamp
    runs = cast(Table, TrackingRun.__table__)
    old = ACTIVE if stage == DELETED else DELETED
    session.execute(
        update(runs)
        .where(runs.c.experiment_id == experiment_id, runs.c.lifecycle_stage == old)
        .values(lifecycle_stage=stage, deleted_time=stamp if stage == DELETED else None)
    )


def set_tag(session: Session, experiment_id: int, key: str, value: str) -> None:
    row = session.get(TrackingExperiment, experiment_id)
    if row is None:
        raise not_found(f"No Experiment with id={experiment_id} exists")
    if row.lifecycle_stage != ACTIVE:
        raise invalid("The experiment must be in the 'active' state to set tags on it.")
    tag = session.get(TrackingExperimentTag, (experiment_id, key))
    if tag is None:
        session.add(TrackingExperimentTag(experiment_id=experiment_id, key=key, value=value))
    else:
        tag.value = value


def delete_tag(session: Session, experiment_id: int, key: str) -> None:
    gone = session.execute(
        delete(EXPERIMENT_TAG).where(
            EXPERIMENT_TAG.c.experiment_id == experiment_id, EXPERIMENT_TAG.c.key == key
        )
    )
    if gone.rowcount == 0:  # type: ignore[attr-defined]
        raise not_found(f"No tag with name: {key} in experiment with id {experiment_id}")
