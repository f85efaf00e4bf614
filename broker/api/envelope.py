"""Submarine's JSON envelope: ``{status, code, success, message, result, attributes}``, in that order."""

from __future__ import annotations

import json
import logging
import math
from http import HTTPStatus
from typing import Any

from starlette.responses import Response

log = logging.getLogger(__name__)


def _status_name(code: int) -> str:
    try:
        return HTTPStatus(code).name
    except ValueError:
        return "UNKNOWN"


class EnvelopeResponse(Response):
    """A JSON response wrapped in the Submarine envelope (explicit nulls, ``attributes`` always present)."""

    media_type = "application/json; charset=utf-8"

    def __init__(
        self,
        result: Any = None,
        *,
        code: int = 200,
        message: str | None = None,
        attributes: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = {
            "status": _status_name(code),
            "code": code,
            "success": True if code < 400 else None,
            "message": message,
            "result": result,
            "attributes": attributes or {},
        }
        # A lone surrogate (refused in requests; one could come from elsewhere) is written as its
        # JSON escape rather than failing the answer.
        content = strict_dumps(body).encode("utf-8", "backslashreplace")
        super().__init__(content=content, status_code=code, headers=headers, media_type=self.media_type)


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, in nested dicts and lists too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def strict_dumps(body: Any) -> str:
    """``body`` as strict JSON: never NaN or Infinity, which JSON has no word for and strict parsers
    refuse. Requests cannot store such numbers; one kept from before (SQLite stored them) shows as
    null rather than breaking the whole answer."""
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        log.warning("a response showed a non-finite number (stored before they were refused) as null")
        return json.dumps(_finite(body), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def ok(result: Any = None, **kwargs: Any) -> EnvelopeResponse:
    return EnvelopeResponse(result, **kwargs)


def error(code: int, message: str, attributes: dict[str, Any] | None = None) -> EnvelopeResponse:
    return EnvelopeResponse(None, code=code, message=message, attributes=attributes)
