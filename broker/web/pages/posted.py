"""What a workbench form posted: its fields (``application/x-www-form-urlencoded``, what a page's
form sends), with its CSRF token checked before anything else is read."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import yaml
from starlette.requests import Request

from broker.api.access import guard_of
from broker.api.body import read_body
from broker.errors import ApiError, BadRequest
from broker.web.csrf import FIELD, HEADER

#: A form of the workbench is small; anything larger is not one of its forms.
MAX_FORM_BYTES = 256 * 1024


async def form_fields(request: Request) -> dict[str, str]:
    """The posted fields (the first value of each), after checking the CSRF token (403 without it)."""
    raw = await read_body(request, MAX_FORM_BYTES)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: dict[str, str] = {}
    if kind == "application/x-www-form-urlencoded":
        parsed = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        fields = {key: values[0] for key, values in parsed.items()}
    sent = fields.get(FIELD) or request.headers.get(HEADER)
    request.app.state.broker.csrf.require(request, guard_of(request).user, sent)
    if kind != "application/x-www-form-urlencoded":
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
