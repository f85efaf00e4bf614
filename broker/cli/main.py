"""The ``submarine-broker`` command: the REST client commands plus ``serve``, ``db`` and ``init``."""

from __future__ import annotations

from typing import Any

import click

import broker.cli.serve  # noqa: F401 - registers the model-serving subcommands of `serve`
from broker import __version__
from broker.cli import render
from broker.cli.admin import token, user
from broker.cli.client import DEFAULT_URL, BrokerClient, BrokerError
from broker.cli.cluster import cluster
from broker.cli.environment import environment
from broker.cli.experiment import experiment
from broker.cli.experiment_patch import patch
from broker.cli.init_command import init
from broker.cli.model import model
from broker.cli.notebook import notebook
from broker.cli.policy import placement, policy
from broker.cli.server_commands import db, serve
from broker.cli.template import template
from broker.cli.tracking import artifacts


class BrokerGroup(click.Group):
    """Turns every :class:`BrokerError` into ``Error: <message>`` and exit 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokerError as exc:
            raise click.ClickException(render.error_text(exc.message, exc.problems)) from None


@click.group(cls=BrokerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="SUBMARINE_BROKER_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Broker base URL (env SUBMARINE_BROKER_URL).",
)
@click.option(
    "--token",
    envvar="SUBMARINE_BROKER_TOKEN",
    default=None,
    help="Bearer token sent as 'Authorization: Bearer' (env SUBMARINE_BROKER_TOKEN).",
)
@click.version_option(__version__, prog_name="submarine-broker")
@click.pass_context
def main(ctx: click.Context, url: str, token: str | None) -> None:
    """Submarine Broker: submit experiments and notebooks to a federation of clusters."""
    client = BrokerClient(url, token=token)
    ctx.obj = client
    ctx.call_on_close(client.close)


experiment.add_command(patch)
main.add_command(experiment)
main.add_command(artifacts)
main.add_command(model)
main.add_command(template)
main.add_command(environment)
main.add_command(notebook)
main.add_command(cluster)
main.add_command(policy)
main.add_command(placement)
main.add_command(user)
main.add_command(token)
main.add_command(serve)
main.add_command(db)
main.add_command(init)

if __name__ == "__main__":  # pragma: no cover
    main()
