"""Registered models: create, read, search, rename, describe, delete and tag."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.errors import Conflict, NotFound
from broker.guard import Forbidden
from broker.model_registry import checks, history, records, search, writing
from broker.model_registry.access import (
    DELETE,
    EDIT,
    actor_of,
    may_read,
    model_object,
    readable,
    require,
)
from broker.model_registry.records import FILE, MODEL, MODEL_TAG, VERSION
from broker.model_registry.registry_core import (
    Caller,
    NotAcceptable,
    Page,
    RegistryCore,
    _Event,
    _named,
)
from broker.model_registry.stages import ARCHIVED, PRODUCTION
from broker.model_registry.views import ModelView
from broker.serving.usage import served_models
from broker.tracking import paging
from broker.tracking.experiments import now_ms


class ModelOperations(RegistryCore):
    """Registered models: create, read, search, rename, describe, delete and tag."""

    async def create_model(
        self,
        caller: Caller,
        name: str,
        *,
        namespace: str | None = None,
        description: str = "",
        tags: Sequence[tuple[str, str]] = (),
    ) -> ModelView:
        """A new model (``edit`` on ``model/<name>`` in ``namespace``, default the caller's home)."""
        name = checks.name(name)
        description = checks.text(description or "", "description", checks.MAX_DESCRIPTION)
        wanted_tags = checks.tags(tags)
        if namespace is not None:
            checks.namespace(namespace)

        def write(session: Session) -> ModelView:
            home = writing.home(session, caller)
            if caller.scope is not None and namespace is not None and namespace != home:
                raise Forbidden("a run token creates models only in its run's namespace")
            chosen = checks.namespace(namespace or home)
            caller.guard.require_explained(chosen, model_object(name), EDIT)
            row = writing.insert_model(session, caller, name, chosen, description, wanted_tags)
            return records.model_views(session, [row])[0]

        try:
            return await self._write(write)
        except IntegrityError:
            raise writing.duplicate(name) from None

    async def get_model(self, caller: Caller, name: str) -> ModelView:
        def read(conn: Connection) -> ModelView:
            row = readable(caller, records.model_named(conn, name), name)
            return records.model_views(conn, [row])[0]

        return await self._read(read)

    async def search_models(
        self,
        caller: Caller,
        *,
        filter: str | None = None,
        order_by: Sequence[str] = (),
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page:
        """The models the caller may read. ``filter`` is MLflow's registered-model filter
        (``name``, ``name LIKE/ILIKE``, ``tags.<k>``/``tag.<k>`` =, !=, LIKE, ILIKE, joined by
        AND); ``order_by``: ``name``, ``creation_timestamp``, ``last_updated_timestamp`` with
        ASC/DESC. Page items are :class:`ModelView`."""
        offset = search.check_page(max_results, page_token, search.MAX_MODELS)

        def read(conn: Connection) -> Page:
            rows, more = search.search_models(
                conn,
                filter_text=filter,
                order_by=order_by,
                visible=lambda r: may_read(caller, r.namespace, r.name),
                offset=offset,
                limit=max_results,
            )
            token = paging.next_token(offset, len(rows), max_results, more)
            return Page(list(records.model_views(conn, rows)), token)

        return await self._read(read)

    async def update_model(
        self,
        caller: Caller,
        name: str,
        *,
        new_name: str | None = None,
        description: str | None = None,
    ) -> ModelView:
        """Rename and/or describe (``edit``); a rename to a taken name is 409."""
        if new_name is not None:
            new_name = checks.name(new_name, "new_name")
        if description is not None:
            description = checks.text(description, "description", checks.MAX_DESCRIPTION)

        def write(session: Session) -> ModelView:
            row = require(caller, records.model_named(session, name), EDIT, name=name)
            actor = actor_of(caller)
            stamp = now_ms()
            current = row.name
            if new_name is not None and new_name != row.name:
                caller.guard.require_explained(row.namespace, model_object(new_name), EDIT)
                if records.model_named(session, new_name) is not None:
                    raise writing.duplicate(new_name)
                session.execute(update(MODEL).where(MODEL.c.model_key == row.model_key).values(name=new_name))
                current = new_name
                history.record(
                    session,
                    _named(row.model_key, new_name, row.namespace),
                    actor,
                    history.MODEL_RENAMED,
                    from_value=row.name,
                    to_value=new_name,
                    at=stamp,
                )
            if description is not None and description != row.description:
                session.execute(
                    update(MODEL).where(MODEL.c.model_key == row.model_key).values(description=description)
                )
                history.record(
                    session,
                    _named(row.model_key, current, row.namespace),
                    actor,
                    history.DESCRIPTION_CHANGED,
                    from_value=row.description,
                    to_value=description,
                    at=stamp,
                )
            writing.touch(session, row.model_key, stamp)
            return records.model_views(session, [records.model_keyed(session, row.model_key)])[0]

        try:
            return await self._write(write)
        except IntegrityError:
            raise writing.duplicate(new_name or name) from None

    async def delete_model(self, caller: Caller, name: str) -> None:
        """Delete the model and its versions (``delete``); 406 while a version is in Production.
        Files no other version shares are removed; the history stays."""

        def write(session: Session) -> list[str]:
            row = require(caller, records.model_named(session, name), DELETE, name=name)
            serving = served_models(session, row.model_key)
            if serving:
                raise Conflict(
                    f"Registered model {name} is served by {', '.join(s.describe() for s in serving)}: "
                    "delete the serves first"
                )
            live = session.execute(
                select(VERSION.c.version).where(
                    VERSION.c.model_key == row.model_key, VERSION.c.stage == PRODUCTION
                )
            ).first()
            if live is not None:
                raise NotAcceptable(
                    f"Registered model {name} has version {live.version} in {PRODUCTION}: move it to "
                    f"another stage (e.g. {ARCHIVED}) before deleting the model"
                )
            shas = list(
                session.execute(
                    select(FILE.c.sha256).where(FILE.c.model_key == row.model_key).distinct()
                ).scalars()
            )
            count = len(records.versions_of(session, row.model_key))
            history.record(
                session,
                row,
                actor_of(caller),
                history.MODEL_DELETED,
                from_value=row.name,
                message=f"{count} version(s) deleted with it",
            )
            session.execute(delete(MODEL).where(MODEL.c.model_key == row.model_key))
            return shas

        await self._maker.collect(await self._write(write))

    async def set_model_tag(self, caller: Caller, name: str, key: str, value: str) -> None:
        key = checks.tag_key(key)
        value = checks.tag_value(value)

        def apply(session: Session, row: Any) -> _Event | None:
            where = {"model_key": row.model_key, "key": key}
            changed, old = writing.put(session, MODEL_TAG, where, "value", value)
            return _Event(history.MODEL_TAG_SET, None, old, value, f"tag {key}") if changed else None

        await self._edit(caller, name, None, apply)

    async def delete_model_tag(self, caller: Caller, name: str, key: str) -> None:
        """404 when the model has no such tag."""

        def apply(session: Session, row: Any) -> _Event:
            old = writing.take(session, MODEL_TAG, {"model_key": row.model_key, "key": key}, "value")
            if old is None:
                raise NotFound(f"No tag with key '{key}' on registered model {name}")
            return _Event(history.MODEL_TAG_DELETED, None, old, None, f"tag {key}")

        await self._edit(caller, name, None, apply)
