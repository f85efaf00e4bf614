"""Who is calling, and may they: authentication for every ``/api`` request, authorization helpers.

With ``auth: none`` (loopback only) every request is the built-in admin, which the policy cannot
restrict (see :class:`Guard`). With ``auth: token`` a request needs ``Authorization: Bearer
sbk_…``; a missing or unknown token is a 401 envelope. Authorization asks the policy; an object
the caller may not read is reported as not found.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from broker.accounts import user_for_token
from broker.api.envelope import error
from broker.guard import Guard
from broker.policy_store import BUILTIN_ADMIN

_TOKEN_CACHE_SECONDS = 10.0
_OPEN = ("/ping", "/api/v1/openapi.json")  # answer anyone: they say nothing about anyone's work
_GUARDED = ("/api/", "/notebook/")  # the REST API and the notebook proxy
#: The cookie a browser may carry the API token in (it cannot set headers on a WebSocket).
TOKEN_COOKIE = "submarine_broker_token"


@dataclass(frozen=True)
class Caller:
    user: str


class AuthenticationMiddleware:
    """Resolves the caller of every ``/api/`` and ``/notebook/`` request (HTTP or WebSocket) into
    ``scope['state']['caller']``: a bearer token, or the ``submarine_broker_token`` cookie.

    The ``…/ping`` liveness endpoints answer anyone: they say nothing but "Pong"."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cache: dict[str, tuple[str, float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in ("http", "websocket")
            or not scope["path"].startswith(_GUARDED)
            or scope["path"].endswith(_OPEN)
        ):
            await self.app(scope, receive, send)
            return
        broker = scope["app"].state.broker
        if broker.config.auth == "none":
            caller = Caller(BUILTIN_ADMIN)
        else:
            user = await self._user(broker, _bearer(scope) or _cookie(scope))
            if user is None:
                if scope["type"] == "websocket":
                    await _deny_websocket(scope, receive, send)
                    return
                response = error(
                    401,
                    "missing or unknown API token: send 'Authorization: Bearer <token>' "
                    "(an admin creates one with: submarine-broker token create NAME)",
                )
                await response(scope, receive, send)
                return
            caller = Caller(user)
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)

    async def _user(self, broker: Any, token: str | None) -> str | None:
        if not token:
            return None
        cached = self._cache.get(token)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        user = await broker.db.run(lambda s: user_for_token(s, token))
        if user is not None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = (user, time.monotonic() + _TOKEN_CACHE_SECONDS)
        return user


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _cookie(scope: Scope) -> str | None:
    """The API token from the ``submarine_broker_token`` cookie (browsers, WebSockets)."""
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, token = part.strip().partition("=")
                if key == TOKEN_COOKIE and token:
                    return token
    return None


async def _deny_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse a WebSocket handshake without a valid token (HTTP 403 to the client)."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": 1008, "reason": "missing or unknown API token"})


def caller(request: Request | WebSocket) -> Caller:
    """The authenticated caller of ``request``."""
    return request.scope["state"]["caller"]


def guard_of(request: Request | WebSocket) -> Guard:
    """The guard of ``request``'s caller under the policy in force (see :class:`broker.guard.Guard`)."""
    broker = request.app.state.broker
    return Guard.for_caller(caller(request).user, broker.policy.authorizer, auth=broker.config.auth)
