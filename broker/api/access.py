"""Who is calling, and may they: authentication for every request, authorization helpers.

Authentication is decided by the route a request reaches, as the router picks it: only endpoints
marked :func:`public` (the ping endpoints, the OpenAPI document, the sign-in page) answer without a
caller; every other route, every other method on a public path, and every unknown path needs one.

With ``auth: none`` (loopback only) every request is the built-in admin, which the policy cannot
restrict (see :class:`Guard`). With ``auth: token`` a request needs ``Authorization: Bearer
sbk_…``; a missing, unknown or revoked token is a 401 envelope. The token is checked against the
database on every request (one primary-key read), so a revocation binds every broker at once.

A browser cannot set headers on a page it opens or on a WebSocket, so under :data:`COOKIE_PATHS`
(what a browser opens itself: the notebook and TensorBoard proxies) the token may come in the ``HttpOnly``,
``SameSite=Strict`` cookie the sign-in page sets; anywhere else, the REST API included, the cookie
is no credential. A request the cookie or ``auth: none`` would let through is refused (403) when it
changes something (any method but GET, HEAD and OPTIONS, or a WebSocket) and its ``Origin`` is
another site's: another site's page cannot act through the visitor's browser. Authorization asks
the policy; an object the caller may not read is reported as not found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from broker.accounts import lookup_token, record_use
from broker.api.envelope import error
from broker.api.mlflow_errors import mlflow_error
from broker.guard import Guard
from broker.policy_store import BUILTIN_ADMIN
from broker.serving.fetch_tokens import PREFIX as FETCH_TOKEN_PREFIX
from broker.serving.fetch_tokens import reaches
from broker.state import now
from broker.store.database import Database
from broker.tracking.run_tokens import PREFIX as RUN_TOKEN_PREFIX

#: The cookie a browser carries the API token in (it cannot set headers on a WebSocket).
TOKEN_COOKIE = "submarine_broker_token"
#: Where the cookie is a credential: what a browser opens itself. The one list: a browser UI joins it.
COOKIE_PATHS = ("/notebook/", "/tensorboard/", "/ui/")
#: What a replica's run token (:mod:`broker.tracking.run_tokens`) may reach: the tracking APIs.
RUN_TOKEN_PATHS = (
    "/api/2.0/mlflow/",
    "/api/2.0/mlflow-artifacts/",
    "/api/3.0/mlflow/",
    "/ajax-api/2.0/mlflow/",
    "/ajax-api/2.0/mlflow-artifacts/",
    "/api/metric",
    "/api/param",
)
#: The paths that answer in MLflow's shapes.
MLFLOW_PATHS = tuple(p for p in RUN_TOKEN_PATHS if "mlflow" in p)
#: The sign-in page that sets the cookie (:mod:`broker.api.signin`).
SIGN_IN_PATH = "/login"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PUBLIC = "_submarine_broker_public"
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., Any])


def public(endpoint: _Endpoint) -> _Endpoint:
    """Mark a route's endpoint as answering without a caller: it says nothing about anyone's work.

    Only the route (path and methods) of that endpoint is open: another route matching the same
    path, another method, a WebSocket to it, all need a caller."""
    setattr(endpoint, _PUBLIC, True)
    return endpoint


def is_public_endpoint(endpoint: object) -> bool:
    """Whether ``endpoint`` was marked :func:`public`."""
    return getattr(endpoint, _PUBLIC, False) is True


def is_public(routes: Iterable[BaseRoute], scope: Scope) -> bool:
    """Whether the route the router will run for ``scope`` (its first full match) is :func:`public`."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return is_public_endpoint(getattr(route, "endpoint", None))
    return False


@dataclass(frozen=True)
class Caller:
    user: str


