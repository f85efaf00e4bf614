"""MLflow's run endpoints (``runs/*``): create, read, update, delete/restore, search, inputs, outputs.

Logging (params, tags, metrics, batches) is :mod:`broker.api.mlflow.logging`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.orm import Session
from starlette.requests import Request

from broker.api.mlflow.access import TrackingAccess
from broker.api.mlflow.common import db, enum, page_size, tags_of
from broker.api.mlflow.request import Args, endpoint
from broker.api.mlflow_errors import invalid
from broker.tracking import experiments, paging, run_search, runs
from broker.tracking.model import ACTIVE, DEFAULT_EXPERIMENT_ID, DELETED
from broker.tracking.validation import as_int64, check_run_id, check_value, shown

MAX_SEARCH = 50000
T = TypeVar("T")


def run_id_of(args: Args) -> str:
    return check_run_id(args.text("run_id") or args.text("run_uuid"), "run_id")


async def write_run(
    request: Request, run_id: str, work: Callable[[Session, Any], T], *, active: bool = True
) -> T:
    """Run ``work(session, run)`` on the writer once the caller may write ``run_id`` (and, when
    ``active``, the run is not deleted): one unit of work, checks included."""
    access = TrackingAccess(request)

    def unit(session: Session) -> T:
        row = access.run(runs.get(session, run_id), "write", run_id)
        if active:
            runs.require_active(row)
        return work(session, row)

    return await db(request).run(unit)


@endpoint
async def create(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    access.unscoped("create runs (it logs to the run the broker opened)")
    experiment_id = experiments.parse_id(args.text("experiment_id") or str(DEFAULT_EXPERIMENT_ID))
    tags = tags_of(args)
    run_name = args.text("run_name")
    if run_name is not None:
        run_name = check_value(run_name, "run_name", 250)
    start_time = args.integer("start_time")
    user_id = args.text("user_id") or dict(tags).get("mlflow.user") or ""
    if not access.guard.unrestricted:
        user_id = access.user
    experiment = await db(request).read(lambda c: experiments.get(c, experiment_id))
    experiment = access.experiment(experiment, "write", experiment_id)
    if experiment.lifecycle_stage != ACTIVE:
        raise invalid(f"Could not create run under non-active experiment with id {experiment_id}.")
    namespace = experiment.namespace
    if experiment_id == DEFAULT_EXPERIMENT_ID or namespace == "*":
        namespace = access.namespace_for(tags)
        access.require_create(namespace, experiment_id)

    def unit(session: Session) -> dict[str, Any]:
        run_id = runs.create(
            session,
            experiment_id=experiment_id,
            namespace=namespace,
            user_id=user_id[:256],
            run_name=run_name,
            start_time=start_time,
            tags=tags,
        )
        return {"run_id": run_id}

    made = await db(request).run(unit)
    return {"run": await db(request).read(lambda c: runs.to_json(c, [runs.require(c, made["run_id"])])[0])}


@endpoint
async def get(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    run_id = run_id_of(args)

    def read(conn: Connection) -> dict[str, Any]:
        row = access.run(runs.get(conn, run_id), "read", run_id)
        return {"run": runs.to_json(conn, [row])[0]}

    return await db(request).read(read)


@endpoint
async def update(request: Request, args: Args) -> dict[str, Any]:
    """Set a run's status, end time or name. The status of a run the broker opened for a workload
    follows its experiment: a run-scoped caller's status change to it is accepted (200, so the
    client is content) and ignored; only its name may change."""
    access = TrackingAccess(request)
    run_id = run_id_of(args)
    status = enum(args, "status", runs.STATUSES, "") or None
    end_time = args.integer("end_time")
    run_name = args.text("run_name")
    if run_name is not None:
        run_name = check_value(run_name, "run_name", 250)

    def work(session: Session, row: Any) -> None:
        broker_owned = access.scope is not None and row.workload_id is not None
        runs.update(
            session,
            run_id,
            status=None if broker_owned else status,
            end_time=None if broker_owned else end_time,
            run_name=run_name,
        )

    await write_run(request, run_id, work)
    row = await db(request).read(lambda c: runs.require(c, run_id))
    return {"run_info": runs.info_json(row)}


async def _stage(request: Request, args: Args, stage: str) -> dict[str, Any]:
    TrackingAccess(request).unscoped("delete or restore runs")
    run_id = run_id_of(args)
    await write_run(request, run_id, lambda s, _row: runs.set_stage(s, run_id, stage), active=False)
    return {}


@endpoint
async def delete(request: Request, args: Args) -> dict[str, Any]:
    return await _stage(request, args, DELETED)


@endpoint
async def restore(request: Request, args: Args) -> dict[str, Any]:
    return await _stage(request, args, ACTIVE)


@endpoint
async def search(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    ids = [
        experiments.parse_id(i, "experiment_ids") if i.isdigit() else -1 for i in args.texts("experiment_ids")
    ]
    wanted = sorted({i for i in ids if i >= 0})
    limit = page_size(args, "max_results", 1000, MAX_SEARCH)
    offset = paging.decode(args.text("page_token"))
    view_type = enum(args, "run_view_type", run_search.VIEW_TYPES, "ACTIVE_ONLY")
    filter_text = args.text("filter")
    order_by = args.texts("order_by")

    def read(conn: Connection) -> dict[str, Any]:
        found = [row for i in wanted if (row := experiments.get(conn, i)) is not None]
        readable = [row for row in found if access.scope is None or row.id == access.scope.experiment_id]
        rows, more = run_search.search(
            conn,
            experiment_ids=[r.id for r in readable],
            filter_text=filter_text,
            order_by=order_by,
            view_type=view_type,
            visibility=access.visibility(conn, readable),
            offset=offset,
            limit=limit,
        )
        answer: dict[str, Any] = {"runs": runs.to_json(conn, rows)}
        if more:
            answer["next_page_token"] = paging.encode(offset + len(rows))
        return answer

    return await db(request).read(read)


@endpoint
async def log_inputs(request: Request, args: Args) -> dict[str, Any]:
    run_id = run_id_of(args)
    datasets: list[dict[str, Any]] = []
    for index, item in enumerate(args.objects("datasets")):
        dataset = item.get("dataset")
        if not isinstance(dataset, dict):
            raise invalid(f"Missing value for required parameter 'datasets[{index}].dataset'")
        for name, limit in (("name", 500), ("digest", 36), ("source_type", 500), ("source", 65536)):
            check_value(dataset.get(name), f"datasets[{index}].dataset.{name}", limit, truncate=False)
        tags = item.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, dict) for t in tags):
            raise invalid(f"Invalid value {shown(tags)} for parameter 'datasets[{index}].tags'")
        datasets.append({"dataset": dataset, "tags": tags})
    models = []
    for index, item in enumerate(args.objects("models")):
        model_id = item.get("model_id")
        if not isinstance(model_id, str) or not model_id:
            raise invalid(f"Missing value for required parameter 'models[{index}].model_id'")
        models.append(model_id)
    await write_run(request, run_id, lambda s, _row: runs.add_inputs(s, run_id, datasets, models))
    return {}


@endpoint
async def outputs(request: Request, args: Args) -> dict[str, Any]:
    run_id = run_id_of(args)
    models: list[tuple[str, int]] = []
    for index, item in enumerate(args.objects("models")):
        model_id = item.get("model_id")
        if not isinstance(model_id, str) or not model_id:
            raise invalid(f"Missing value for required parameter 'models[{index}].model_id'")
        models.append((model_id, as_int64(item.get("step"), f"models[{index}].step", default=0)))
    await write_run(request, run_id, lambda s, _row: runs.add_outputs(s, run_id, models))
    return {}
