"""``/ui/serving``: the served models (status, readiness, replicas, the version and alias, a rollout
in progress), a serve's page with its history, and its "try it" box.

The box posts a JSON body to ``/ui/serving/<id>/try`` (the cookie is a credential under ``/ui/``,
not under ``/serve/``), which sends it to the serve's ``/invocations`` through the same proxy path
and permission (``invoke``) as ``/serve/<namespace>/<name>/invocations``, and shows the answer:
its status and body, a model server's 400 passed through as it came.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message

from broker.api.access import guard_of
from broker.api.serve_proxy import invocable
from broker.serving.service import ServeService
from broker.serving.views import serve_json
from broker.web.pages.posted import form_fields
from broker.web.render import page
from broker.web.routes import PREFIX, html_page
from broker.workloads.views import event_json

HOME = f"{PREFIX}/serving"
#: What the box holds at first: MLflow's scoring protocol, one row of one feature.
EXAMPLE = '{"inputs": [[1.0]]}'
#: An answer longer than this is cut on the page.
SHOWN_BYTES = 64 * 1024


def _service(request: Request) -> ServeService:
    return request.app.state.broker.serves


@html_page
async def list_page(request: Request) -> Response:
    rows = await _service(request).list(guard_of(request))
    return page(request, "serving/list.html", serves=[serve_json(r) for r in rows])


async def _detail(request: Request, *, sent: str = EXAMPLE, answer: dict[str, Any] | None = None) -> Response:
    service, guard = _service(request), guard_of(request)
    row = await service.get(request.path_params["id"], guard)
    events = [event_json(e) for e in await service.events(row.id, guard)]
    events.reverse()
    return page(
        request, "serving/detail.html", serve=serve_json(row), events=events, sent=sent, answer=answer
    )


@html_page
async def detail(request: Request) -> Response:
    return await _detail(request)


@html_page
async def try_it(request: Request) -> Response:
    """Send the posted ``body`` to the serve's ``/invocations`` as the caller; show the answer."""
    fields = await form_fields(request)
    body = fields.get("body", "")
    row = await _service(request).get(request.path_params["id"], guard_of(request))
    target = await invocable(request, row.namespace, row.name)
    if not isinstance(target, Response):
        target = await request.app.state.broker.serve_proxy.forward(
            _invocation(request, body.encode()), target, "/invocations"
        )
    status, content_type, content = await _drain(target, request)
    return await _detail(
        request,
        sent=body,
        answer={
            "status": status,
            "contentType": content_type,
            "body": _readable(content[:SHOWN_BYTES], content_type),
            "cut": len(content) > SHOWN_BYTES,
        },
    )


def _invocation(request: Request, body: bytes) -> Request:
    """A ``POST`` of ``body`` as JSON, the request the proxy forwards (nothing of the browser's own)."""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": request.url.scheme,
        "path": "/invocations",
        "raw_path": b"/invocations",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"accept", b"application/json")],
        "app": request.app,
        "state": request.scope.get("state", {}),
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


async def _drain(answer: Response, request: Request) -> tuple[int, str, bytes]:
    """Status, content type and body of ``answer`` (a whole or a streamed response)."""
    status = 0
    content_type = ""
    chunks: list[bytes] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, content_type
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message.get("headers", []):
                if name.lower() == b"content-type":
                    content_type = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await answer({"type": "http", "method": "POST", "headers": [], "path": request.url.path}, receive, send)
    return status, content_type, b"".join(chunks)


def _readable(content: bytes, content_type: str) -> str:
    """The answer as text; JSON indented."""
    text = content.decode("utf-8", "replace")
    if "json" in content_type:
        try:
            return json.dumps(json.loads(text), indent=2)
        except ValueError:
            pass
    return text


routes: list[BaseRoute] = [
    Route(HOME, list_page, methods=["GET"]),
    Route(HOME + "/{id}", detail, methods=["GET"]),
    Route(HOME + "/{id}/try", try_it, methods=["POST"]),
]