class AuthenticationMiddleware:
    """Resolves the caller of every request (HTTP or WebSocket) but those of :func:`public`
    routes into ``scope['state']['caller']``: a bearer token, or under :data:`COOKIE_PATHS` the
    ``submarine_broker_token`` cookie. Refuses cross-site requests the browser's credentials (the
    cookie, or ``auth: none``) would otherwise carry."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._public: list[BaseRoute] | None = None  # the app's public routes, found at the first call

    def _is_public(self, scope: Scope) -> bool:
        """:func:`is_public`, resolving the whole table only for a path a public route matches."""
        routes = scope["app"].routes
        if self._public is None:
            self._public = [r for r in routes if is_public_endpoint(getattr(r, "endpoint", None))]
        if not any(route.matches(scope)[0] is Match.FULL for route in self._public):
            return False
        return is_public(routes, scope)  # an earlier route may take it first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._is_public(scope):
            await self.app(scope, receive, send)
            return
        broker = scope["app"].state.broker
        bearer = _bearer(scope)
        if bearer is not None and bearer.startswith(RUN_TOKEN_PREFIX):
            await self._run_scoped(broker, bearer, scope, receive, send)
            return
        if bearer is not None and bearer.startswith(FETCH_TOKEN_PREFIX):
            await self._fetch_scoped(broker, bearer, scope, receive, send)
            return
        cookie = _cookie(scope) if bearer is None and scope["path"].startswith(COOKIE_PATHS) else None
        if broker.config.auth == "none":
            caller = Caller(BUILTIN_ADMIN)
        else:
            token = bearer or cookie
            user = await user_of(broker.db, token) if token else None
            if user is None:
                await _unauthenticated(scope, receive, send, tried=token is not None)
                return
            caller = Caller(user)
        # What a browser sends by itself (the cookie; with auth: none, nothing at all) must not let
        # another site's page act; a page cannot send Authorization to another site unasked.
        if bearer is None and (why := cross_site(scope)) is not None:
            await _refuse(scope, receive, send, 403, why)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)

    async def _run_scoped(self, broker: Any, token: str, scope: Scope, receive: Receive, send: Send) -> None:
        """A replica's run token (whatever ``auth`` says, so its points name the replica): alive
        while its attempt is, and only on the tracking endpoints."""
        found = await broker.run_tokens.caller(broker.db, token)
        if found is None:
            await _refuse(
                scope,
                receive,
                send,
                401,
                "run token refused: its experiment attempt has ended, or this broker did not issue it",
            )
            return
        if not scope["path"].startswith(RUN_TOKEN_PATHS):
            await _refuse(
                scope,
                receive,
                send,
                403,
                "a run token (MLFLOW_TRACKING_TOKEN) reaches only the tracking API of its own run",
            )
            return
        state = scope.setdefault("state", {})
        state["caller"] = Caller(found.owner)
        state["run_scope"] = found.scope
        await self.app(scope, receive, send)

    async def _fetch_scoped(
        self, broker: Any, token: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """A model server's fetch token (whatever ``auth`` says): alive while its serve's attempt
        is, and only for reading its one registered version's files (as the serve's owner)."""
        grant = broker.fetch_tokens.verify(token)
        owner = await broker.fetch_tokens.owner(broker.db, grant) if grant is not None else None
        if owner is None:
            await _refuse(
                scope,
                receive,
                send,
                401,
                "fetch token refused: its serve attempt has ended, or this broker did not issue it",
            )
            return
        if not reaches(scope, grant):
            await _refuse(
                scope,
                receive,
                send,
                403,
                f"a fetch token (SUBMARINE_MODEL_FETCH_TOKEN) reads only {grant.folder} of the artifact API",
            )
            return
        scope.setdefault("state", {})["caller"] = Caller(owner)
        await self.app(scope, receive, send)


async def user_of(db: Database, token: str) -> str | None:
    """The user of a live ``token``: read from the database on every request (a revocation binds at
    once, on every broker); its use is written only when a minute has passed."""
    use = await lookup_token(db, token)
    if use is None:
        return None
    stamp = now()
    if use.due(stamp):
        await db.run(lambda s: record_use(s, use.token_id, stamp))
    return use.user


def cross_site(scope: Scope) -> str | None:
    """Why a request that changes something comes from another site's page, or None.

    Browsers send ``Origin`` with every cross-origin request but simple reads, and with every
    WebSocket: a request without one is not a page's. ``Origin: null`` (sandboxed or opaque) is
    another site. The same site is the same host and port as the ``Host`` the request was sent to.
    """
    if scope["type"] == "http" and scope["method"] in _SAFE_METHODS:
        return None
    origin = _header(scope, b"origin")
    if origin is None:
        return None
    host = (_header(scope, b"host") or "").lower()
    if origin.lower() != "null" and host and urlsplit(origin.lower()).netloc == host:
        return None
    return (
        f"cross-site request refused: Origin {origin[:100]} is not this broker ({host[:100] or 'no Host'}); "
        "scripts send 'Authorization: Bearer <token>' and no Origin"
    )


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return value.decode("latin-1")
    return None


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


async def _unauthenticated(scope: Scope, receive: Receive, send: Send, *, tried: bool) -> None:
    """401; a browser opening a page under :data:`COOKIE_PATHS` is sent to the sign-in page instead."""
    path = scope["path"]
    if (
        scope["type"] == "http"
        and scope["method"] == "GET"
        and path.startswith(COOKIE_PATHS)
        and "text/html" in (_header(scope, b"accept") or "")
    ):
        query = scope.get("query_string", b"").decode("latin-1")
        target = quote(path + ("?" + query if query else ""), safe="")
        await RedirectResponse(f"{SIGN_IN_PATH}?next={target}", status_code=303)(scope, receive, send)
        return
    what = "missing or unknown API token" + (" (the one sent is unknown or revoked)" if tried else "")
    if path.startswith(COOKIE_PATHS):
        where = f" (in a browser: sign in at {SIGN_IN_PATH})"
    elif _cookie(scope) is not None:
        where = f" (the {TOKEN_COOKIE} cookie only opens pages under {', '.join(COOKIE_PATHS)})"
    else:
        where = ""
    await _refuse(
        scope,
        receive,
        send,
        401,
        f"{what}: send 'Authorization: Bearer <token>'{where} "
        "(an admin creates one with: submarine-broker token create NAME)",
    )


async def _refuse(scope: Scope, receive: Receive, send: Send, code: int, message: str) -> None:
    """An error envelope (MLflow's error shape on MLflow's paths, which its client reads), or for
    a WebSocket a refused handshake carrying it."""
    answer: Response = error(code, message)
    if scope["path"].startswith(MLFLOW_PATHS):
        answer = mlflow_error("UNAUTHENTICATED" if code == 401 else "PERMISSION_DENIED", message, code)
    if scope["type"] != "websocket":
        await answer(scope, receive, send)
    elif "websocket.http.response" in scope.get("extensions", {}):
        await WebSocket(scope, receive, send).send_denial_response(answer)
    elif (await receive())["type"] == "websocket.connect":  # a server without denial responses
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})


def caller(request: Request | WebSocket) -> Caller:
    """The authenticated caller of ``request``."""
    return request.scope["state"]["caller"]


def guard_of(request: Request | WebSocket) -> Guard:
    """The guard of ``request``'s caller under the policy in force (see :class:`broker.guard.Guard`)."""
    broker = request.app.state.broker
    return Guard.for_caller(caller(request).user, broker.policy.authorizer, auth=broker.config.auth)
