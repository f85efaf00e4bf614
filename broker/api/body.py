"""Reading request bodies: a size limit enforced while reading, JSON or YAML, clear 4xx errors."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.requests import Request

from broker.api.documents import parse_json, parse_yaml
from broker.config.models import LimitsConfig
from broker.errors import ApiError, BadRequest


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body; 413 as soon as it passes ``limit`` bytes, whatever Content-Length claims."""
    declared = request.headers.get("content-length", "")
    # Only ASCII digits are a length (anything else: the count while reading decides).
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise ApiError(413, f"request body of {declared[:20]} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_document(request: Request, limit: int) -> dict[str, Any]:
    """A JSON object body (or YAML when the content type says so, as Submarine accepted), at most
    ``limit`` bytes and within the broker's ``limits`` (:mod:`broker.api.documents`)."""
    raw = await read_body(request, limit)
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    limits: LimitsConfig = request.app.state.broker.config.limits
    if "yaml" in request.headers.get("content-type", ""):
        # Composing YAML is Python work: in a thread, so other requests (and /ping) are answered
        # meanwhile even for a body that takes the whole size and value limits.
        data = await anyio.to_thread.run_sync(parse_yaml, raw, limits)
    else:
        data = parse_json(raw, limits)
    if not isinstance(data, dict):
        raise BadRequest(f"the request body must be a JSON object, not {type(data).__name__}")
    return data
