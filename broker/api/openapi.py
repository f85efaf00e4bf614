"""``GET /api/v1/openapi.json``: an OpenAPI 3.1 document of every route, built from the routes themselves.

Each operation carries the handler's docstring and the Submarine envelope as its response shape, so
clients and tools (schemathesis, code generators) can discover the API without a hand-kept copy.
Like the ping endpoints it answers without a token: it describes the API, not its data. Operations
that need a caller say so (``bearer``); the public ones (:func:`~broker.api.access.public`) have no
``security``.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from broker import __version__
from broker.api.access import is_public_endpoint, public

#: The MLflow-compatible APIs (tracking, artifacts): MLflow's own protocol, not described here.
MLFLOW_PATHS = ("/api/2.0/", "/api/3.0/")

_ENVELOPE = {
    "type": "object",
    "required": ["status", "code", "success", "message", "result", "attributes"],
    "properties": {
        "status": {"type": "string", "example": "OK"},
        "code": {"type": "integer", "example": 200},
        "success": {"type": ["boolean", "null"]},
        "message": {"type": ["string", "null"]},
        "result": {},
        "attributes": {"type": "object"},
    },
}


def build_document(routes: list[Route]) -> dict[str, Any]:
    """The OpenAPI document for ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue  # the notebook proxy forwards Jupyter's own API: not ours to describe
        if route.path.startswith(MLFLOW_PATHS):
            continue  # MLflow's protocol, with MLflow's shapes: MLflow documents it
        doc = inspect.getdoc(route.endpoint) or route.name.replace("_", " ")
        summary, _, details = doc.partition("\n")
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", route.path)
        ]
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation: dict[str, Any] = {
                "operationId": f"{_area(route)}_{route.name}_{method.lower()}",
                "summary": summary.strip(),
                "responses": {
                    "200": {"description": "Success", "content": _json_ref()},
                    "4XX": {"description": "An error naming the problem", "content": _json_ref()},
                },
            }
            if details.strip():
                operation["description"] = details.strip()
            if is_public_endpoint(route.endpoint):
                operation["security"] = []
            if params:
                operation["parameters"] = params
            if method in ("POST", "PUT", "PATCH"):
                operation["requestBody"] = {
                    "required": False,
                    "content": {"application/json": {"schema": {}}},
                }
            paths.setdefault(route.path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Submarine Broker", "version": __version__},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Envelope": _ENVELOPE},
            # auth: token; a broker with auth: none (loopback only) takes requests without it
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _area(route: Route) -> str:
    """The handler's module (``experiments``, ``notebooks``): keeps operation ids unique."""
    return str(getattr(route.endpoint, "__module__", "api")).rsplit(".", 1)[-1]


def _json_ref() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}


@public
async def openapi(request: Request) -> JSONResponse:
    """The OpenAPI document of this API, as plain JSON (what tools expect), open to anyone."""
    return JSONResponse(build_document(request.app.routes))


routes = [Route("/api/v1/openapi.json", openapi, methods=["GET"])]
