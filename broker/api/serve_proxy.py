"""The serve proxy ``/serve/{namespace}/{name}/{path}``: MLflow's scoring protocol through the broker.

The caller needs ``invoke`` on the serve (``serve/<id>``, the object every serve endpoint checks) in
its namespace; a caller who may not even ``read`` it is told it does not exist (404), one who may
read but not invoke gets 403. Decisions are kept per (user, namespace, object) for
:data:`DECISION_TTL` seconds and dropped when the policy in force changes, and the serve's replicas
come from the proxy's in-memory table: a prediction reads nothing from the database here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker.api.access import guard_of
from broker.api.envelope import error
from broker.guard import Guard
from broker.serving.replicas import ReplicaSet

#: Seconds a permission decision is reused (the policy's own change invalidates it at once).
DECISION_TTL = 5.0
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass
class Decisions:
    """Cached "may read" / "may invoke" answers of one policy revision (its authorizer object)."""

    ttl: float = DECISION_TTL
    _authorizer: object = None
    _answers: dict[tuple[str, str, str], tuple[float, bool, bool]] = field(default_factory=dict)

    def of(self, guard: Guard, namespace: str, obj: str) -> tuple[bool, bool]:
        """(may read, may invoke) ``obj`` in ``namespace``."""
        if guard.authorizer is not self._authorizer:
            self._answers.clear()
            self._authorizer = guard.authorizer
        key = (guard.user if not guard.unrestricted else "", namespace, obj)
        now = time.monotonic()
        found = self._answers.get(key)
        if found is not None and found[0] > now:
            return found[1], found[2]
        answer = (now + self.ttl, guard.may(namespace, obj, "read"), guard.may(namespace, obj, "invoke"))
        if len(self._answers) > 10_000:
            self._answers.clear()
        self._answers[key] = answer
        return answer[1], answer[2]


async def proxy_http(request: Request) -> Response:
    """Forward to a ready model server of the serve the path names."""
    broker = request.app.state.broker
    namespace, name = request.path_params["namespace"], request.path_params["name"]
    if any(segment in (".", "..") for segment in request.path_params["path"].split("/")):
        return error(400, "the path must not contain '.' or '..' segments")
    serve = await invocable(request, namespace, name)
    if isinstance(serve, Response):
        return serve
    raw = request.scope.get("raw_path") or request.scope["path"].encode("utf-8")
    parts = raw.split(b"/", 4)  # b"", b"serve", namespace, name, the rest (still percent-encoded)
    path = "/" + (parts[4].decode("latin-1") if len(parts) > 4 else "")
    return await broker.serve_proxy.forward(request, serve, path)


async def invocable(request: Request, namespace: str, name: str) -> ReplicaSet | Response:
    """The ready replicas of serve ``namespace/name`` when the caller may ``invoke`` it, else the
    refusal to answer: 404 (cannot read it), 403 (may read, not invoke), 503 (none ready)."""
    broker = request.app.state.broker
    guard = guard_of(request)
    serve = await broker.serve_proxy.table.lookup(namespace, name)
    obj = f"serve/{serve.target.serve_id}" if serve is not None else ""
    may_read, may_invoke = broker.serve_decisions.of(guard, namespace, obj) if obj else (False, False)
    if serve is None or not may_read:
        return error(404, f"no serve {namespace}/{name}")
    if not may_invoke:
        return error(403, f"{guard.user} may not invoke {obj} (serve {name}) in namespace {namespace}")
    if not serve.replicas:
        return error(503, f"serve {namespace}/{name} has no ready model server yet: try again later")
    return serve


routes = [
    Route("/serve/{namespace}/{name}/{path:path}", proxy_http, methods=_METHODS),
]
