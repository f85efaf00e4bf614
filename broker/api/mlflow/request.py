"""Reading MLflow requests and answering them: arguments from the query string (GET) or the JSON
body (POST, PATCH, DELETE), typed accessors that refuse bad values with a 400 naming the field, and
the wrapper that turns :class:`MlflowError` into MLflow's error shape."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.api.documents import text_problem
from broker.api.mlflow_errors import MlflowError, invalid
from broker.tracking.validation import as_int64, shown

#: The largest request body: a worst-case log-batch is about 1.8 MB.
MAX_BODY = 4 * 1024 * 1024

Handler = Callable[[Request], Awaitable[Any]]


class Args:
    """A request's arguments. Query values are lists of strings (repeated keys); body values are JSON."""

    def __init__(self, data: dict[str, Any], *, query: bool) -> None:
        self.data = data
        self.query = query

    def raw(self, name: str) -> Any:
        value = self.data.get(name)
        if self.query and isinstance(value, list):
            return value[-1] if value else None
        return value

    def text(self, name: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = self.raw(name)
        if value is None or (required and value == ""):
            if required:
                raise invalid(f"Missing value for required parameter '{name}'")
            return default
        if not isinstance(value, str):
            raise invalid(f"Invalid value {shown(value)} for parameter '{name}' supplied: expected a string")
        return value

    def required(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def integer(self, name: str, default: int | None = None, *, minimum: int = -(2**63)) -> int | None:
        value = self.raw(name)
        if value is None or value == "":
            return default
        return as_int64(value, name, minimum=minimum)

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.raw(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise invalid(f"Invalid value {shown(value)} for parameter '{name}' supplied: expected true or false")

    def texts(self, name: str) -> list[str]:
        value = self.data.get(name)
        if value is None:
            return []
        if isinstance(value, str) and not self.query:
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise invalid(
                f"Invalid value {shown(value)} for parameter '{name}' supplied: expected a list of strings"
            )
        return value

    def objects(self, name: str) -> list[dict[str, Any]]:
        """A repeated message field of a JSON body (``metrics``, ``tags``...)."""
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise invalid(f"Invalid value {shown(value)} for parameter '{name}' supplied: expected a list")
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise invalid(
                    f"Invalid value {shown(item)} for parameter '{name}[{index}]': expected an object"
                )
        return value


async def read_args(request: Request) -> Args:
    """The arguments of ``request``: its query string for GET, else its JSON object body (at most
    :data:`MAX_BODY` bytes; an empty body is ``{}``; no NUL or lone surrogate in a string). Query
    arguments of a body request are ignored (a NUL there is refused by the NUL guard)."""
    if request.method in ("GET", "HEAD"):
        data: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            data.setdefault(key, []).append(value)
        return Args(dict(data), query=True)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 18 or int(declared) > MAX_BODY):
        raise invalid(f"The request body is over the limit of {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise invalid(f"The request body is over the limit of {MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return Args({}, query=False)
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise invalid(f"The request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(parsed, dict):
        raise invalid(f"The request body must be a JSON object, not {type(parsed).__name__}")
    refused = _not_text(parsed)
    if refused is not None:
        field, problem = refused
        raise invalid(f"Invalid value for parameter '{field[:200]}': {problem}")
    return Args(parsed, query=False)


def _not_text(document: dict[str, Any]) -> tuple[str, str] | None:
    """The first key or string of ``document`` that is no storable text (a NUL, which PostgreSQL
    cannot store or even compare with, or a lone surrogate): its field and the problem."""
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if (problem := text_problem(key)) is not None:
                    return path or "body", f"a key {problem}"
                stack.append((item, f"{path}.{key}" if path else key))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str) and (problem := text_problem(value)) is not None:
            return path, problem
    return None


def endpoint(handler: Callable[[Request, Args], Awaitable[Any]]) -> Handler:
    """A Starlette endpoint from ``handler(request, args)`` returning a JSON-able dict (200), or a
    :class:`Response`; an :class:`MlflowError` raised anywhere becomes MLflow's error answer."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        try:
            args = await read_args(request)
            result = await handler(request, args)
        except MlflowError as exc:
            return exc.response()
        if isinstance(result, Response):
            return result
        return JSONResponse(result)

    return run
