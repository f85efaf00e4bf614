"""Reading request bodies: a size limit enforced while reading, JSON or YAML, clear 4xx errors."""

from __future__ import annotations

import json
from typing import Any

import yaml
from starlette.requests import Request

from broker.errors import ApiError, BadRequest


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body; 413 as soon as it passes ``limit`` bytes, whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {int(declared)} bytes is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_document(request: Request, limit: int) -> dict[str, Any]:
    """A JSON object body (or YAML when the content type says so, as Submarine accepted)."""
    raw = await read_body(request, limit)
    if not raw.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    content_type = request.headers.get("content-type", "")
    if "yaml" in content_type:
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise BadRequest(f"malformed YAML body{where}: {getattr(exc, 'problem', exc)}") from None
    else:
        try:
            data = json.loads(raw)
        except UnicodeDecodeError:
            raise BadRequest("the request body is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise BadRequest(
                f"malformed JSON body at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
    if not isinstance(data, dict):
        raise BadRequest(f"the request body must be a JSON object, not {type(data).__name__}")
    return data
