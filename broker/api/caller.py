"""Who is calling. With ``auth: none`` (loopback only) every request is the built-in admin."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

BUILTIN_ADMIN = "admin"


@dataclass(frozen=True)
class Caller:
    user: str
    admin: bool


def caller(request: Request) -> Caller:
    """The caller of ``request``; token authentication replaces this with a lookup."""
    return Caller(user=BUILTIN_ADMIN, admin=True)
