"""The body of a workbench form post, its CSRF token checked, and the caller: what every
state-changing handler of the clusters and policies pages reads first."""

from __future__ import annotations

from starlette.requests import Request

from broker.api.access import guard_of
from broker.guard import Guard
from broker.web.pages.posted import form_fields


async def checked_form(request: Request) -> tuple[dict[str, str], Guard]:
    """The posted fields and the caller's guard; 403 unless the form (or the script's
    ``X-CSRF-Token`` header) carries this browser's CSRF token, 415 for a body that is not a form."""
    return await form_fields(request), guard_of(request)
