"""``/api/v1/token``: a caller's API tokens, listed and revoked (admins: anyone's).

A listing shows what identifies a token (its id, the ``sbk_<id>_`` it starts with, its user and
times), never its secret or hash. Revoking binds every broker at once: each request checks its
token's row. Someone else's token is reported as not found, unless the caller is an admin.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from broker.accounts import find_token, list_tokens, revoke_token
from broker.api.access import guard_of
from broker.api.envelope import EnvelopeResponse, ok
from broker.errors import BadRequest, NotFound
from broker.guard import GLOBAL, Forbidden
from broker.store.models import ApiToken
from broker.workloads.views import fmt_time


def token_json(row: ApiToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "prefix": f"sbk_{row.id}_",
        "user": row.user,
        "createdTime": fmt_time(row.created_at),
        "lastUsedTime": fmt_time(row.last_used_at),
        "revokedTime": fmt_time(row.revoked_at),
    }


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false"):
        raise BadRequest(f"{name}: must be true or false", field=name)
    return value == "true"


async def list_api_tokens(request: Request) -> EnvelopeResponse:
    """The caller's live API tokens (never their secrets); ``?revoked=true`` adds revoked ones.

    Admins may ask for another user's (``?user=NAME``) or everyone's (``?all=true``)."""
    guard = guard_of(request)
    wanted = request.query_params.get("user")
    everyone = _flag(request, "all")
    revoked = _flag(request, "revoked")
    if everyone and wanted:
        raise BadRequest("give either user or all=true, not both", field="user")
    if (everyone or (wanted and wanted != guard.user)) and not guard.may(GLOBAL, "user", "admin"):
        raise Forbidden(f"{guard.user} may list only their own tokens (other users' need an admin)")
    user = None if everyone else (wanted or guard.user)
    rows = await request.app.state.broker.db.run(lambda s: list_tokens(s, user=user, revoked=revoked))
    return ok([token_json(r) for r in rows], attributes={"total": len(rows)})


async def revoke_api_token(request: Request) -> EnvelopeResponse:
    """Revoke an API token at once, on every broker: the caller's own, or anyone's for an admin."""
    guard = guard_of(request)
    token_id = request.path_params["id"]
    admin = guard.may(GLOBAL, "user", "admin")

    def revoke(session: Session) -> tuple[dict[str, Any], bool]:
        row = find_token(session, token_id)
        if row is None or (row.user != guard.user and not admin):
            raise NotFound(f"no token {token_id}")
        changed = revoke_token(session, row)
        return token_json(row), changed

    found, changed = await request.app.state.broker.db.run(revoke)
    message = f"token {token_id} revoked" if changed else f"token {token_id} was revoked already"
    return ok(found, message=message, attributes={"changed": changed})


routes = [
    Route("/api/v1/token", list_api_tokens, methods=["GET"]),
    Route("/api/v1/token/{id}", revoke_api_token, methods=["DELETE"]),
]
