"""Temporary stand-in (replaced by i17-core's module at merge): the registry caller of a request."""

from __future__ import annotations

from starlette.requests import Request

from broker.api.access import guard_of
from broker.model_registry.service import Caller
from broker.tracking.scope import run_scope


def caller_of(request: Request) -> Caller:
    return Caller(guard=guard_of(request), scope=run_scope(request))
