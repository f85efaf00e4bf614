"""``/api/v1/serve``: Submarine's serve endpoints (``POST`` ``{modelName, modelVersion}`` → the
serve with its ``url``; ``DELETE`` with the spec in the body) and the broker's own: list, get,
``PATCH`` (a rollout to another version or alias), delete by id, events, logs, stop and start."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from broker.api.access import guard_of, public
from broker.api.body import read_document
from broker.api.envelope import EnvelopeResponse, ok
from broker.api.experiments import int_param
from broker.api.registry_caller import caller_of
from broker.errors import BadRequest
from broker.serving.service import ServeService
from broker.serving.views import serve_json
from broker.workloads.service import attempt_logs
from broker.workloads.views import event_json


def _service(request: Request) -> ServeService:
    return request.app.state.broker.serves


async def _document(request: Request) -> dict[str, object]:
    return await read_document(request, request.app.state.broker.config.max_body_bytes)


@public
async def ping(request: Request) -> EnvelopeResponse:
    return ok("Pong")


async def create(request: Request) -> EnvelopeResponse:
    """Submarine's create: the result carries ``url`` (the proxy path), with the serve's fields."""
    document = await _document(request)
    row = await _service(request).create(document, guard=guard_of(request), caller=caller_of(request))
    return ok(serve_json(row), message="Create a serve instance")


async def delete_by_spec(request: Request) -> EnvelopeResponse:
    """Submarine's delete: the spec (``modelName``, ``modelVersion``) in the DELETE body."""
    document = await _document(request)
    rows = await _service(request).delete_model_serves(document, guard_of(request))
    return ok([serve_json(r) for r in rows], message="Delete the model serve instance")


async def list_serves(request: Request) -> EnvelopeResponse:
    rows = await _service(request).list(guard_of(request), status=request.query_params.get("status"))
    return ok([serve_json(r) for r in rows], message="List the serve instances")


async def get(request: Request) -> EnvelopeResponse:
    row = await _service(request).get(request.path_params["id"], guard_of(request))
    return ok(serve_json(row), message="Get the serve instance")


async def update(request: Request) -> EnvelopeResponse:
    """A rollout: ``{"modelVersion": N}`` or ``{"alias": "champion"}`` (followed from then on)."""
    document = await _document(request)
    row = await _service(request).update(
        request.path_params["id"], document, guard=guard_of(request), caller=caller_of(request)
    )
    return ok(serve_json(row), message="Update the serve instance")


async def delete(request: Request) -> EnvelopeResponse:
    row = await _service(request).delete(request.path_params["id"], guard_of(request))
    return ok(serve_json(row), message="Delete the serve instance")


async def stop(request: Request) -> EnvelopeResponse:
    """Stop the model servers, keep the serve (same id and URL) to start it again."""
    row = await _service(request).stop(request.path_params["id"], guard_of(request))
    return ok(serve_json(row), message="Stop the serve instance")


async def start(request: Request) -> EnvelopeResponse:
    row = await _service(request).start(request.path_params["id"], guard_of(request))
    return ok(serve_json(row), message="Start the serve instance")


async def events(request: Request) -> EnvelopeResponse:
    found = await _service(request).events(request.path_params["id"], guard_of(request))
    return ok([event_json(e) for e in found])


async def logs(request: Request) -> EnvelopeResponse:
    """The model servers' output, ``?tail=N`` for the last N lines of each."""
    tail = int_param(request, "tail", None)
    if tail is not None and tail < 0:
        raise BadRequest("tail: must not be negative", field="tail")
    service = _service(request)
    row = await service.get(request.path_params["id"], guard_of(request), "logs")
    names = list((row.handle or {}).get("state", {}).get("replicas") or ["server-0"])
    found = await attempt_logs(service.registry, row, names, tail=tail)
    token = service.tokens.of(row)

    def masked(line: str) -> str:
        return line.replace(token, "******") if token else line

    return ok(
        {
            "serveId": row.id,
            "logContent": [
                {"podName": f"{row.id}-{log.replica}", "podLog": [masked(line) for line in log.lines]}
                for log in found
            ],
        }
    )


routes = [
    Route("/api/v1/serve/ping", ping, methods=["GET"]),
    Route("/api/v1/serve", create, methods=["POST"]),
    Route("/api/v1/serve", delete_by_spec, methods=["DELETE"]),
    Route("/api/v1/serve", list_serves, methods=["GET"]),
    Route("/api/v1/serve/{id}/events", events, methods=["GET"]),
    Route("/api/v1/serve/{id}/logs", logs, methods=["GET"]),
    Route("/api/v1/serve/{id}/stop", stop, methods=["POST"]),
    Route("/api/v1/serve/{id}/start", start, methods=["POST"]),
    Route("/api/v1/serve/{id}", get, methods=["GET"]),
    Route("/api/v1/serve/{id}", update, methods=["PATCH"]),
    Route("/api/v1/serve/{id}", delete, methods=["DELETE"]),
]
