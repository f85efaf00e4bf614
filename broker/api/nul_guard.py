"""Refuse a NUL character in a request's path or query before any handler sees it.

No id, name or filter holds one, and PostgreSQL cannot even compare against one (the query fails
instead of finding nothing), so ``/experiment/%00`` or ``?name=%00`` would be a 500 there.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from broker.api.envelope import error
from broker.api.mlflow_errors import mlflow_error

#: Paths whose clients read MLflow's error shape (``error_code``), not the envelope.
MLFLOW_PATHS = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow", "/api/3.0/mlflow", "/ajax-api/3.0/mlflow")


def _has_nul(scope: Scope) -> str | None:
    """Which part of the request holds a NUL character (``path`` or ``query``), if any."""
    if "\0" in scope.get("path", ""):
        return "path"
    if b"\0" in unquote_to_bytes(scope.get("query_string", b"")):
        return "query"
    return None


class NulGuardMiddleware:
    """A 400 envelope (HTTP) or a refused handshake (WebSocket) for a NUL in the path or query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        part = _has_nul(scope) if scope["type"] in ("http", "websocket") else None
        if part is None:
            await self.app(scope, receive, send)
            return
        message = f"the request {part} holds a NUL character, which no id, name or value may hold"
        if scope["type"] == "http" and scope.get("path", "").startswith(MLFLOW_PATHS):
            await mlflow_error("INVALID_PARAMETER_VALUE", message)(scope, receive, send)
            return
        answer = error(400, message)
        if scope["type"] == "websocket":
            await WebSocket(scope, receive, send).send_denial_response(answer)
        else:
            await answer(scope, receive, send)
