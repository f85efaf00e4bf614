"""Submarine's workbench tracking endpoints, ``/api/metric`` and ``/api/param`` (no ``v1``), on
the broker's tracking store.

Submarine's SDK wrote these rows straight into MySQL; the broker never hands a workload database
credentials, so a script logs through the MLflow client or through these endpoints instead. A
point is Submarine's ``{id, key, value, workerIndex, timestamp, step, isNan}`` with ``id`` the
experiment's id: reads cover every attempt's run of the experiment, writes go to the run of its
current attempt. A replica's run token may write and read its own experiment's points only, and
its points are marked with its replica whatever ``workerIndex`` says.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from starlette.requests import Request
from starlette.routing import Route

from broker.api.access import guard_of
from broker.api.body import read_body
from broker.api.envelope import EnvelopeResponse, ok
from broker.errors import ApiError, BadRequest, NotFound
from broker.tracking.metrics import Point, log_points
from broker.tracking.model import TrackingMetric, TrackingParam, TrackingRun
from broker.tracking.runs import log_params
from broker.tracking.scope import run_scope
from broker.workloads.model import Workload

#: The most points or params one request may write.
MAX_WRITE = 1000


class Conflict(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(409, message)


async def _workload(request: Request, experiment_id: str, action: str) -> Workload:
    """The experiment the caller may ``action`` (read: also deleted ones, kept for audit)."""
    broker = request.app.state.broker
    scope = run_scope(request)
    if scope is not None:
        run = await broker.db.run(lambda s: s.get(TrackingRun, scope.run_id))
        if run is None or run.workload_id != experiment_id:
            raise NotFound(f"Not found experiment {experiment_id}")
        row = await broker.db.run(lambda s: s.get(Workload, experiment_id))
        if row is None:
            raise NotFound(f"Not found experiment {experiment_id}")
        return row
    service = broker.experiments
    if action == "read":
        return await service.get(experiment_id, guard_of(request), deleted=True)
    return await service.get(experiment_id, guard_of(request), "submit")


def _experiment_id(found: Any) -> str:
    value = found.get("id") if isinstance(found, dict) else None
    if not isinstance(value, str) or not value:
        raise BadRequest("id: the experiment id is required", field="id")
    return value


async def _body(request: Request) -> Any:
    raw = await read_body(request, request.app.state.broker.config.max_body_bytes)
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the request body is not JSON") from None


def _filters(request: Request, body: Any) -> dict[str, Any]:
    if body is not None:
        if not isinstance(body, dict):
            raise BadRequest('the request body must be a JSON object (a filter such as {"id": ...})')
        return body
    query = request.query_params
    return {
        "id": query.get("id"),
        "key": query.get("key") or query.get("metricKey"),
        "workerIndex": query.get("workerIndex"),
    }


# ------------------------------------------------------------------------------ metrics
def _points(
    conn: Connection, experiment_id: str, key: str | None, worker: str | None
) -> list[dict[str, Any]]:
    metric = TrackingMetric
    statement = (
        select(metric.key, metric.value, metric.is_nan, metric.timestamp, metric.step, metric.replica)
        .join(TrackingRun, TrackingRun.run_id == metric.run_id)
        .where(TrackingRun.workload_id == experiment_id)
        .order_by(metric.key, metric.replica, metric.step, metric.timestamp)
    )
    if key:
        statement = statement.where(metric.key == key)
    if worker:
        statement = statement.where(metric.replica == worker)
    return [
        {
            "id": experiment_id,
            "key": r.key,
            "value": None if r.is_nan else _finite(r.value),
            "workerIndex": r.replica or None,
            "timestamp": r.timestamp,
            "step": r.step,
            "isNan": r.is_nan,
        }
        for r in conn.execute(statement)
    ]


def _finite(value: float) -> float | str:
    """JSON has no infinity: Submarine's clamped value (±1.797e308) stands in for it."""
    return value if math.isfinite(value) else math.copysign(1.7976931348623157e308, value)


async def list_metrics(request: Request) -> EnvelopeResponse:
    body = await _body(request) if request.method == "POST" else None
    found = _filters(request, body)
    experiment_id = _experiment_id(found)
    await _workload(request, experiment_id, "read")
    key, worker = found.get("key"), found.get("workerIndex")
    db = request.app.state.broker.db
    return ok(
        await db.read(
            lambda conn: _points(conn, experiment_id, _text(key, "key"), _text(worker, "workerIndex"))
        )
    )


def _text(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{field}: must be a string", field=field)
    return value


def _point(item: Any, index: int) -> tuple[str, Point]:
    where = f"[{index}]"
    if not isinstance(item, dict):
        raise BadRequest(f"{where}: a metric must be a JSON object", field=where)
    experiment_id = _experiment_id(item)
    key = item.get("key")
    if not isinstance(key, str) or not key or len(key) > 250 or ".." in key or key.startswith("/"):
        raise BadRequest(
            f"{where}.key: a metric key of 1-250 characters, without '..' or a leading '/'", field="key"
        )
    nan = item.get("isNan") is True
    value = item.get("value")
    if nan:
        number = math.nan
    elif isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadRequest(f"{where}.value: must be a number", field="value")
    else:
        try:
            number = float(value)
        except ValueError:
            raise BadRequest(f"{where}.value: '{str(value)[:40]}' is not a number", field="value") from None
    step = item.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int):
        raise BadRequest(f"{where}.step: must be a whole number", field="step")
    return experiment_id, Point(
        key=key, value=number, timestamp=_millis(item.get("timestamp"), where), step=step
    )


