"""What a workbench form posted (``application/x-www-form-urlencoded``, what a page's form sends),
read without python-multipart (not a dependency): the body under the broker's size limit, the last
value of a repeated field, blank fields kept (a cleared input is an empty value, not a missing one).
:func:`form_fields` checks the CSRF token before anything else is read of it."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import yaml
from starlette.requests import Request

from broker.api.access import guard_of
from broker.api.body import read_body
from broker.errors import ApiError, BadRequest
from broker.web.csrf import FIELD, HEADER

_FORM = "application/x-www-form-urlencoded"


def _kind(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _parsed(request: Request) -> tuple[bytes, dict[str, str]]:
    raw = await read_body(request, request.app.state.broker.config.max_body_bytes)
    if _kind(request) != _FORM:
        return raw, {}
    fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    return raw, {name: values[-1] for name, values in fields.items()}


async def posted_fields(request: Request) -> dict[str, str]:
    """The form's fields by name; 415 for any other body."""
    raw, fields = await _parsed(request)
    if raw and _kind(request) != _FORM:
        raise ApiError(415, "send the page's form (application/x-www-form-urlencoded)")
    return fields


async def form_fields(request: Request) -> dict[str, str]:
    """The posted fields, after checking the CSRF token (403 without this browser's; then 415 for a
    body that is not a form)."""
    raw, fields = await _parsed(request)
    sent = fields.get(FIELD) or request.headers.get(HEADER)
    request.app.state.broker.csrf.require(request, guard_of(request).user, sent)
    if raw and _kind(request) != _FORM:
        raise ApiError(415, "send the page's form (application/x-www-form-urlencoded)")
    return fields


def document_field(fields: dict[str, str], name: str = "document") -> dict[str, Any]:
    """The posted field ``name`` read as a YAML (or JSON) mapping; a 400 naming it when it is not one."""
    text = fields.get(name, "")
    if not text.strip():
        raise BadRequest(f"{name}: write the spec (YAML or JSON)", field=name)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        raise BadRequest(f"{name}: not YAML or JSON{at}", field=name) from None
    if not isinstance(document, dict):
        raise BadRequest(f"{name}: must be a mapping of the spec's fields", field=name)
    return document
