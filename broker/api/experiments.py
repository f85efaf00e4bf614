"""``/api/v1/experiment``: Submarine's experiment endpoints, plus events and placement."""

from __future__ import annotations

import re
from typing import overload

from starlette.requests import Request
from starlette.routing import Route

from broker.api.access import guard_of, public
from broker.api.body import read_document
from broker.api.envelope import EnvelopeResponse, ok
from broker.errors import BadRequest
from broker.experiments.service import MAX_PAGE_SIZE, ExperimentService
from broker.experiments.views import experiment_json, log_json, replica_names
from broker.tracking.purge import purge_runs
from broker.workloads.views import event_json
from clusters.base import ReplicaLog


def _service(request: Request) -> ExperimentService:
    return request.app.state.broker.experiments


#: The largest page number and log tail a query may ask for.
MAX_QUERY_NUMBER = 1_000_000
_WHOLE = re.compile(r"^-?[0-9]+$")


@overload
def int_param(request: Request, name: str, default: int, *, maximum: int = ...) -> int: ...
@overload
def int_param(request: Request, name: str, default: None, *, maximum: int = ...) -> int | None: ...
def int_param(
    request: Request, name: str, default: int | None, *, maximum: int = MAX_QUERY_NUMBER
) -> int | None:
    """A whole-number query parameter (digits only, at most ``maximum``), or a 400 naming it."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not _WHOLE.match(raw):
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise BadRequest(f"{name}: '{shown}' is not a whole number", field=name)
    digits = raw.lstrip("-").lstrip("0")
    if len(digits) > len(str(maximum)) or int(raw) > maximum:  # int() first would be slow on many digits
        if raw.startswith("-"):
            raise BadRequest(f"{name}: must not be negative", field=name)
        raise BadRequest(f"{name}: must be at most {maximum}", field=name)
    return int(raw)


@public
async def ping(request: Request) -> EnvelopeResponse:
    return ok("Pong")


async def create(request: Request) -> EnvelopeResponse:
    document = await read_document(request, request.app.state.broker.config.max_body_bytes)
    key = request.headers.get("idempotency-key") or None
    if key is not None and len(key) > 128:
        raise BadRequest("Idempotency-Key: at most 128 characters", field="Idempotency-Key")
    if key is not None and not key.isprintable():
        raise BadRequest("Idempotency-Key: must be printable text", field="Idempotency-Key")
    row = await _service(request).create(document, guard=guard_of(request), idempotency_key=key)
    return ok(experiment_json(row))


def flag_param(request: Request, name: str) -> bool:
    """A yes/no query parameter (``true``/``false``, ``1``/``0``; absent = false), or a 400 naming it."""
    raw = (request.query_params.get(name) or "").strip().lower()
    if raw in ("", "false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise BadRequest(f"{name}: '{raw}' is not true or false", field=name)


async def list_experiments(request: Request) -> EnvelopeResponse:
    """Submarine's list, plus the broker's ``name`` and ``namespace`` filters (exact matches)."""
    page = int_param(request, "page", 1)
    size = int_param(request, "pageSize", MAX_PAGE_SIZE)
    query = request.query_params
    rows, total = await _service(request).list(
        guard_of(request),
        status=query.get("status"),
        page=page,
        page_size=size,
        name=query.get("name") or None,
        namespace=query.get("namespace") or None,
    )
    return ok([experiment_json(r) for r in rows], attributes={"total": total, "page": page, "pageSize": size})


async def get(request: Request) -> EnvelopeResponse:
    row = await _service(request).get(request.path_params["id"], guard_of(request))
    return ok(experiment_json(row))


async def patch(request: Request) -> EnvelopeResponse:
    """Submarine's patch: replace the spec while Accepted; once dispatched only meta.tags may change (409)."""
    document = await read_document(request, request.app.state.broker.config.max_body_bytes)
    row = await _service(request).patch(request.path_params["id"], document, guard_of(request))
    return ok(experiment_json(row))


async def delete(request: Request) -> EnvelopeResponse:
    """Delete the experiment; its runs and artifacts stay for audit unless ``?purge=true``."""
    purge = flag_param(request, "purge")
    row = await _service(request).delete(request.path_params["id"], guard_of(request))
    if purge:
        broker = request.app.state.broker
        await purge_runs(broker.db, broker.artifacts, row.id)
        await broker.tensorboards.forget(row.id)
    return ok(experiment_json(row))


async def stop(request: Request) -> EnvelopeResponse:
    """Broker extension: stop the run, keep the record; it ends Failed with category ``killed``."""
    row = await _service(request).stop(request.path_params["id"], guard_of(request))
    return ok(experiment_json(row))


async def logs(request: Request) -> EnvelopeResponse:
    experiment_id = request.path_params["id"]
    tail = int_param(request, "tail", None)
    if tail is not None and tail < 0:
        raise BadRequest("tail: must not be negative", field="tail")
    replica = request.query_params.get("replica") or None
    content = await _service(request).logs(
        experiment_id, guard_of(request), replica=replica, tail=tail, deleted=flag_param(request, "deleted")
    )
    return ok(log_json(experiment_id, content))


async def list_logs(request: Request) -> EnvelopeResponse:
    """Submarine's ``GET /experiment/logs``: replica names of every experiment, without lines."""
    rows, total = await _service(request).list(guard_of(request), status=request.query_params.get("status"))
    result = [log_json(r.id, [ReplicaLog(name, []) for name in replica_names(r.spec)]) for r in rows]
    return ok(result, attributes={"total": total})


async def events(request: Request) -> EnvelopeResponse:
    found = await _service(request).events(request.path_params["id"], guard_of(request))
    return ok([event_json(e) for e in found])


async def placement(request: Request) -> EnvelopeResponse:
    row = await _service(request).get(request.path_params["id"], guard_of(request))
    return ok({"experimentId": row.id, "cluster": row.cluster, "decision": row.placement})


routes = [
    Route("/api/v1/experiment/ping", ping, methods=["GET"]),
    Route("/api/v1/experiment/logs", list_logs, methods=["GET"]),
    Route("/api/v1/experiment/logs/{id}", logs, methods=["GET"]),
    Route("/api/v1/experiment", create, methods=["POST"]),
    Route("/api/v1/experiment", list_experiments, methods=["GET"]),
    Route("/api/v1/experiment/{id}/events", events, methods=["GET"]),
    Route("/api/v1/experiment/{id}/placement", placement, methods=["GET"]),
    Route("/api/v1/experiment/{id}/stop", stop, methods=["POST"]),
    Route("/api/v1/experiment/{id}", get, methods=["GET"]),
    Route("/api/v1/experiment/{id}", patch, methods=["PATCH"]),
    Route("/api/v1/experiment/{id}", delete, methods=["DELETE"]),
]
