"""Reverse proxy from ``/serve/<namespace>/<name>/<path>`` to a ready model server of the serve.

The broker has authorized the caller. The path after the serve's prefix and the query go to the
replica unchanged; the caller's credentials (``Authorization``, cookies) are dropped and the serve's
own token is sent instead (``Authorization: Bearer <server token>``): a caller's token never reaches
a model server. The request body is read whole first (a prediction is small; ``max_body_bytes``
bounds it), so a request a replica could not answer (connection refused or reset, or its 502/503)
is sent again to the next replica while nothing has gone back to the caller; that replica is taken
out of round robin until it answers ``/ping`` (:class:`broker.serving.replicas.ServeTable`).
Scoring is a pure function of the body, which is why a request the replica may have seen before
it failed is sent again too. An answer with a small ``Content-Length`` is read and passed on whole
(the fast path); any other answer is streamed through as it comes, still encoded.

The upstream client is aiohttp's, not httpx (which the rest of the broker uses): on this path it
costs about a tenth of httpx's CPU per request (0.1 ms against 1.2 ms measured), which is most of
what the proxy adds to a prediction.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from multidict import CIMultiDict
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from broker.api.envelope import error
from broker.notebooks.proxy import _end_to_end
from broker.serving.replicas import Replica, ReplicaSet, ServeTable

log = logging.getLogger(__name__)

#: Request headers the proxy never forwards: the caller's credentials and what it sets itself.
_DROPPED = frozenset(b"host authorization cookie expect content-length".split())
#: Replica answers that mean "not this replica, try another" (nothing of them reaches the caller).
_RETRY_STATUS = frozenset({502, 503})
#: Answers up to this many bytes (by their Content-Length) are read whole and sent in one piece.
_WHOLE_BELOW = 1 << 20


class _BodyTooLarge(Exception):
    """The request body grew past ``max_body_bytes``."""


class ServeProxy:
    """Forwards HTTP requests to serves' model servers; one per broker, one pooled keep-alive client."""

    def __init__(
        self,
        table: ServeTable | None = None,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float | None = 300.0,
        max_body_bytes: int = 64 << 20,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(sock_read=read_timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None  # made in the event loop, at first use
        self.table = table or ServeTable()
        if self.table.probe is None:
            self.table.probe = self.ping
        self._max_body = max_body_bytes

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled keep-alive client (bytes pass as they are: no decompression, no cookies)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1000, limit_per_host=200, ttl_dns_cache=300),
                timeout=self._timeout,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                trust_env=False,
            )
        return self._session

    async def ping(self, url: str) -> bool:
        """Whether the model server at ``url`` answers ``GET /ping`` with 200."""
        try:
            async with self.session.get(
                url.rstrip("/") + "/ping", timeout=aiohttp.ClientTimeout(total=2.0)
            ) as answer:
                return answer.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def aclose(self) -> None:
        """Stop the background checks and close the pooled connections."""
        await self.table.aclose()
        if self._session is not None:
            await self._session.close()

    async def forward(self, request: Request, serve: ReplicaSet, path: str) -> Response:
        """Send ``request`` to ``path`` (with its query) on a replica of ``serve``, another one if it
        fails; failures become 4xx/502/503/504 envelopes, never a 500."""
        label = f"serve {serve.target.namespace}/{serve.target.name}"
        try:
            body = await self._body(request)
        except _BodyTooLarge:
            return error(413, f"the request body exceeds {self._max_body} bytes")
        except ClientDisconnect:
            return error(400, "the client went away while sending the request body")
        query = request.scope.get("query_string", b"")
        suffix = path + ("?" + query.decode("latin-1") if query else "")
        headers = [
            (n, v)
            for n, v in _end_to_end(request.scope["headers"])
            if n not in _DROPPED and not n.startswith(b"x-forwarded-")
        ]
        headers.append((b"authorization", b"Bearer " + serve.target.token.encode("latin-1")))
        if body:
            headers.append((b"content-length", str(len(body)).encode("ascii")))
        tried: list[Replica] = []
        last = "no replica is ready"
        while (replica := serve.pick(tried)) is not None:
            tried.append(replica)
            outcome = await self._try(request.method, replica, suffix, headers, body)
            if isinstance(outcome, Response):
                return outcome
            if isinstance(outcome, TimeoutError | aiohttp.ServerTimeoutError) and not isinstance(
                outcome, aiohttp.ConnectionTimeoutError
            ):
                return error(
                    504, f"{label}: its model server did not answer in time ({type(outcome).__name__})"
                )
            last = (
                f"its model server failed ({outcome if isinstance(outcome, str) else type(outcome).__name__})"
            )
            self.table.take_out(replica)
        return error(503, f"{label} has no model server answering: {last}; try again later")

    async def _try(
        self, method: str, replica: Replica, suffix: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Response | Exception | str:
        """One attempt on ``replica``: the response to pass on, or why another replica should be tried."""
        sent = CIMultiDict((n.decode("latin-1"), v.decode("latin-1")) for n, v in headers)
        replica.in_flight += 1
        try:
            answer = await self.session.request(method, replica.url + suffix, headers=sent, data=body or None)
        except (TimeoutError, aiohttp.ClientError) as exc:  # refused, reset, timeout: it failed
            replica.in_flight -= 1
            log.warning("model server %s: %s", replica.url, type(exc).__name__)
            return exc
        if answer.status in _RETRY_STATUS:
            replica.in_flight -= 1
            answer.release()
            return f"HTTP {answer.status}"
        raw = [(n.lower(), v) for n, v in answer.raw_headers]
        size = answer.headers.get("content-length", "")
        if size.isdigit() and int(size) <= _WHOLE_BELOW:
            try:
                content = await answer.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                return exc
            finally:
                replica.in_flight -= 1
                answer.release()
            whole = Response(content, status_code=answer.status)
            whole.raw_headers = _end_to_end(raw)
            return whole
        return _Streamed(answer, raw, replica)

    async def _body(self, request: Request) -> bytes:
        """The whole request body, refused past ``max_body_bytes`` (declared or sent)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            raise _BodyTooLarge
        chunks: list[bytes] = []
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > self._max_body:
                raise _BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)


async def _chunks(answer: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The answer's body as it arrives (an upstream error mid-body cuts the caller's response)."""
    async for chunk in answer.content.iter_any():
        yield chunk


class _Streamed(StreamingResponse):
    """A streamed answer; its replica counts the request in flight until the stream ends."""

    def __init__(
        self, answer: aiohttp.ClientResponse, raw: list[tuple[bytes, bytes]], replica: Replica
    ) -> None:
        super().__init__(_chunks(answer), status_code=answer.status)
        self.raw_headers = _end_to_end(raw)
        self._answer = answer
        self._replica = replica

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._replica.in_flight -= 1
            self._answer.release()
