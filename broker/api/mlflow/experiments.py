"""MLflow's experiment endpoints (``experiments/*``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request

from broker.api.mlflow.access import TrackingAccess
from broker.api.mlflow.common import db, enum, page_size
from broker.api.mlflow.request import Args, endpoint
from broker.api.mlflow_errors import MlflowError, not_found
from broker.tracking import experiment_search, experiments, paging
from broker.tracking.model import ACTIVE, DELETED
from broker.tracking.run_search import VIEW_TYPES
from broker.tracking.validation import check_key

MAX_SEARCH = 50000


def _json(conn: Connection, rows: list[Any]) -> list[dict[str, Any]]:
    tags = experiments.tags_of(conn, [r.id for r in rows])
    return [experiments.to_json(r, tags[r.id]) for r in rows]


@endpoint
async def create(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    access.unscoped("create experiments")
    name = experiments.check_name(args.text("name"))
    tags = [experiments.check_tag(t, f"tags[{i}]") for i, t in enumerate(args.objects("tags"))]
    namespace = access.namespace_for(tags)
    access.require_create(namespace)
    try:
        created = await db(request).run(lambda s: experiments.create(s, name, namespace, access.user, tags))
    except IntegrityError:
        raise MlflowError("RESOURCE_ALREADY_EXISTS", f"Experiment '{name}' already exists.") from None
    return {"experiment_id": str(created)}


@endpoint
async def get(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    experiment_id = experiments.parse_id(args.text("experiment_id"))

    def read(conn: Connection) -> dict[str, Any]:
        row = access.experiment(experiments.get(conn, experiment_id), "read", experiment_id)
        return {"experiment": _json(conn, [row])[0]}

    return await db(request).read(read)


@endpoint
async def get_by_name(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    name = args.required("experiment_name")

    def read(conn: Connection) -> dict[str, Any]:
        row = experiments.by_name(conn, name)
        if row is None or not access.may_experiment(row, "read"):
            raise not_found(f"Could not find experiment with name '{name[:200]}'")
        return {"experiment": _json(conn, [row])[0]}

    return await db(request).read(read)


@endpoint
async def search(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    limit = page_size(args, "max_results", 1000, MAX_SEARCH)
    offset = paging.decode(args.text("page_token"))
    view_type = enum(args, "view_type", VIEW_TYPES, "ACTIVE_ONLY")
    filter_text = args.text("filter")
    order_by = args.texts("order_by")

    def read(conn: Connection) -> dict[str, Any]:
        rows, more = experiment_search.search(
            conn,
            filter_text=filter_text,
            order_by=order_by,
            view_type=view_type,
            visible=lambda row: access.may_experiment(row, "read"),
            offset=offset,
            limit=limit,
        )
        answer: dict[str, Any] = {"experiments": _json(conn, rows)}
        if more:
            answer["next_page_token"] = paging.encode(offset + len(rows))
        return answer

    return await db(request).read(read)


async def _writable(request: Request, access: TrackingAccess, experiment_id: int) -> None:
    row = await db(request).read(lambda c: experiments.get(c, experiment_id))
    access.experiment(row, "write", experiment_id)


@endpoint
async def update(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    access.unscoped("rename experiments")
    experiment_id = experiments.parse_id(args.text("experiment_id"))
    new_name = experiments.check_name(args.text("new_name"), "new_name")
    await _writable(request, access, experiment_id)
    try:
        await db(request).run(lambda s: experiments.rename(s, experiment_id, new_name))
    except IntegrityError:
        raise MlflowError("RESOURCE_ALREADY_EXISTS", f"Experiment '{new_name}' already exists.") from None
    return {}


async def _stage(request: Request, args: Args, stage: str) -> dict[str, Any]:
    access = TrackingAccess(request)
    access.unscoped("delete or restore experiments")
    experiment_id = experiments.parse_id(args.text("experiment_id"))
    await _writable(request, access, experiment_id)
    await db(request).run(lambda s: experiments.set_stage(s, experiment_id, stage))
    return {}


@endpoint
async def delete(request: Request, args: Args) -> dict[str, Any]:
    return await _stage(request, args, DELETED)


@endpoint
async def restore(request: Request, args: Args) -> dict[str, Any]:
    return await _stage(request, args, ACTIVE)


@endpoint
async def set_tag(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    access.unscoped("tag experiments")
    experiment_id = experiments.parse_id(args.text("experiment_id"))
    key, value = experiments.check_tag({"key": args.raw("key"), "value": args.raw("value")}, "tag")
    await _writable(request, access, experiment_id)
    await db(request).run(lambda s: experiments.set_tag(s, experiment_id, key, value))
    return {}


@endpoint
async def delete_tag(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    access.unscoped("tag experiments")
    experiment_id = experiments.parse_id(args.text("experiment_id"))
    key = check_key(args.raw("key"), "key")
    await _writable(request, access, experiment_id)
    await db(request).run(lambda s: experiments.delete_tag(s, experiment_id, key))
    return {}
