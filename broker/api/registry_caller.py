"""The registry's :class:`~broker.model_registry.service.Caller` of a request, for the Submarine
and MLflow registry handlers alike."""

from __future__ import annotations

from starlette.requests import Request

from broker.api.access import guard_of
from broker.model_registry.service import Caller
from broker.tracking.scope import run_scope


def caller_of(request: Request) -> Caller:
    """The caller of ``request``: their guard, a run token's scope, and where their new models
    go when a request names no namespace (their first team, else the broker's default)."""
    broker = request.app.state.broker
    guard = guard_of(request)
    home = broker.planner.home_namespace(guard.user) or broker.config.default_namespace
    return Caller(guard, run_scope(request), home, request.headers.get("host"))
