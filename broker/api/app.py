"""The Starlette application: routes, error handlers and lifespan, declared in one place."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request

from broker.api import (
    clusters,
    environments,
    experiment_assets,
    experiments,
    mlflow,
    mlflow_artifacts,
    model_versions,
    notebooks,
    openapi,
    placement,
    policy,
    registered_models,
    serve_proxy,
    serving,
    signin,
    submarine_tracking,
    templates,
    tensorboard,
    tokens,
    users,
)
from broker.api.access import AuthenticationMiddleware
from broker.api.envelope import EnvelopeResponse, error
from broker.api.nul_guard import NulGuardMiddleware
from broker.errors import ApiError
from broker.web.pages import PAGES
from broker.web.routes import routes as web_routes

log = logging.getLogger(__name__)


async def _api_error(request: Request, exc: Exception) -> EnvelopeResponse:
    assert isinstance(exc, ApiError)
    attributes = {"errors": [p.to_json() for p in exc.problems]} if exc.problems else None
    return error(exc.code, exc.message, attributes)


async def _http_error(request: Request, exc: Exception) -> EnvelopeResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error(404, f"no such endpoint: {request.method} {request.url.path}")
    if exc.status_code == 405:
        return error(405, f"{request.method} is not allowed on {request.url.path}")
    return error(exc.status_code, str(exc.detail))


async def _unexpected(request: Request, exc: Exception) -> EnvelopeResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error(
        500, f"internal error while handling {request.method} {request.url.path}; see the broker log"
    )


def build_app(lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]] | None = None) -> Starlette:
    """The REST application; ``lifespan`` sets ``app.state.broker`` and runs the loops."""
    return Starlette(
        routes=[
            *serve_proxy.routes,  # first: predictions are the hot path, the router tries routes in order
            *experiment_assets.routes,  # before experiments: /experiment/mlflow is not an id
            *experiments.routes,
            *templates.routes,  # POST /experiment/{template name}
            *notebooks.routes,
            *serving.routes,
            *environments.routes,
            *clusters.routes,
            *policy.routes,
            *placement.routes,
            *users.routes,
            *tokens.routes,
            *openapi.routes,
            *signin.routes,
            *mlflow_artifacts.routes,
            *mlflow.routes,
            *submarine_tracking.routes,
            *registered_models.routes,
            *model_versions.routes,
            *tensorboard.routes,
            *web_routes(PAGES),  # the workbench: / and /ui/...
        ],
        middleware=[Middleware(AuthenticationMiddleware), Middleware(NulGuardMiddleware)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )
