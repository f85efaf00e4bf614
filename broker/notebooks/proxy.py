"""Reverse proxy from the broker to notebooks' Jupyter servers: HTTP requests and WebSocket sessions.

The broker has authorized the caller. Path and query go unchanged (``base_url`` is the public prefix); the
caller's credentials become the notebook's token, whose presence makes Jupyter skip its origin and XSRF
checks: the proxy refuses cross-origin WebSockets and unsafe methods itself (``allowed_origins``, "*" off).
The broker's cookie is dropped, and the token is scrubbed from HTML pages (JupyterLab embeds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import EXTERNAL_CLOSE_CODES
from websockets.typing import Subprotocol

from broker.api.envelope import EnvelopeResponse, error

log = logging.getLogger(__name__)

BROKER_COOKIE = b"submarine_broker_token"
WS_TASK_PREFIX = "notebook-ws-relay"  # relay tasks carry this name, so tests can see none outlives a session
_HOP_BY_HOP = frozenset(b"connection keep-alive te trailer transfer-encoding upgrade".split())  # + proxy-*
_SET_HERE = frozenset(b"host authorization cookie expect".split())  # and x-forwarded-*
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_GONE = (OSError, RuntimeError, WebSocketDisconnect)  # what Starlette raises on a vanished client

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Upstream:
    """Where one notebook's Jupyter server listens and the token it expects."""

    base_url: str  # "http://127.0.0.1:18888": scheme://host:port only; the path is forwarded unchanged
    token: str = field(repr=False)  # kept out of logs and tracebacks


class _BodyTooLarge(Exception):
    """The request body grew past ``max_body_bytes`` while it was being forwarded."""


def _end_to_end(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """``headers`` (names lower-cased) without hop-by-hop ones, proxy-* and those named in Connection."""
    pairs = [(name.lower(), value) for name, value in headers]
    named = {t.strip().lower() for n, v in pairs if n == b"connection" for t in v.split(b",")}
    return [(n, v) for n, v in pairs if not (n in _HOP_BY_HOP or n in named or n.startswith(b"proxy-"))]


def _proxy_headers(conn: HTTPConnection, upstream: Upstream) -> Headers:
    """Headers the proxy sets itself: the notebook's token, the filtered Cookie and X-Forwarded-*."""
    client = (conn.client.host if conn.client else "unknown").encode("latin-1")  # as uvicorn trusts it
    crumbs = [c.strip() for n, v in conn.scope["headers"] if n == b"cookie" for c in v.split(b";")]
    cookies = [c for c in crumbs if c and c.split(b"=", 1)[0].strip() != BROKER_COOKIE]
    return [
        (b"authorization", b"token " + upstream.token.encode("latin-1")),
        (b"x-forwarded-for", client),  # the caller's own X-Forwarded-For is dropped: it is unverified
        (b"x-forwarded-proto", b"https" if conn.url.scheme in ("https", "wss") else b"http"),
        (b"x-forwarded-host", conn.headers.get("host", "").encode("latin-1")),
    ] + ([(b"cookie", b"; ".join(cookies))] if cookies else [])


def _target(conn: HTTPConnection, base_url: str) -> str:
    """``base_url`` plus the request's raw (still percent-encoded) path and its query string."""
    path = conn.scope.get("raw_path") or conn.scope["path"].encode("utf-8")
    query = conn.scope.get("query_string", b"")
    return base_url.rstrip("/") + path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")


def _label(conn: HTTPConnection) -> str:
    """How error messages name the notebook: by the route's ``namespace`` and ``name`` path parameters."""
    params = conn.path_params
    return f"the Jupyter server of notebook {params.get('namespace', '?')}/{params.get('name', '?')}"


def _sendable(code: int | None, *, otherwise: int) -> int:
    """A close code allowed on the wire: 1005 (no code) becomes 1000; 1006, None, invalid: ``otherwise``."""
    if code is not None and (code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000):
        return code
    return 1000 if code == 1005 else otherwise


async def _scrubbed(chunks: AsyncIterator[bytes], secret: bytes) -> AsyncIterator[bytes]:
    """``chunks`` with every occurrence of ``secret`` removed, also across chunk boundaries."""
    keep, tail = len(secret) - 1, b""
    async for chunk in chunks:
        data = (tail + chunk).replace(secret, b"")
        cut = max(len(data) - keep, 0)
        tail = data[cut:]
        if cut:
            yield data[:cut]
    if tail:
        yield tail


class _UpstreamResponse(StreamingResponse):
    """Streams an httpx response's raw (still encoded) bytes; closes it however the send ends."""

    def __init__(self, answer: httpx.Response, token: str) -> None:
        headers = _end_to_end(answer.headers.raw)
        body = answer.aiter_raw()  # an upstream error mid-body aborts the response: the client sees it cut
        html = answer.headers.get("content-type", "").startswith("text/html")
        if token and html and answer.headers.get("content-encoding", "identity").lower() == "identity":
            body = _scrubbed(body, token.encode("latin-1"))
            headers = [(n, v) for n, v in headers if n != b"content-length"]
        super().__init__(body, status_code=answer.status_code)
        self.raw_headers = headers
        self._answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._answer.aclose()


class NotebookProxy:
    """Forwards HTTP requests and WebSocket sessions to Jupyter servers; one per broker, pooled httpx."""

    def __init__(
        self,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float | None = 300.0,
        max_body_bytes: int = 1 << 30,
        max_message_bytes: int = 1 << 26,
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self._max_body = max_body_bytes
        self._ws_open_timeout = connect_timeout
        self._ws_max_size = max_message_bytes
        self._origins = frozenset(allowed_origins)
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout)
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        self._client = httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False)

    async def aclose(self) -> None:
        """Close the pooled upstream connections."""
        await self._client.aclose()

    async def forward_http(
        self, request: Request, upstream: Upstream, *, label: str | None = None
    ) -> Response:
        """Forward ``request`` to ``upstream``; failures become 4xx/502/504 envelopes, never a 500.
        ``label`` names the upstream in them (default: the notebook the path names)."""
        if (refusal := self._refusal(request)) is not None:
            return refusal
        label = label or _label(request)
        try:
            answer = await self._client.send(self._upstream_request(request, upstream), stream=True)
        except _BodyTooLarge:
            return error(413, f"the request body exceeds {self._max_body} bytes")
        except ClientDisconnect:
            return error(400, "the client went away while sending the request body")
        except httpx.TimeoutException as exc:
            return error(504, f"{label} did not answer in time ({type(exc).__name__})")
        except Exception as exc:  # noqa: BLE001 - refused, reset, protocol error, ...: all a bad gateway
            log.warning("%s is unreachable: %s", label, type(exc).__name__)
            return error(502, f"{label} is unreachable ({type(exc).__name__})")
        return _UpstreamResponse(answer, upstream.token)

    def _upstream_request(self, request: Request, upstream: Upstream) -> httpx.Request:
        """End-to-end headers, the proxy's own ones and a streamed body (built without client defaults)."""
        incoming = _end_to_end(request.scope["headers"])
        kept = [(n, v) for n, v in incoming if n not in _SET_HERE and not n.startswith(b"x-forwarded-")]
        has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
        body = self._limited_body(request) if has_body else None
        headers, url = kept + _proxy_headers(request, upstream), _target(request, upstream.base_url)
        return httpx.Request(request.method, url, headers=headers, content=body)

    async def _limited_body(self, request: Request) -> AsyncIterator[bytes]:
        """The request body chunk by chunk; raises ``_BodyTooLarge`` past ``max_body_bytes``."""
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > self._max_body:
                raise _BodyTooLarge
            if chunk:
                yield chunk

    def _refusal(self, conn: HTTPConnection) -> EnvelopeResponse | None:
        """400 for '.'/'..' path segments, 403 cross-origin (WebSocket, unsafe method), 413 too long."""
        if any(segment in (".", "..") for segment in conn.scope["path"].split("/")):
            return error(400, "the path must not contain '.' or '..' segments")
        unsafe = conn.scope["type"] == "websocket" or conn.scope.get("method") not in _SAFE_METHODS
        origin, host = conn.headers.get("origin"), conn.headers.get("host", "").lower()  # no Origin: a script
        foreign = origin and not {"*", origin} & self._origins and urlsplit(origin.lower()).netloc != host
        if unsafe and foreign:
            return error(403, "cross-origin request refused")
        declared = conn.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            return error(413, f"the request body exceeds {self._max_body} bytes")
        return None

    async def forward_websocket(self, websocket: WebSocket, upstream: Upstream) -> None:
        """Relay a WebSocket session to ``upstream``; a refused upstream becomes a denied handshake."""
        if (refusal := self._refusal(websocket)) is not None:
            return await _deny(websocket, refusal)
        label = _label(websocket)
        try:
            conn = await self._open_upstream(websocket, upstream)
        except InvalidStatus as exc:
            status = exc.response.status_code
            code = status if 400 <= status < 600 else 502
            return await _deny(websocket, error(code, f"{label} refused the WebSocket (HTTP {status})"))
        except TimeoutError:
            return await _deny(websocket, error(504, f"{label} did not answer in time"))
        except Exception as exc:  # noqa: BLE001 - refused, reset, bad handshake, ...: all a bad gateway
            log.warning("%s is unreachable: %s", label, type(exc).__name__)
            return await _deny(websocket, error(502, f"{label} is unreachable ({type(exc).__name__})"))
        try:
            await websocket.accept(subprotocol=conn.subprotocol)
            await _relay(websocket, conn)
        except Exception as exc:  # noqa: BLE001 - e.g. the client vanished during accept
            log.debug("%s: WebSocket relay ended: %r", label, exc)
        finally:
            await conn.close()
            await _close_client(websocket, conn)

    async def _open_upstream(self, websocket: WebSocket, upstream: Upstream) -> ClientConnection:
        """Open the upstream WebSocket with the notebook's token and the client's subprotocols."""
        base = upstream.base_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        offered = [Subprotocol(p) for p in websocket.scope.get("subprotocols", [])]
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in _proxy_headers(websocket, upstream)]
        return await connect(
            _target(websocket, base),
            additional_headers=headers,
            subprotocols=offered or None,
            user_agent_header=websocket.headers.get("user-agent"),
            compression=None,
            proxy=None,
            open_timeout=self._ws_open_timeout,
            max_size=self._ws_max_size,
        )


