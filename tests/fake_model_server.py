"""A stand-in for a model server replica (``runtimes.model_server``'s protocol): ``/ping`` and
``/invocations`` answering which replica it is, with switches a test flips to make it fail."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class FakeModelServer:
    """One replica named ``name`` that expects ``token``; ``broken`` makes every answer a 503."""

    def __init__(self, name: str, token: str = "server-token") -> None:
        self.name = name
        self.token = token
        self.broken = False
        self.seen: list[dict[str, Any]] = []  # each request: method, path, query, headers, body
        self.release = threading.Event()  # the streaming endpoint's second chunk waits for it
        self.app = Starlette(
            routes=[
                Route("/ping", self.ping, methods=["GET"]),
                Route("/invocations", self.invocations, methods=["POST"]),
                Route("/stream", self.stream, methods=["GET"]),
            ]
        )

    async def ping(self, request: Request) -> Response:
        return Response("\n", status_code=503 if self.broken else 200)

    async def invocations(self, request: Request) -> Response:
        body = await request.body()
        self.seen.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        if self.broken:
            return JSONResponse({"error_code": "UNAVAILABLE"}, status_code=503)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "bad token"}, status_code=401)
        if not body.startswith(b"{"):
            return JSONResponse({"error_code": "BAD_REQUEST", "message": "not JSON"}, status_code=400)
        return JSONResponse({"predictions": [1], "replica": self.name})

    async def stream(self, request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first\n"
            while not self.release.is_set():
                await asyncio.sleep(0.01)
            yield b"second\n"

        return StreamingResponse(chunks(), media_type="text/plain")
