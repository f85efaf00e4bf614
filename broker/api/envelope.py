"""Submarine's JSON envelope: ``{status, code, success, message, result, attributes}``, in that order."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from starlette.responses import Response


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
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        super().__init__(content=content, status_code=code, headers=headers, media_type=self.media_type)


def ok(result: Any = None, **kwargs: Any) -> EnvelopeResponse:
    return EnvelopeResponse(result, **kwargs)


def error(code: int, message: str, attributes: dict[str, Any] | None = None) -> EnvelopeResponse:
    return EnvelopeResponse(None, code=code, message=message, attributes=attributes)
