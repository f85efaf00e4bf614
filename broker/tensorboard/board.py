"""The process of one experiment's TensorBoard: ``python -m broker.tensorboard.board <flags>``.

TensorBoard's own ``main`` with its own flags, except that it answers only requests carrying
``Authorization: token <secret>``, the secret the broker passed in :data:`TOKEN_ENV` (and that
this process then drops from its environment). TensorBoard has no authentication of its own, and
its loopback port is reachable by every user of the host, the local kind's run-as users
included: without the secret, another team's replica could read the experiment's data there.
"""

from __future__ import annotations

import hmac
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

#: The variable the broker passes the secret in (never the command line, which ``ps`` shows).
TOKEN_ENV = "SUBMARINE_BROKER_TENSORBOARD_TOKEN"

_Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def guard(app: _Wsgi, token: str) -> _Wsgi:
    """``app`` answering 403 to every request without ``Authorization: token <token>``."""
    expected = f"token {token}".encode("latin-1")

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = str(environ.get("HTTP_AUTHORIZATION", "")).encode("latin-1", "replace")
        if not token or not hmac.compare_digest(given, expected):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"this TensorBoard answers only through the broker\n"]
        return app(environ, start_response)

    return guarded


def main() -> None:
    """Run TensorBoard as ``tensorboard.main`` does, behind :func:`guard`."""
    from absl import app  # tensorboard's own dependency
    from tensorboard import default, main_lib, program
    from tensorboard.plugins import base_plugin

    token = os.environ.pop(TOKEN_ENV, "")

    class GuardedServer(program.WerkzeugServer):
        def __init__(self, wsgi_app: _Wsgi, flags: Any) -> None:
            super().__init__(guard(wsgi_app, token), flags)

    main_lib.global_init()
    board = program.TensorBoard(plugins=default.get_plugins(), server_class=GuardedServer)
    try:
        app.run(board.main, flags_parser=board.configure)
    except base_plugin.FlagsError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