def _millis(value: Any, where: str) -> int:
    if value is None:
        return int(datetime.now().timestamp() * 1000)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            pass
    raise BadRequest(f"{where}.timestamp: epoch milliseconds or an ISO 8601 time", field="timestamp")


def _many(body: Any) -> list[Any]:
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > MAX_WRITE:
        raise BadRequest(f"send between 1 and {MAX_WRITE} entries")
    return items


async def _current_run(request: Request, experiment_id: str) -> str:
    """The run of the experiment's current attempt, which writes go to."""
    row = await _workload(request, experiment_id, "write")
    db = request.app.state.broker.db
    run = await db.run(lambda s: s.get(TrackingRun, row.uid))
    if run is None:
        raise Conflict(f"experiment {experiment_id} has no run yet: it is logged to once it is dispatched")
    return row.uid


async def add_metrics(request: Request) -> EnvelopeResponse:
    groups: dict[tuple[str, str | None], list[Point]] = {}
    for index, item in enumerate(_many(await _body(request))):
        experiment_id, point = _point(item, index)
        worker = _text(item.get("workerIndex"), f"[{index}].workerIndex")
        groups.setdefault((experiment_id, worker), []).append(point)
    scope = run_scope(request)
    db = request.app.state.broker.db
    for (experiment_id, worker), points in groups.items():
        run_id = await _current_run(request, experiment_id)
        replica = scope.replica if scope is not None else worker
        await db.run(lambda s, r=run_id, p=points, w=replica: log_points(s, r, p, w))
    return ok(True)


# ------------------------------------------------------------------------------ params
def _params(conn: Connection, experiment_id: str, key: str | None) -> list[dict[str, Any]]:
    statement = (
        select(TrackingParam.key, TrackingParam.value, TrackingRun.attempt)
        .join(TrackingRun, TrackingRun.run_id == TrackingParam.run_id)
        .where(TrackingRun.workload_id == experiment_id)
        .order_by(TrackingRun.attempt, TrackingParam.key)
    )
    if key:
        statement = statement.where(TrackingParam.key == key)
    return [
        {"id": experiment_id, "key": r.key, "value": r.value, "workerIndex": None, "attempt": r.attempt}
        for r in conn.execute(statement)
    ]


async def list_params(request: Request) -> EnvelopeResponse:
    body = await _body(request) if request.method == "POST" else None
    found = _filters(request, body)
    experiment_id = _experiment_id(found)
    await _workload(request, experiment_id, "read")
    key = _text(found.get("key") or found.get("paramKey"), "key")
    db = request.app.state.broker.db
    return ok(await db.read(lambda conn: _params(conn, experiment_id, key)))


async def add_params(request: Request) -> EnvelopeResponse:
    by_experiment: dict[str, list[tuple[str, str]]] = {}
    for index, item in enumerate(_many(await _body(request))):
        where = f"[{index}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where}: a param must be a JSON object", field=where)
        key, value = item.get("key"), item.get("value")
        if not isinstance(key, str) or not key or len(key) > 250 or ".." in key or key.startswith("/"):
            raise BadRequest(
                f"{where}.key: a param key of 1-250 characters, without '..' or a leading '/'", field="key"
            )
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise BadRequest(f"{where}.value: must be a string or a number", field="value")
        by_experiment.setdefault(_experiment_id(item), []).append((key, str(value)[:6000]))
    db = request.app.state.broker.db
    for experiment_id, params in by_experiment.items():
        run_id = await _current_run(request, experiment_id)
        try:
            await db.run(lambda s, r=run_id, p=params: log_params(s, r, p))
        except Exception as exc:  # MLflow's refusal of a changed value, shown as Submarine's 400
            message = getattr(exc, "message", None)
            if message is None:
                raise
            raise BadRequest(message, field="value") from None
    return ok(True)


routes = [
    Route("/api/metric", list_metrics, methods=["GET"]),
    Route("/api/metric/list", list_metrics, methods=["GET"]),
    Route("/api/metric/selective", list_metrics, methods=["POST"]),
    Route("/api/metric", add_metrics, methods=["POST"]),
    Route("/api/metric/add", add_metrics, methods=["POST"]),
    Route("/api/param", list_params, methods=["GET"]),
    Route("/api/param/list", list_params, methods=["GET"]),
    Route("/api/param/selective", list_params, methods=["POST"]),
    Route("/api/param", add_params, methods=["POST"]),
    Route("/api/param/add", add_params, methods=["POST"]),
]
