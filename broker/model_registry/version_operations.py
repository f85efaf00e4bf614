"""Model versions: create (from a source or a baseDir), read, search, update (stage,
description, dataset), delete and tag."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.orm import Session

from broker.errors import BadRequest, Conflict, NotFound
from broker.model_registry import checks, history, records, search, writing
from broker.model_registry.access import (
    EDIT,
    PROMOTE,
    actor_of,
    may_read,
    readable,
    require,
    unscoped,
)
from broker.model_registry.records import ALIAS, VERSION, VERSION_TAG
from broker.model_registry.registry_core import (
    Caller,
    Page,
    RegistryCore,
    _Event,
    _short,
    version_missing,
)
from broker.model_registry.sources import (
    lineage_of,
    readable_logged_model,
    readable_run,
    resolve,
)
from broker.model_registry.stages import ARCHIVED, LIVE, canonical_stage
from broker.model_registry.views import VersionView
from broker.serving.usage import served_versions
from broker.tracking import paging
from broker.tracking.experiments import now_ms
from broker.workloads.model import Workload


class VersionOperations(RegistryCore):
    """Model versions: create (from a source or a baseDir), read, search, update (stage,"""

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
