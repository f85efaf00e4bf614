"""The fields of a posted workbench form (``application/x-www-form-urlencoded``), read without
python-multipart (not a dependency): the body under the broker's size limit, the last value of a
repeated field, blank fields kept (a cleared input is an empty value, not a missing one)."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request

from broker.api.body import read_body
from broker.errors import ApiError


async def posted_fields(request: Request) -> dict[str, str]:
    """The form's fields by name; 415 for any other body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await read_body(request, request.app.state.broker.config.max_body_bytes)
    if kind != "application/x-www-form-urlencoded" and raw:
        raise ApiError(415, "send the form as application/x-www-form-urlencoded")
    fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}
