"""The body of a workbench form post, its CSRF token checked: what every state-changing handler of
the clusters and policies pages reads first."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request

from broker.api.access import guard_of
from broker.api.body import read_body
from broker.errors import ApiError
from broker.guard import Guard
from broker.web.csrf import FIELD, HEADER


async def checked_form(request: Request) -> tuple[dict[str, str], Guard]:
    """The posted fields (the first value of each) and the caller's guard; 403 unless the form (or
    the script's ``X-CSRF-Token`` header) carries this browser's CSRF token, 415 for a body that is
    not a form."""
    broker = request.app.state.broker
    raw = await read_body(request, broker.config.max_body_bytes)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw and kind != "application/x-www-form-urlencoded":
        raise ApiError(415, "send the page's form (application/x-www-form-urlencoded)")
    fields = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
    guard = guard_of(request)
    broker.csrf.require(request, guard.user, fields.get(FIELD) or request.headers.get(HEADER))
    return fields, guard
