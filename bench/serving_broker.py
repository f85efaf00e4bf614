"""The broker for ``bench/serving.py``: ``python -m broker serve`` as :func:`broker.server.run` starts
it, plus one serve published into its proxy (``--serve NAMESPACE/NAME=URL``, the model server's base
URL, token ``--token``), as the serving service publishes a serve whose replicas are ready. With
``--caller-token-file F`` (a broker on ``auth: token``), it adds the user ``bench`` (a member of
the serve's namespace, so the default policy lets it ``invoke``) and writes an API token of it to F.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from broker.accounts import add_user, create_token
from broker.config.loader import load_broker_config
from broker.server import create_app
from broker.serving.replicas import ServeTarget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--serve", required=True, help="NAMESPACE/NAME=URL[,URL...]")
    parser.add_argument("--token", default="bench-server-token")
    parser.add_argument("--caller-token-file", default=None, help="add user bench; write its token here")
    args = parser.parse_args()
    config = load_broker_config(Path(args.config))
    path, _, urls = args.serve.partition("=")
    namespace, _, name = path.partition("/")
    target = ServeTarget("bench", namespace, name, args.token, tuple(urls.split(",")))
    app = create_app(config)
    opened = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(started: Starlette) -> AsyncIterator[None]:
        async with opened(started):
            context = started.state.broker
            context.serve_proxy.table.publish(target)
            if args.caller_token_file:
                await context.db.run(
                    lambda s: add_user(s, "bench", teams=[namespace], admin=False, author="bench")
                )
                token = await context.db.run(lambda s: create_token(s, "bench").token)
                await context.policy.refresh()
                Path(args.caller_token_file).write_text(token)
            yield

    app.router.lifespan_context = lifespan
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
