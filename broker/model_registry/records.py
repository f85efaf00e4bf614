"""Reading registry rows and turning them into views (tags and aliases read in one query each)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.orm import Session

from broker.model_registry.model import (
    ModelAlias,
    ModelVersion,
    ModelVersionFile,
    ModelVersionTag,
    RegisteredModel,
    RegisteredModelTag,
)
from broker.model_registry.stages import STAGES
from broker.model_registry.views import Lineage, ModelView, VersionView
from broker.serving.usage import served_versions

MODEL = cast(Table, RegisteredModel.__table__)
MODEL_TAG = cast(Table, RegisteredModelTag.__table__)
VERSION = cast(Table, ModelVersion.__table__)
VERSION_TAG = cast(Table, ModelVersionTag.__table__)
ALIAS = cast(Table, ModelAlias.__table__)
FILE = cast(Table, ModelVersionFile.__table__)
#: What ``VersionView.download_uri`` points to: the artifact API's read-only registry view.
REGISTRY_VIEW = "registry"

Reader = Connection | Session
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = 5000) -> Iterator[Sequence[T]]:
    """``items`` in slices small enough for one ``IN (...)``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def download_uri(model_key: int, version: int) -> str:
    return f"mlflow-artifacts:/{REGISTRY_VIEW}/{model_key}/{version}"


def model_named(conn: Reader, name: str) -> Any:
    return conn.execute(select(MODEL).where(MODEL.c.name == name)).first()


def model_keyed(conn: Reader, model_key: int) -> Any:
    return conn.execute(select(MODEL).where(MODEL.c.model_key == model_key)).first()


def version_row(conn: Reader, model_key: int, version: int) -> Any:
    return conn.execute(
        select(VERSION).where(VERSION.c.model_key == model_key, VERSION.c.version == version)
    ).first()


def versions_of(conn: Reader, model_key: int) -> list[Any]:
    """Every version of the model, oldest first."""
    query = select(VERSION).where(VERSION.c.model_key == model_key).order_by(VERSION.c.version)
    return list(conn.execute(query))


def highest_version(conn: Reader, model_key: int) -> int:
    found = conn.execute(select(func.max(VERSION.c.version)).where(VERSION.c.model_key == model_key))
    return int(found.scalar() or 0)


def alias_target(conn: Reader, model_key: int, alias: str) -> int | None:
    found = conn.execute(
        select(ALIAS.c.version).where(ALIAS.c.model_key == model_key, ALIAS.c.alias == alias)
    ).scalar()
    return int(found) if found is not None else None


def model_tags(conn: Reader, keys: Sequence[int]) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {k: {} for k in keys}
    for chunk in chunks(list(keys)):
        for row in conn.execute(select(MODEL_TAG).where(MODEL_TAG.c.model_key.in_(chunk))):
            found[row.model_key][row.key] = row.value
    return found


def aliases_of(conn: Reader, keys: Sequence[int]) -> dict[int, dict[str, int]]:
    found: dict[int, dict[str, int]] = {k: {} for k in keys}
    for chunk in chunks(list(keys)):
        query = select(ALIAS).where(ALIAS.c.model_key.in_(chunk)).order_by(ALIAS.c.alias)
        for row in conn.execute(query):
            found[row.model_key][row.alias] = row.version
    return found


def latest_per_stage(rows: Sequence[Any], stages: Sequence[str] = ()) -> list[Any]:
    """The newest of ``rows`` (versions of one model) in each of ``stages`` (every stage when
    none), in Submarine's stage order."""
    newest: dict[str, Any] = {}
    for row in rows:
        if row.stage not in newest or row.version > newest[row.stage].version:
            newest[row.stage] = row
    wanted = stages or STAGES
    return [newest[s] for s in STAGES if s in wanted and s in newest]