async def _deny(websocket: WebSocket, response: EnvelopeResponse) -> None:
    """Refuse the handshake with ``response`` (without the denial extension: close 1011 or 1008)."""
    with contextlib.suppress(*_GONE):
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(response)
        else:
            await websocket.close(1011 if response.status_code >= 500 else 1008)


async def _relay(websocket: WebSocket, conn: ClientConnection) -> None:
    """Pump frames both ways until one side closes; then cancel and await the other pump."""
    tasks = [
        asyncio.create_task(_client_to_upstream(websocket, conn), name=f"{WS_TASK_PREFIX}-client"),
        asyncio.create_task(_upstream_to_client(websocket, conn), name=f"{WS_TASK_PREFIX}-upstream"),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.debug("a WebSocket relay pump failed: %r", outcome)


async def _client_to_upstream(websocket: WebSocket, conn: ClientConnection) -> None:
    """Client frames to the upstream; the client's close code and reason are passed on."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            await conn.close(_sendable(message.get("code"), otherwise=1001), message.get("reason") or "")
            return
        data = message.get("bytes") if message.get("bytes") is not None else message.get("text")
        if data is not None:
            await conn.send(data)  # ConnectionClosed ends this pump; the upstream's close is passed on


async def _upstream_to_client(websocket: WebSocket, conn: ClientConnection) -> None:
    """Upstream frames to the client until the upstream closes (``_close_client`` passes its close on)."""
    with contextlib.suppress(ConnectionClosed):
        async for data in conn:
            await (websocket.send_text(data) if isinstance(data, str) else websocket.send_bytes(data))


async def _close_client(websocket: WebSocket, conn: ClientConnection) -> None:
    """Close the client's socket with the upstream's close code and reason, unless either side has."""
    if WebSocketState.DISCONNECTED in (websocket.client_state, websocket.application_state):
        return
    received = conn.protocol.close_rcvd
    code = _sendable(received.code, otherwise=1011) if received else 1011
    with contextlib.suppress(*_GONE):
        await websocket.close(code, received.reason if received else "notebook connection lost")
