"""``/api/v1/user``: who may call the broker (admins only by default), and who am I."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from broker.accounts import list_users
from broker.api.access import guard_of
from broker.api.envelope import EnvelopeResponse, ok
from broker.guard import GLOBAL
from broker.workloads.views import fmt_time


async def whoami(request: Request) -> EnvelopeResponse:
    guard = guard_of(request)
    policy = request.app.state.broker.policy
    return ok(
        {
            "name": guard.user,
            "teams": policy.teams_of(guard.user),
            "admin": guard.may(GLOBAL, "user", "admin"),
        }
    )


async def users(request: Request) -> EnvelopeResponse:
    guard_of(request).require(GLOBAL, "user", "read")
    broker = request.app.state.broker
    rows = await broker.db.run(list_users)
    return ok(
        [
            {"name": u.name, "teams": broker.policy.teams_of(u.name), "createdTime": fmt_time(u.created_at)}
            for u in rows
        ]
    )


routes = [
    Route("/api/v1/user/me", whoami, methods=["GET"]),
    Route("/api/v1/user", users, methods=["GET"]),
]