def version_views(conn: Reader, models: Sequence[Any], rows: Sequence[Any]) -> list[VersionView]:
    """Views of version ``rows``; ``models`` holds (at least) the model row of each."""
    by_key = {m.model_key: m for m in models}
    pairs = [(r.model_key, r.version) for r in rows]
    tags: dict[tuple[int, int], dict[str, str]] = {p: {} for p in pairs}
    aliases: dict[tuple[int, int], list[str]] = {p: [] for p in pairs}
    keys = sorted({k for k, _ in pairs})
    for chunk in chunks(keys):
        for t in conn.execute(select(VERSION_TAG).where(VERSION_TAG.c.model_key.in_(chunk))):
            if (t.model_key, t.version) in tags:
                tags[(t.model_key, t.version)][t.key] = t.value
        query = select(ALIAS).where(ALIAS.c.model_key.in_(chunk)).order_by(ALIAS.c.alias)
        for a in conn.execute(query):
            if (a.model_key, a.version) in aliases:
                aliases[(a.model_key, a.version)].append(a.alias)
    served = served_versions(conn, pairs)
    return [
        _version_view(
            by_key[r.model_key],
            r,
            tags[(r.model_key, r.version)],
            aliases[(r.model_key, r.version)],
            [s.to_json() for s in served[(r.model_key, r.version)]],
        )
        for r in rows
    ]


def _version_view(
    model: Any, row: Any, tags: dict[str, str], aliases: list[str], served_on: list[dict[str, object]]
) -> VersionView:
    return VersionView(
        model_name=model.name,
        model_key=model.model_key,
        version=row.version,
        namespace=model.namespace,
        user_id=row.user_id,
        creation_timestamp=row.creation_time,
        last_updated_timestamp=row.last_updated_time,
        current_stage=row.stage,
        description=row.description,
        source=row.source,
        status="READY",
        run_link=row.run_link,
        tags=tags,
        aliases=aliases,
        dataset=row.dataset,
        model_type=row.model_type,
        submarine_id=row.submarine_id,
        logged_model_id=row.logged_model_id,
        lineage=Lineage(
            run_id=row.run_id,
            tracking_experiment_id=(
                str(row.tracking_experiment_id) if row.tracking_experiment_id is not None else None
            ),
            workload_id=row.workload_id,
            cluster=row.cluster,
            datasets=list(row.datasets or []),
        ),
        download_uri=download_uri(model.model_key, row.version),
        served_on=served_on,
    )


def model_views(conn: Reader, models: Sequence[Any]) -> list[ModelView]:
    """Views of registry_model ``rows`` with their tags, aliases and newest version per stage."""
    keys = [m.model_key for m in models]
    tags = model_tags(conn, keys)
    aliases = aliases_of(conn, keys)
    newest: list[Any] = []
    for chunk in chunks(keys):
        rows = conn.execute(select(VERSION).where(VERSION.c.model_key.in_(chunk)))
        by_model: dict[int, list[Any]] = {}
        for row in rows:
            by_model.setdefault(row.model_key, []).append(row)
        for found in by_model.values():
            newest.extend(latest_per_stage(found))
    views = version_views(conn, models, newest)
    latest: dict[int, list[VersionView]] = {k: [] for k in keys}
    for view in views:
        latest[view.model_key].append(view)
    return [
        ModelView(
            name=m.name,
            model_key=m.model_key,
            namespace=m.namespace,
            user_id=m.user_id,
            description=m.description,
            creation_timestamp=m.creation_time,
            last_updated_timestamp=m.last_updated_time,
            tags=tags[m.model_key],
            aliases=aliases[m.model_key],
            latest_versions=latest[m.model_key],
        )
        for m in models
    ]


def files_of(conn: Reader, model_key: int, version: int) -> list[Any]:
    """The version's file rows (path, sha256, size), by path."""
    query = (
        select(FILE.c.path, FILE.c.sha256, FILE.c.size)
        .where(FILE.c.model_key == model_key, FILE.c.version == version)
        .order_by(FILE.c.path)
    )
    return list(conn.execute(query))


def referenced(conn: Reader, shas: Sequence[str]) -> set[str]:
    """Which of ``shas`` some version's file still points at."""
    found: set[str] = set()
    for chunk in chunks(sorted(set(shas))):
        found |= set(conn.execute(select(FILE.c.sha256).where(FILE.c.sha256.in_(chunk)).distinct()).scalars())
    return found
