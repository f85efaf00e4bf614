"""The registry's one entry point: every read and change of registered models and versions, with
its permission check and its history event, in one transaction.

Permissions: a model belongs to a namespace (team); the object is ``model/<name>`` with actions
``read``, ``edit`` (create, describe, tag, alias, add and delete versions), ``promote`` (change a
version's stage) and ``delete`` (the model). What the caller may not read is
:class:`~broker.errors.NotFound` (404, the same answer as a model that does not exist); what they
may read but not change is :class:`~broker.guard.Forbidden` (403) whose message names the policy
line that denied it when a deny line decided. A run-scoped caller (a replica's run token) acts
as the run's user: it may read models, create a model in its run's namespace and create versions
whose source is its own run (what ``mlflow.register_model`` does from a training script);
anything else is 403. Model names are unique across namespaces (MLflow's clients name a model
alone), so a taken name is 409 whoever holds it.

Errors: unknown model or version or alias 404; duplicate model name 409 (:class:`Conflict`);
invalid names, stages, sources, a baseDir without ``description.json`` 400 naming the field
(``error.field``); deleting a model with a version in ``Production`` 406
(:class:`NotAcceptable`); a source file that changed or vanished while being copied 409; the
artifact store down 503.

Every method is async: database work runs on the database's threads, file copies stream through
the artifact store. Every change writes one :class:`~broker.model_registry.views.HistoryEvent`
per effect (a transition with ``archive_existing`` writes one per archived version too), in
the same transaction as the change; deleting a model keeps its events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.artifacts.store import (
    ArtifactBlob,
    ArtifactStore,
    FileInfo,
    InvalidArtifactPath,
    clean_path,
)
from broker.errors import ApiError, BadRequest, Conflict, NotFound
from broker.guard import Forbidden, Guard
from broker.model_registry import checks, files, history, records, search, writing
from broker.model_registry.access import (
    DELETE,
    EDIT,
    PROMOTE,
    actor_of,
    may_read,
    model_missing,
    model_object,
    readable,
    require,
    unscoped,
)
from broker.model_registry.records import ALIAS, FILE, MODEL, MODEL_TAG, VERSION, VERSION_TAG
from broker.model_registry.sources import (
    lineage_of,
    readable_logged_model,
    readable_run,
    resolve,
)
from broker.model_registry.stages import ARCHIVED, LIVE, PRODUCTION, canonical_stage
from broker.model_registry.views import HistoryEvent, ModelView, VersionView
from broker.serving.usage import served_models, served_versions
from broker.store.database import Database
from broker.tracking import paging
from broker.tracking.experiments import now_ms
from broker.tracking.scope import RunScope
from broker.workloads.model import Workload

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


class ModelRegistry:
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

    # registered models ------------------------------------------------------------------------
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
    async def create_version(
        self,
        caller: Caller,
        name: str,
        *,
        source: str,
        run_id: str | None = None,
        model_id: str | None = None,
        description: str = "",
        tags: Sequence[tuple[str, str]] = (),
        run_link: str = "",
        create_model: bool = False,
    ) -> VersionView:
        """A new version (number max+1) of ``name`` (``edit``), its files copied from ``source``
        into the registry's content-addressed area: ``runs:/<run>/<path>``, ``models:/m-<id>``
        (a logged model), ``models:/<name>/<version>`` or ``models:/<name>@<alias>`` (another
        version: its file list, no bytes copied), ``mlflow-artifacts:/<path>``, the tracking
        server's own ``http(s)://.../api/2.0/mlflow-artifacts/artifacts/<path>`` or a bare
        artifact path. The caller must be able to read what the source names; anything else
        (``s3://``, ``file://``, another server) is 400 naming ``source``. Lineage is read from
        the source run. ``create_model`` creates the model first when missing (run tokens)."""
        name = checks.name(name)
        description = checks.text(description or "", "description", checks.MAX_DESCRIPTION)
        wanted_tags = checks.tags(tags)
        run_link = checks.text(run_link or "", "run_link")

        def plan(conn: Connection) -> writing.Plan:
            namespace = writing.may_add_version(conn, caller, name, create_model)
            resolved = resolve(conn, caller, source, server_host=caller.server_host)
            lineage = dict(resolved.lineage or {})
            if run_id:
                run = readable_run(conn, caller, run_id, "run_id")
                if not lineage.get("run_id"):
                    lineage = lineage_of(conn, run)
            logged = resolved.logged_model_id
            if model_id:
                logged = readable_logged_model(conn, caller, model_id, "model_id").model_id
            from_files = records.files_of(conn, *resolved.from_version) if resolved.from_version else []
            return writing.Plan(resolved, namespace, from_files, logged, lineage)

        chosen = await self._read(plan)
        return await self._maker.make(
            caller,
            name,
            chosen,
            field="source",
            create_model=create_model,
            columns={
                "source": source,
                "description": description,
                "run_link": run_link,
            },
            tags=wanted_tags,
        )

    async def create_version_from_base_dir(
        self,
        caller: Caller,
        name: str,
        *,
        base_dir: str,
        experiment_id: str | None = None,
        description: str = "",
        tags: Sequence[str] = (),
        dataset: str | None = None,
    ) -> VersionView:
        """Submarine's ``POST /v1/model-version?baseDir=``: reads ``<base_dir>/description.json``
        (``id``, ``model_type``) from the artifact store (400 naming ``baseDir`` when missing or
        not JSON) and registers every file under ``base_dir``. ``experiment_id`` is a broker
        experiment (workload) id the caller may read, recorded as lineage."""
        name = checks.name(name)
        description = checks.text(description or "", "description", checks.MAX_DESCRIPTION)
        wanted_tags = checks.tags([(t, "") for t in tags])
        if dataset is not None:
            dataset = checks.text(dataset, "dataset")

        def plan(conn: Connection) -> writing.Plan:
            unscoped(caller, "register a baseDir")
            namespace = writing.may_add_version(conn, caller, name, False)
            resolved = resolve(conn, caller, base_dir, field="baseDir", server_host=caller.server_host)
            if resolved.root is None:
                raise BadRequest("baseDir: must be a folder of the artifact store", field="baseDir")
            lineage = dict(resolved.lineage or {})
            if experiment_id:
                workload = conn.execute(
                    select(Workload.id, Workload.namespace, Workload.cluster).where(
                        Workload.id == experiment_id
                    )
                ).first()
                if workload is None or not caller.guard.may(
                    workload.namespace, f"experiment/{workload.id}", "read"
                ):
                    raise NotFound(f"experimentId: Not found experiment: {experiment_id}")
                lineage["workload_id"] = workload.id
                lineage["cluster"] = lineage.get("cluster") or workload.cluster
            return writing.Plan(resolved, namespace, [], resolved.logged_model_id, lineage)

        chosen = await self._read(plan)
        root = chosen.resolved.root or ""
        described = await self._maker.description(f"{root}/description.json")
        return await self._maker.make(
            caller,
            name,
            chosen,
            field="baseDir",
            create_model=False,
            columns={
                "source": base_dir,
                "description": description,
                "run_link": "",
                "dataset": dataset,
                "model_type": _short(described.get("model_type")),
                "submarine_id": _short(described.get("id")),
            },
            tags=wanted_tags,
        )

    async def get_version(self, caller: Caller, name: str, version: int) -> VersionView:
        def read(conn: Connection) -> VersionView:
            row = readable(caller, records.model_named(conn, name), name)
            found = records.version_row(conn, row.model_key, version)
            if found is None:
                raise version_missing(name, version)
            return records.version_views(conn, [row], [found])[0]

        return await self._read(read)

    async def list_versions(self, caller: Caller, name: str) -> list[VersionView]:
        """Every version of ``name``, oldest first."""

        def read(conn: Connection) -> list[VersionView]:
            row = readable(caller, records.model_named(conn, name), name)
            return records.version_views(conn, [row], records.versions_of(conn, row.model_key))

        return await self._read(read)

    async def search_versions(
        self,
        caller: Caller,
        *,
        filter: str | None = None,
        order_by: Sequence[str] = (),
        max_results: int = 10000,
        page_token: str | None = None,
    ) -> Page:
        """Versions of the models the caller may read. ``filter``: ``name`` (=, LIKE, ILIKE),
        ``version_number``, ``run_id`` (= or IN), ``source_path``, ``current_stage``,
        ``tags.<k>``, joined by AND. Page items are :class:`VersionView`."""
        offset = search.check_page(max_results, page_token, search.MAX_VERSIONS)

        def read(conn: Connection) -> Page:
            rows, models, more = search.search_versions(
                conn,
                filter_text=filter,
                order_by=order_by,
                visible=lambda r: may_read(caller, r.model_namespace, r.model_name),
                offset=offset,
                limit=max_results,
            )
            token = paging.next_token(offset, len(rows), max_results, more)
            return Page(list(records.version_views(conn, models, rows)), token)

        return await self._read(read)

    async def latest_versions(
        self, caller: Caller, name: str, stages: Sequence[str] = ()
    ) -> list[VersionView]:
        """The newest version per stage asked (every stage when none)."""
        wanted = [canonical_stage(s, "stages") for s in stages]

        def read(conn: Connection) -> list[VersionView]:
            row = readable(caller, records.model_named(conn, name), name)
            rows = records.latest_per_stage(records.versions_of(conn, row.model_key), wanted)
            return records.version_views(conn, [row], rows)

        return await self._read(read)

    async def update_version(
        self,
        caller: Caller,
        name: str,
        version: int,
        *,
        description: str | None = None,
        dataset: str | None = None,
        stage: str | None = None,
        archive_existing: bool = False,
        message: str = "",
    ) -> VersionView:
        """Describe (``edit``) and/or move to ``stage`` (``promote``; Submarine's or MLflow's
        names). ``archive_existing`` moves the model's other versions in that stage to Archived."""
        target = canonical_stage(stage) if stage is not None else None
        if description is not None:
            description = checks.text(description, "description", checks.MAX_DESCRIPTION)
        if dataset is not None:
            dataset = checks.text(dataset, "dataset")
        message = checks.text(message or "", "message")

        def write(session: Session) -> VersionView:
            row = readable(caller, records.model_named(session, name), name)
            found = records.version_row(session, row.model_key, version)
            if found is None:
                raise version_missing(name, version)
            if target is not None:
                require(caller, row, PROMOTE)
            if description is not None or dataset is not None:
                require(caller, row, EDIT)
            actor = actor_of(caller)
            stamp = now_ms()
            changes: dict[str, Any] = {}
            for column, action, new in (
                ("description", history.DESCRIPTION_CHANGED, description),
                ("dataset", history.DATASET_CHANGED, dataset),
                ("stage", history.STAGE_CHANGED, target),
            ):
                old = getattr(found, column)
                if new is not None and new != old:
                    changes[column] = new
                    history.record(
                        session,
                        row,
                        actor,
                        action,
                        version=version,
                        from_value=old,
                        to_value=new,
                        message=message,
                        at=stamp,
                    )
            if target is not None and archive_existing and target in LIVE:
                others = session.execute(
                    select(VERSION.c.version, VERSION.c.stage)
                    .where(
                        VERSION.c.model_key == row.model_key,
                        VERSION.c.stage == target,
                        VERSION.c.version != version,
                    )
                    .order_by(VERSION.c.version)
                ).all()
                for other in others:
                    session.execute(
                        update(VERSION)
                        .where(VERSION.c.model_key == row.model_key, VERSION.c.version == other.version)
                        .values(stage=ARCHIVED, last_updated_time=stamp)
                    )
                    history.record(
                        session,
                        row,
                        actor,
                        history.STAGE_CHANGED,
                        version=other.version,
                        from_value=other.stage,
                        to_value=ARCHIVED,
                        message=f"archived: version {version} moved to {target}"
                        + (f" ({message})" if message else ""),
                        at=stamp,
                    )
            if changes:
                session.execute(
                    update(VERSION)
                    .where(VERSION.c.model_key == row.model_key, VERSION.c.version == version)
                    .values(last_updated_time=stamp, **changes)
                )
                writing.touch(session, row.model_key, stamp)
            made = records.version_row(session, row.model_key, version)
            return records.version_views(session, [row], [made])[0]

        return await self._write(write)

    async def delete_version(self, caller: Caller, name: str, version: int) -> None:
        """Delete the version (``edit``) and its aliases; files no other version shares go too."""

        def write(session: Session) -> list[str]:
            row = require(caller, records.model_named(session, name), EDIT, name=name)
            found = records.version_row(session, row.model_key, version)
            if found is None:
                raise version_missing(name, version)
            serving = served_versions(session, [(row.model_key, version)])[(row.model_key, version)]
            if serving:
                raise Conflict(
                    f"Model Version (name={name}, version={version}) is served by "
                    f"{', '.join(s.describe() for s in serving)}: delete the serve first"
                )
            actor = actor_of(caller)
            stamp = now_ms()
            aliases = (
                session.execute(
                    select(ALIAS.c.alias)
                    .where(ALIAS.c.model_key == row.model_key, ALIAS.c.version == version)
                    .order_by(ALIAS.c.alias)
                )
                .scalars()
                .all()
            )
            for alias in aliases:
                history.record(
                    session,
                    row,
                    actor,
                    history.ALIAS_DELETED,
                    version=version,
                    from_value=str(version),
                    message=f"alias {alias}",
                    at=stamp,
                )
            shas = [f.sha256 for f in records.files_of(session, row.model_key, version)]
            history.record(
                session,
                row,
                actor,
                history.VERSION_DELETED,
                version=version,
                from_value=str(version),
                message=f"stage was {found.stage}",
                at=stamp,
            )
            session.execute(
                delete(VERSION).where(VERSION.c.model_key == row.model_key, VERSION.c.version == version)
            )
            writing.touch(session, row.model_key, stamp)
            return shas

        await self._maker.collect(await self._write(write))

    async def set_version_tag(self, caller: Caller, name: str, version: int, key: str, value: str) -> None:
        key = checks.tag_key(key)
        value = checks.tag_value(value)

        def apply(session: Session, row: Any) -> _Event | None:
            where = {"model_key": row.model_key, "version": version, "key": key}
            changed, old = writing.put(session, VERSION_TAG, where, "value", value)
            return _Event(history.VERSION_TAG_SET, version, old, value, f"tag {key}") if changed else None

        await self._edit(caller, name, version, apply)

    async def delete_version_tag(self, caller: Caller, name: str, version: int, key: str) -> None:
        def apply(session: Session, row: Any) -> _Event:
            where = {"model_key": row.model_key, "version": version, "key": key}
            old = writing.take(session, VERSION_TAG, where, "value")
            if old is None:
                raise NotFound(f"No tag with key '{key}' on model version (name={name}, version={version})")
            return _Event(history.VERSION_TAG_DELETED, version, old, None, f"tag {key}")

        await self._edit(caller, name, version, apply)

    # aliases ----------------------------------------------------------------------------------
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
