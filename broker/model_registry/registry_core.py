"""What every part of the registry service shares: the caller, pages, the not-acceptable error,
the database plumbing and the one edit path that checks, changes and records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from broker.artifacts.store import (
    ArtifactStore,
    InvalidArtifactPath,
    clean_path,
)
from broker.errors import ApiError, BadRequest, NotFound
from broker.guard import Guard
from broker.model_registry import history, records, writing
from broker.model_registry.access import (
    EDIT,
    actor_of,
    require,
)
from broker.store.database import Database
from broker.tracking.experiments import now_ms
from broker.tracking.scope import RunScope

T = TypeVar("T")


class NotAcceptable(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(406, message)


@dataclass(frozen=True)
class Caller:
    """Who asks: their guard (user + policy) and, for a replica's token, its run scope."""

    guard: Guard
    scope: RunScope | None = None
    #: Where a model this caller creates belongs when the request names no namespace.
    home_namespace: str = "default"
    #: The ``host[:port]`` the request reached the broker at: an ``http(s)://`` source must name
    #: it (None: any host's artifact API path is taken as this broker's).
    server_host: str | None = None


@dataclass(frozen=True)
class Page:
    """One page of a search, and the token of the next (None on the last page)."""

    items: list[Any]
    next_page_token: str | None


@dataclass(frozen=True)
class _Event:
    """What one change records (see :func:`broker.model_registry.history.record`)."""

    action: str
    version: int | None
    from_value: str | None
    to_value: str | None
    message: str


def version_missing(name: str, version: int) -> NotFound:
    return NotFound(f"Model Version (name={name}, version={version}) not found")


def _named(model_key: int, name: str, namespace: str) -> Any:
    """What an event records about a model (as it is at the change)."""
    return SimpleNamespace(model_key=model_key, name=name, namespace=namespace)


class RegistryCore:
    """Registered models and versions on ``db``, version files on ``artifacts``."""

    def __init__(self, db: Database, artifacts: ArtifactStore) -> None:
        self.db = db
        self.artifacts = artifacts
        self._maker = writing.VersionMaker(db, artifacts)

    # plumbing ---------------------------------------------------------------------------------
    async def _read(self, fn: Callable[[Connection], T]) -> T:
        return await self.db.read(fn)

    async def _write(self, fn: Callable[[Session], T]) -> T:
        return await self.db.run(fn)

    async def _edit(
        self,
        caller: Caller,
        name: str,
        version: int | None,
        apply: Callable[[Session, Any], _Event | None],
    ) -> None:
        """One ``edit`` of the model (of ``version``, which must exist): ``apply`` changes it and
        says what the event records (None: nothing changed, no event)."""

        def write(session: Session) -> None:
            row = require(caller, records.model_named(session, name), EDIT, name=name)
            if version is not None and records.version_row(session, row.model_key, version) is None:
                raise version_missing(name, version)
            event = apply(session, row)
            if event is None:
                return
            stamp = now_ms()
            writing.touch(session, row.model_key, stamp)
            history.record(
                session,
                row,
                actor_of(caller),
                event.action,
                version=event.version,
                from_value=event.from_value,
                to_value=event.to_value,
                message=event.message,
                at=stamp,
            )

        await self._write(write)

    # versions ---------------------------------------------------------------------------------


def alias_missing(name: str, alias: str) -> NotFound:
    return NotFound(f"Registered model alias {alias} not found on model {name}.")


def _clean(path: str, *, folder: bool) -> str:
    try:
        return clean_path(path, folder=folder)
    except InvalidArtifactPath as exc:
        raise BadRequest(f"path: {exc}", field="path") from None


def _short(value: Any) -> str | None:
    """A description.json field as stored (text, at most 500 characters), or None."""
    if value is None:
        return None
    return str(value)[:500]
