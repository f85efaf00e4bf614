"""MLflow's logging endpoints: ``runs/log-metric``, ``log-parameter``, ``set-tag``, ``delete-tag``,
``log-batch``, and the metric reads ``metrics/get-history`` and ``get-history-bulk-interval``.

Each write is one unit of work on the writer (permission and lifecycle checks included); each point
records the replica that logged it when the caller holds a run token.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session
from starlette.requests import Request

from broker.api.mlflow.access import TrackingAccess
from broker.api.mlflow.common import db, params_of, tags_of
from broker.api.mlflow.request import Args, endpoint
from broker.api.mlflow.runs import run_id_of, write_run
from broker.api.mlflow_errors import invalid
from broker.tracking import metrics, paging, runs
from broker.tracking.metrics import Point
from broker.tracking.validation import (
    MAX_PARAM_VALUE,
    MAX_TAG_VALUE,
    as_double,
    as_int64,
    check_batch_sizes,
    check_key,
    check_run_id,
    check_value,
)

MAX_HISTORY_PAGE = 1_000_000
MAX_BULK_RUNS = 100
MAX_BULK_POINTS = 2500


def _point(item: dict[str, Any], field: str, checked_keys: set[str] | None = None) -> Point:
    """``item`` as a point; a key found in ``checked_keys`` (this batch's, already checked) is not
    checked again, any other is, and is added there: a batch has a few keys for many points."""

    def optional(name: str, limit: int) -> str | None:
        value = item.get(name)
        return None if value in (None, "") else check_value(value, f"{field}{name}", limit, truncate=False)

    key = item.get("key")
    if checked_keys is None or not (isinstance(key, str) and key in checked_keys):
        key = check_key(key, f"{field}key")
        if checked_keys is not None:
            checked_keys.add(key)
    return Point(
        key=key,
        value=as_double(item.get("value"), f"{field}value"),
        timestamp=as_int64(item.get("timestamp"), f"{field}timestamp"),
        step=as_int64(item.get("step"), f"{field}step", default=0),
        model_id=optional("model_id", 64),
        dataset_name=optional("dataset_name", 500),
        dataset_digest=optional("dataset_digest", 36),
    )


def _replica(request: Request) -> str | None:
    scope = TrackingAccess(request).scope
    return scope.replica if scope is not None else None


@endpoint
async def log_metric(request: Request, args: Args) -> dict[str, Any]:
    run_id = run_id_of(args)
    point = _point(args.data, "")
    replica = _replica(request)
    await write_run(request, run_id, lambda s, _row: metrics.log_points(s, run_id, [point], replica))
    return {}


@endpoint
async def log_param(request: Request, args: Args) -> dict[str, Any]:
    run_id = run_id_of(args)
    key = check_key(args.raw("key"), "key")
    value = check_value(args.raw("value"), "value", MAX_PARAM_VALUE)
    await write_run(request, run_id, lambda s, _row: runs.log_params(s, run_id, [(key, value)]))
    return {}


@endpoint
async def set_tag(request: Request, args: Args) -> dict[str, Any]:
    run_id = run_id_of(args)
    key = check_key(args.raw("key"), "key")
    value = check_value(args.raw("value"), "value", MAX_TAG_VALUE)
    await write_run(request, run_id, lambda s, _row: runs.set_tags(s, run_id, [(key, value)]))
    return {}


@endpoint
async def delete_tag(request: Request, args: Args) -> dict[str, Any]:
    run_id = run_id_of(args)
    key = check_key(args.raw("key"), "key")
    await write_run(request, run_id, lambda s, _row: runs.delete_tag(s, run_id, key))
    return {}


@endpoint
async def log_batch(request: Request, args: Args) -> dict[str, Any]:
    run_id = run_id_of(args)
    raw_metrics = args.objects("metrics")
    raw_params = args.objects("params")
    raw_tags = args.objects("tags")
    check_batch_sizes(len(raw_metrics), len(raw_params), len(raw_tags))
    checked_keys: set[str] = set()
    points = [_point(item, f"metrics[{i}].", checked_keys) for i, item in enumerate(raw_metrics)]
    params = params_of(args)
    tags = tags_of(args)
    replica = _replica(request)

    def work(session: Session, _row: Any) -> None:
        runs.log_params(session, run_id, params)
        metrics.log_points(session, run_id, points, replica)
        runs.set_tags(session, run_id, tags)

    await write_run(request, run_id, work)
    return {}


@endpoint
async def get_history(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    run_id = run_id_of(args)
    key = args.required("metric_key")
    limit = args.integer("max_results")
    if limit is not None and not 1 <= limit <= MAX_HISTORY_PAGE:
        raise invalid(f"Invalid value {limit} for parameter 'max_results': between 1 and {MAX_HISTORY_PAGE}")
    offset = paging.decode(args.text("page_token"))

    def read(conn: Connection) -> dict[str, Any]:
        access.run(runs.get(conn, run_id), "read", run_id)
        points = metrics.metric_history(
            conn, run_id, key, limit=None if limit is None else limit + 1, offset=offset
        )
        answer: dict[str, Any] = {}
        if limit is not None and len(points) > limit:
            points = points[:limit]
            answer["next_page_token"] = paging.encode(offset + limit)
        answer["metrics"] = [p.to_json() for p in points]
        return answer

    return await db(request).read(read)


@endpoint
async def get_history_bulk_interval(request: Request, args: Args) -> dict[str, Any]:
    access = TrackingAccess(request)
    run_ids = [check_run_id(r, "run_ids") for r in args.texts("run_ids")]
    if not run_ids:
        raise invalid("Missing value for required parameter 'run_ids'")
    if len(run_ids) > MAX_BULK_RUNS:
        raise invalid(f"'run_ids' may name at most {MAX_BULK_RUNS} runs")
    key = args.required("metric_key")
    start = args.integer("start_step")
    end = args.integer("end_step")
    if (start is None) != (end is None):
        raise invalid("If either start step or end step are specified, both must be specified.")
    if start is not None and end is not None and end < start:
        raise invalid("end_step must be greater than or equal to start_step")
    size = args.integer("max_results", 320)
    assert size is not None
    if not 1 <= size <= MAX_BULK_POINTS:
        raise invalid(f"Invalid value {size} for parameter 'max_results': between 1 and {MAX_BULK_POINTS}")

    def read(conn: Connection) -> dict[str, Any]:
        for run_id in run_ids:
            access.run(runs.get(conn, run_id), "read", run_id)
        points = metrics.history_interval(conn, dict.fromkeys(run_ids), key, start, end, size)
        return {"metrics": [{**p.to_json(), "run_id": p.run_id} for p in points]}

    return await db(request).read(read)
