"""MLflow 3's logged-model endpoints (``logged-models``...), which ``log_model`` needs in full."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session
from starlette.requests import Request

from broker.api.mlflow.access import TrackingAccess, denied
from broker.api.mlflow.common import db, page_size, params_of, tags_of
from broker.api.mlflow.request import Args, endpoint
from broker.api.mlflow_errors import invalid
from broker.tracking import experiments, logged_models, paging, runs
from broker.tracking.model import ACTIVE, DEFAULT_EXPERIMENT_ID
from broker.tracking.validation import check_key, check_run_id, check_value, shown

MAX_SEARCH = 1000


def _model_id(request: Request) -> str:
    model_id: str = request.path_params["model_id"]
    if not model_id or "/" in model_id or "@" in model_id or len(model_id) > 64:
        raise invalid(f"Invalid logged model id {shown(model_id)}")
    return model_id


@endpoint
async def create(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    experiment_id = experiments.parse_id(args.text("experiment_id"))
    name = args.text("name")
    if name is not None:
        name = check_value(name, "name", 500, truncate=False)
    model_type = args.text("model_type")
    source_run_id = args.text("source_run_id") or None
    if source_run_id is not None:
        check_run_id(source_run_id, "source_run_id")
    params = params_of(args)
    tags = tags_of(args)
    if access.scope is not None:
        if source_run_id not in (None, access.scope.run_id) or experiment_id != access.scope.experiment_id:
            raise denied("a run token may only log models of its own run")
        source_run_id = access.scope.run_id

    def unit(session: Session) -> str:
        experiment = experiments.get(session, experiment_id)
        if access.scope is None:
            access.experiment(experiment, "write", experiment_id)
        if experiment is None or experiment.lifecycle_stage != ACTIVE:
            raise invalid(f"Could not create a logged model under non-active experiment {experiment_id}")
        namespace = experiment.namespace
        if source_run_id is not None:
            run = access.run(runs.get(session, source_run_id), "write", source_run_id)
            namespace = run.namespace if experiment_id == DEFAULT_EXPERIMENT_ID else namespace
        elif namespace == "*":
            namespace = access.namespace_for(tags)
            access.require_create(namespace, experiment_id)
        return logged_models.create(
            session,
            experiment_id=experiment_id,
            namespace=namespace,
            name=name,
            model_type=model_type,
            source_run_id=source_run_id,
            params=params,
            tags=tags,
        )

    model_id = await db(request).run(unit)
    return {
        "model": await db(request).read(
            lambda c: logged_models.to_json(c, [logged_models.get(c, model_id)])[0]
        )
    }


@endpoint
async def get(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    model_id = _model_id(request)
    allow_deleted = args.flag("allow_deleted")

    def read(conn: Connection) -> dict[str, Any]:
        row = access.model(logged_models.get(conn, model_id, allow_deleted=allow_deleted), "read")
        return {"model": logged_models.to_json(conn, [row])[0]}

    return await db(request).read(read)


async def _write(request: Request, model_id: str, work: Any) -> None:
    access = TrackingAccess(request)

    def unit(session: Session) -> None:
        access.model(logged_models.get(session, model_id), "write")
        work(session)

    await db(request).run(unit)


@endpoint
async def finalize(request: Request, args: Args) -> dict[str, Any]:
    model_id = _model_id(request)
    status = args.required("status")
    await _write(request, model_id, lambda s: logged_models.finalize(s, model_id, status))
    return await get.__wrapped__(request, Args({}, query=True))  # type: ignore[attr-defined,no-any-return]


@endpoint
async def delete(request: Request, args: Args) -> dict[str, Any]:
    model_id = _model_id(request)
    await _write(request, model_id, lambda s: logged_models.remove(s, model_id))
    return {}


@endpoint
async def set_tags(request: Request, args: Args) -> dict[str, Any]:
    model_id = _model_id(request)
    tags = tags_of(args)
    await _write(request, model_id, lambda s: logged_models.set_tags(s, model_id, tags))
    return {}


@endpoint
async def delete_tag(request: Request, args: Args) -> dict[str, Any]:
    model_id = _model_id(request)
    key = check_key(request.path_params["tag_key"], "tag_key")
    await _write(request, model_id, lambda s: logged_models.delete_tag(s, model_id, key))
    return {}


@endpoint
async def log_params(request: Request, args: Args) -> dict[str, Any]:
    model_id = _model_id(request)
    params = params_of(args)
    await _write(request, model_id, lambda s: logged_models.set_params(s, model_id, params))
    return {}


@endpoint
async def search(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    ids = [experiments.parse_id(i, "experiment_ids") for i in args.texts("experiment_ids") if i.isdigit()]
    limit = page_size(args, "max_results", 100, MAX_SEARCH)
    offset = paging.decode(args.text("page_token"))
    filter_text = args.text("filter")
    order_by = args.objects("order_by")

    def read(conn: Connection) -> dict[str, Any]:
        rows, more = logged_models.search(
            conn,
            experiment_ids=ids,
            filter_text=filter_text,
            order_by=order_by,
            visible=lambda row: access.may_model(row, "read"),
            offset=offset,
            limit=limit,
        )
        answer: dict[str, Any] = {"models": logged_models.to_json(conn, rows)}
        if more:
            answer["next_page_token"] = paging.encode(offset + len(rows))
        return answer

    return await db(request).read(read)
