"""``/api/v1/notebook`` (Submarine's notebook endpoints + stop/start/events) and the notebook proxy
under ``/notebook/{namespace}/{name}/`` (HTTP and WebSocket)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from broker.api.access import guard_of, public
from broker.api.body import read_document
from broker.api.envelope import EnvelopeResponse, error, ok
from broker.api.experiments import int_param
from broker.errors import ApiError, BadRequest
from broker.notebooks.proxy import Upstream
from broker.notebooks.service import NotebookService
from broker.notebooks.views import notebook_json, notebook_log_json, notebook_status
from broker.workloads.views import event_json

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _service(request: Request | WebSocket) -> NotebookService:
    return request.app.state.broker.notebooks


@public
async def ping(request: Request) -> EnvelopeResponse:
    return ok("Pong")


async def create(request: Request) -> EnvelopeResponse:
    document = await read_document(request, request.app.state.broker.config.max_body_bytes)
    row = await _service(request).create(document, guard=guard_of(request))
    return ok(notebook_json(row), message="Create a notebook instance")


async def list_notebooks(request: Request) -> EnvelopeResponse:
    rows = await _service(request).list(guard_of(request), status=request.query_params.get("status"))
    return ok([notebook_json(r) for r in rows], message="List all notebook instances")


async def get(request: Request) -> EnvelopeResponse:
    row = await _service(request).get(request.path_params["id"], guard_of(request))
    return ok(notebook_json(row), message="Get the notebook instance")


async def delete(request: Request) -> EnvelopeResponse:
    row = await _service(request).delete(request.path_params["id"], guard_of(request))
    return ok(notebook_json(row), message="Delete the notebook instance")


async def stop(request: Request) -> EnvelopeResponse:
    """Broker extension: stop the server, keep the notebook to start it again."""
    row = await _service(request).stop(request.path_params["id"], guard_of(request))
    return ok(notebook_json(row), message="Stop the notebook instance")


async def start(request: Request) -> EnvelopeResponse:
    """Broker extension: start a stopped notebook again (same id, URL and files)."""
    row = await _service(request).start(request.path_params["id"], guard_of(request))
    return ok(notebook_json(row), message="Start the notebook instance")


async def logs(request: Request) -> EnvelopeResponse:
    """Broker extension: the Jupyter server's output, ``?tail=N`` for the last N lines."""
    tail = int_param(request, "tail", None)
    if tail is not None and tail < 0:
        raise BadRequest("tail: must not be negative", field="tail")
    notebook_id = request.path_params["id"]
    service = _service(request)
    row, content = await service.logs(notebook_id, guard_of(request), tail=tail)
    return ok(
        notebook_log_json(row.id, content, service.tokens.of(row)), message="Logs of the notebook instance"
    )


async def events(request: Request) -> EnvelopeResponse:
    found = await _service(request).events(request.path_params["id"], guard_of(request))
    return ok([event_json(e) for e in found])


async def _upstream(request: Request | WebSocket) -> Upstream:
    """The notebook the path names, if the caller may use it and its server answers."""
    service = _service(request)
    row = await service.by_path(
        request.path_params["namespace"], request.path_params["name"], guard_of(request)
    )
    target = service.upstream_of(row)
    if target is None:
        state = notebook_status(row)
        raise ApiError(503, f"notebook {row.namespace}/{row.name} is {state}, not running: try again later")
    return Upstream(base_url=target[0], token=target[1])


async def proxy_http(request: Request) -> Response:
    try:
        upstream = await _upstream(request)
    except ApiError as exc:
        return error(exc.code, exc.message)
    return await request.app.state.broker.proxy.forward_http(request, upstream)


async def to_lab(request: Request) -> Response:
    """``/notebook/<ns>/<name>`` → the Lab page under it."""
    return RedirectResponse(request.url.path.rstrip("/") + "/lab", status_code=307)


async def proxy_websocket(websocket: WebSocket) -> None:
    try:
        upstream = await _upstream(websocket)
    except ApiError as exc:
        await websocket.send_denial_response(error(exc.code, exc.message))
        return
    await websocket.app.state.broker.proxy.forward_websocket(websocket, upstream)


routes = [
    Route("/api/v1/notebook/ping", ping, methods=["GET"]),
    Route("/api/v1/notebook", create, methods=["POST"]),
    Route("/api/v1/notebook", list_notebooks, methods=["GET"]),
    Route("/api/v1/notebook/{id}/events", events, methods=["GET"]),
    Route("/api/v1/notebook/{id}/logs", logs, methods=["GET"]),
    Route("/api/v1/notebook/{id}/stop", stop, methods=["POST"]),
    Route("/api/v1/notebook/{id}/start", start, methods=["POST"]),
    Route("/api/v1/notebook/{id}", get, methods=["GET"]),
    Route("/api/v1/notebook/{id}", delete, methods=["DELETE"]),
    Route("/notebook/{namespace}/{name}", to_lab, methods=["GET"]),
    Route("/notebook/{namespace}/{name}/{path:path}", proxy_http, methods=_METHODS),
    WebSocketRoute("/notebook/{namespace}/{name}/{path:path}", proxy_websocket),
]
