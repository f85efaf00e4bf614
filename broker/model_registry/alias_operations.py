"""Aliases, the audited history, and the read-only view of a version's files."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from broker.artifacts.store import (
    ArtifactBlob,
    FileInfo,
)
from broker.errors import NotFound
from broker.model_registry import checks, files, history, records, writing
from broker.model_registry.access import (
    may_read,
    model_missing,
    readable,
)
from broker.model_registry.records import ALIAS, FILE
from broker.model_registry.registry_core import (
    Caller,
    RegistryCore,
    _clean,
    _Event,
    alias_missing,
    version_missing,
)
from broker.model_registry.views import HistoryEvent, VersionView


class AliasHistoryFileOperations(RegistryCore):
    """Aliases, the audited history, and the read-only view of a version's files."""

    async def set_alias(self, caller: Caller, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` (``edit``; moving it is one event, from -> to).
        Aliases match ``[\\w-]{1,255}``; ``latest`` and ``v<digits>`` are reserved (400)."""
        alias = checks.alias(alias)

        def apply(session: Session, row: Any) -> _Event | None:
            where = {"model_key": row.model_key, "alias": alias}
            changed, old = writing.put(session, ALIAS, where, "version", version)
            if not changed:
                return None
            was = str(old) if old is not None else None
            return _Event(history.ALIAS_SET, version, was, str(version), f"alias {alias}")

        await self._edit(caller, name, version, apply)

    async def delete_alias(self, caller: Caller, name: str, alias: str) -> None:
        def apply(session: Session, row: Any) -> _Event:
            old = writing.take(session, ALIAS, {"model_key": row.model_key, "alias": alias}, "version")
            if old is None:
                raise alias_missing(name, alias)
            return _Event(history.ALIAS_DELETED, old, str(old), None, f"alias {alias}")

        await self._edit(caller, name, None, apply)

    async def version_by_alias(self, caller: Caller, name: str, alias: str) -> VersionView:
        def read(conn: Connection) -> VersionView:
            row = readable(caller, records.model_named(conn, name), name)
            target = records.alias_target(conn, row.model_key, alias)
            found = records.version_row(conn, row.model_key, target) if target is not None else None
            if found is None:
                raise alias_missing(name, alias)
            return records.version_views(conn, [row], [found])[0]

        return await self._read(read)

    # history ----------------------------------------------------------------------------------
    async def history(self, caller: Caller, name: str, version: int | None = None) -> list[HistoryEvent]:
        """The model's events (with ``version``, that version's only), oldest first. A deleted
        model's history stays readable by whoever may read ``model/<name>`` in its namespace."""

        def read(conn: Connection) -> list[HistoryEvent]:
            row = records.model_named(conn, name)
            if row is not None:
                readable(caller, row, name)
                key = row.model_key
                if version is not None and records.version_row(conn, key, version) is None:
                    found = history.events_of(conn, key, version)
                    if not found:
                        raise version_missing(name, version)
                    return found
                return history.events_of(conn, key, version)
            gone = history.last_deleted_named(conn, name)
            if gone is None or not may_read(caller, gone.namespace, name):
                raise model_missing(name)
            found = history.events_of(conn, gone.model_key, version)
            if version is not None and not found:
                raise version_missing(name, version)
            return found

        return await self._read(read)

    # files ------------------------------------------------------------------------------------
    def _readable_version(self, conn: Connection, caller: Caller, model_key: int, version: int) -> Any:
        row = records.model_keyed(conn, model_key)
        missing = NotFound(f"no registered model version at registry/{model_key}/{version}")
        if row is None or not may_read(caller, row.namespace, row.name):
            raise missing
        if records.version_row(conn, model_key, version) is None:
            raise missing
        return row

    async def list_files(self, caller: Caller, model_key: int, version: int, path: str) -> list[FileInfo]:
        """The registry view ``registry/<model_key>/<version>/<path>`` as a folder listing
        (MLflow's rule: empty for a file or a missing path); 404 when the caller may not read
        the model."""
        folder = _clean(path, folder=True)

        def read(conn: Connection) -> list[FileInfo]:
            self._readable_version(conn, caller, model_key, version)
            rows = records.files_of(conn, model_key, version)
            return files.listing([(r.path, r.size) for r in rows], folder)

        return await self._read(read)

    async def open_file(self, caller: Caller, model_key: int, version: int, path: str) -> ArtifactBlob:
        """A file of the version, streamed from its content-addressed blob."""
        wanted = _clean(path, folder=False)

        def read(conn: Connection) -> Any:
            self._readable_version(conn, caller, model_key, version)
            return conn.execute(
                select(FILE.c.sha256).where(
                    FILE.c.model_key == model_key, FILE.c.version == version, FILE.c.path == wanted
                )
            ).scalar()

        sha = await self._read(read)
        if sha is None:
            raise NotFound(f"no file '{wanted}' in registry/{model_key}/{version}")
        return await files.open_blob(self.artifacts, sha)
