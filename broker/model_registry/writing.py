"""The writes the registry's operations share: a new model, a new version (its files copied in
first), the model's last-updated stamp, a keyed value (tag, alias) set or taken, and the removal
of blobs no version needs any more.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, CursorResult, Table, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.artifacts.store import (
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreUnavailable,
    InvalidArtifactPath,
)
from broker.errors import ApiError, BadRequest, Conflict
from broker.model_registry import files, history, records
from broker.model_registry.access import EDIT, actor_of, model_missing, model_object, readable
from broker.model_registry.records import FILE, MODEL, MODEL_TAG, VERSION, VERSION_TAG
from broker.model_registry.sources import Resolved
from broker.model_registry.stages import NONE
from broker.model_registry.views import VersionView
from broker.store.database import Database
from broker.tracking import runs
from broker.tracking.experiments import now_ms

if TYPE_CHECKING:
    from broker.model_registry.service import Caller

#: Tries of a version's insert that lost a race for its number (PostgreSQL).
VERSION_TRIES = 5
#: The largest ``description.json`` read (it holds two short fields).
MAX_DESCRIPTION_JSON = 1024 * 1024


def duplicate(name: str) -> Conflict:
    return Conflict(f"Registered Model (name={name}) already exists.")


def touch(session: Session, model_key: int, stamp: int) -> None:
    session.execute(update(MODEL).where(MODEL.c.model_key == model_key).values(last_updated_time=stamp))


def home(conn: Connection | Session, caller: Caller) -> str:
    """Where a new model of ``caller`` goes: a run token's run's namespace, else their home."""
    if caller.scope is not None:
        run = runs.get(conn, caller.scope.run_id)
        if run is not None:
            return str(run.namespace)
    return caller.home_namespace


def put(session: Session, table: Table, where: dict[str, Any], column: str, value: Any) -> tuple[bool, Any]:
    """Set ``column`` of the row ``where`` names (inserting it when missing) to ``value``;
    whether that changed anything, and the old value (None: there was no row)."""
    match = [table.c[k] == v for k, v in where.items()]
    old = session.execute(select(table.c[column]).where(*match)).scalar()
    if old == value:
        return False, old
    if old is None:
        session.execute(table.insert().values(**where, **{column: value}))
    else:
        session.execute(update(table).where(*match).values(**{column: value}))
    return True, old


def take(session: Session, table: Table, where: dict[str, Any], column: str) -> Any:
    """Delete the row ``where`` names; its ``column`` (None: there was no row)."""
    match = [table.c[k] == v for k, v in where.items()]
    old = session.execute(select(table.c[column]).where(*match)).scalar()
    if old is not None:
        session.execute(delete(table).where(*match))
    return old


def insert_model(
    session: Session,
    caller: Caller,
    name: str,
    namespace: str,
    description: str,
    tags: dict[str, str],
) -> Any:
    if records.model_named(session, name) is not None:
        raise duplicate(name)
    stamp = now_ms()
    inserted = session.execute(
        MODEL.insert().values(
            name=name,
            namespace=namespace,
            user_id=caller.guard.user,
            description=description,
            creation_time=stamp,
            last_updated_time=stamp,
        )
    )
    primary = cast(CursorResult[Any], inserted).inserted_primary_key
    assert primary is not None
    key = primary[0]
    if tags:
        session.execute(
            MODEL_TAG.insert(), [{"model_key": key, "key": k, "value": v} for k, v in tags.items()]
        )
    row = records.model_keyed(session, int(key))
    history.record(session, row, actor_of(caller), history.MODEL_CREATED, to_value=name, at=stamp)
    return row


def may_add_version(conn: Connection | Session, caller: Caller, name: str, create_model: bool) -> str:
    """The namespace of the model a version is added to, once the caller may ``edit`` it."""
    row = records.model_named(conn, name)
    if row is None:
        if not create_model:
            raise model_missing(name)
        namespace = home(conn, caller)
        caller.guard.require_explained(namespace, model_object(name), EDIT)
        return namespace
    readable(caller, row, name)
    caller.guard.require_explained(row.namespace, model_object(name), EDIT)
    return str(row.namespace)


@dataclass
class Plan:
    """What a version will be made of, decided before its files are copied."""

    resolved: Resolved
    namespace: str  # of the model (to be created, for ``create_model``)
    from_files: list[Any]
    logged_model_id: str | None
    lineage: dict[str, Any]


class VersionMaker:
    """Makes versions: copies their files into the registry's area, then writes them."""

    def __init__(self, db: Database, artifacts: ArtifactStore) -> None:
        self.db = db
        self.artifacts = artifacts

    async def collect(self, shas: Sequence[str]) -> None:
        """Remove the blobs of ``shas`` no version references any more."""
        if not shas:
            return
        still = await self.db.read(lambda c: records.referenced(c, shas))
        await files.remove_blobs(self.artifacts, [s for s in shas if s not in still])

    async def make(
        self,
        caller: Caller,
        name: str,
        plan: Plan,
        *,
        field: str,
        create_model: bool,
        columns: dict[str, Any],
        tags: dict[str, str],
    ) -> VersionView:
        """Copy the planned files in, then write the version (retrying a lost race for its
        number); blobs this wrote are removed again when no version is made."""
        resolved = plan.resolved
        found = files.Found([])
        root = resolved.root or ""
        written: set[str] = set()
        logged = plan.logged_model_id
        if resolved.from_version is not None:
            stored = [files.StoredFile(f.path, f.sha256, f.size) for f in plan.from_files]
        else:
            found = await self._walk(root, field)
            if not found.paths and resolved.fallback:
                root = resolved.fallback
                found = await self._walk(root, field)
                logged = logged or resolved.fallback_model_id
            if not found.paths:
                raise BadRequest(f"{field}: no files at '{root}' to register", field=field)
            stored, written = await self._copy(root, found, field)
        if not stored:
            raise BadRequest(f"{field}: the version to copy holds no files", field=field)

        def write(session: Session) -> VersionView:
            row = records.model_named(session, name)
            if row is None:
                if not create_model:
                    raise model_missing(name)
                row = insert_model(session, caller, name, plan.namespace, "", {})
            else:
                readable(caller, row, name)
                caller.guard.require_explained(row.namespace, model_object(name), EDIT)
            number = records.highest_version(session, row.model_key) + 1
            stamp = now_ms()
            lineage = plan.lineage
            session.execute(
                VERSION.insert().values(
                    model_key=row.model_key,
                    version=number,
                    user_id=caller.guard.user,
                    stage=NONE,
                    logged_model_id=logged,
                    run_id=lineage.get("run_id"),
                    tracking_experiment_id=lineage.get("tracking_experiment_id"),
                    workload_id=lineage.get("workload_id"),
                    cluster=lineage.get("cluster"),
                    datasets=lineage.get("datasets") or None,
                    creation_time=stamp,
                    last_updated_time=stamp,
                    **columns,
                )
            )
            session.execute(
                FILE.insert(),
                [
                    {
                        "model_key": row.model_key,
                        "version": number,
                        "path": f.path,
                        "sha256": f.sha256,
                        "size": f.size,
                    }
                    for f in stored
                ],
            )
            if tags:
                session.execute(
                    VERSION_TAG.insert(),
                    [
                        {"model_key": row.model_key, "version": number, "key": k, "value": v}
                        for k, v in tags.items()
                    ],
                )
            touch(session, row.model_key, stamp)
            history.record(
                session,
                row,
                actor_of(caller),
                history.VERSION_CREATED,
                version=number,
                to_value=str(number),
                message=f"from {str(columns['source'])[:1000]}",
                at=stamp,
            )
            made = records.version_row(session, row.model_key, number)
            return records.version_views(session, [row], [made])[0]

        try:
            view = await self._insert_version(write)
        except BaseException:
            await self.collect(sorted(written))
            raise
        if resolved.from_version is None:
            reused = [f for f in stored if f.sha256 not in written]
            await self._guarded(files.restore_missing(self.artifacts, root, found, reused), field)
        return view

    async def _insert_version(self, write: Callable[[Session], VersionView]) -> VersionView:
        for attempt in range(VERSION_TRIES):
            try:
                return await self.db.run(write)
            except IntegrityError:
                if attempt == VERSION_TRIES - 1:
                    raise Conflict(
                        "the model's versions are being created by others too often; try again"
                    ) from None
        raise AssertionError("unreachable")

    async def _walk(self, root: str, field: str) -> files.Found:
        return await self._guarded(files.walk(self.artifacts, root), field)

    async def _copy(
        self, root: str, found: files.Found, field: str
    ) -> tuple[list[files.StoredFile], set[str]]:
        return await self._guarded(files.copy_in(self.artifacts, root, found), field)

    async def _guarded(self, work: Any, field: str) -> Any:
        """Artifact-store failures while copying, as the user sees them."""
        try:
            return await work
        except files.TooManyFiles as exc:
            raise BadRequest(f"{field}: {exc}", field=field) from None
        except files.SourceChanged as exc:
            raise Conflict(f"{field}: {exc}; try again") from None
        except ArtifactNotFound as exc:
            raise Conflict(
                f"{field}: a file went away while it was being registered ({exc}); try again"
            ) from None
        except InvalidArtifactPath as exc:
            raise BadRequest(f"{field}: {exc}", field=field) from None
        except ArtifactStoreUnavailable as exc:
            raise ApiError(503, f"the artifact store is unavailable: {exc}") from None

    async def description(self, path: str) -> dict[str, Any]:
        try:
            blob = await self.artifacts.open(path)
        except ArtifactNotFound:
            raise BadRequest(f"baseDir: no description.json at '{path}'", field="baseDir") from None
        except ArtifactStoreUnavailable as exc:
            raise ApiError(503, f"the artifact store is unavailable: {exc}") from None
        data = bytearray()
        try:
            async for chunk in blob.chunks:
                data += chunk
                if len(data) > MAX_DESCRIPTION_JSON:
                    raise BadRequest(
                        f"baseDir: description.json is larger than {MAX_DESCRIPTION_JSON} bytes",
                        field="baseDir",
                    )
        finally:
            await blob.aclose()
        try:
            parsed = json.loads(bytes(data))
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(f"baseDir: '{path}' is not JSON", field="baseDir") from None
        if not isinstance(parsed, dict):
            raise BadRequest(f"baseDir: '{path}' is not a JSON object", field="baseDir")
        return parsed
