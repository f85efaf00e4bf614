"""What a workbench form posted: its fields (``application/x-www-form-urlencoded``, what a page's
form sends), with its CSRF token checked before anything else is read."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request

from broker.api.access import guard_of
from broker.api.body import read_body
from broker.errors import ApiError
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
