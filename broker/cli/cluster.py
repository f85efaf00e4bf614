"""``submarine-broker cluster ...``: the clusters the broker federates, their condition and capacity,
and the admin verbs cordon, uncordon and drain."""

from __future__ import annotations

from collections.abc import Callable

import click

from broker.cli import render
from broker.cli.client import BrokerClient, JSONObject

pass_client = click.make_pass_decorator(BrokerClient, ensure=True)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the raw JSON result.")


@click.group()
def cluster() -> None:
    """Inspect and administer the member clusters."""


@cluster.command("list")
@json_option
@pass_client
def list_(client: BrokerClient, as_json: bool) -> None:
    """List clusters: state (and since when, if unreachable), free/total capacity, running, labels.

    Refused files in clusters.d are listed below the table (the JSON output has the clusters only;
    see `cluster errors`)."""
    clusters, errors = client.list_clusters_and_errors()
    if as_json:
        render.print_json(clusters)
        return
    console = render.make_console()
    if clusters:
        console.print(render.clusters_table(clusters))
    else:
        console.print("No clusters.", markup=False)
    if errors:
        console.print(render.config_errors(errors))


@cluster.command()
@click.argument("name")
@json_option
@pass_client
def get(client: BrokerClient, name: str, as_json: bool) -> None:
    """Show everything about one cluster: condition, checks, flags, capacity, config (secrets masked)."""
    found = client.get_cluster(name)
    if as_json:
        render.print_json(found)
    else:
        render.make_console().print(render.cluster_details(found))


@cluster.command()
@json_option
@pass_client
def errors(client: BrokerClient, as_json: bool) -> None:
    """List the refused files in clusters.d: file, line, key and reason."""
    found = client.cluster_errors()
    if as_json:
        render.print_json(found)
    elif found:
        render.make_console().print(render.config_errors(found))
    else:
        click.echo("No refused cluster files.")


def _admin_command(verb: str, summary: str, call: Callable[[BrokerClient, str], JSONObject]) -> None:
    @cluster.command(verb, help=summary)
    @click.argument("name")
    @json_option
    @pass_client
    def command(client: BrokerClient, name: str, as_json: bool) -> None:
        found = call(client, name)
        if as_json:
            render.print_json(found)
            return
        render.make_console().print(render.cluster_changed(f"{verb}ed", found))


_admin_command(
    "cordon",
    "Give cluster NAME no new work; what runs there continues (admins). Per broker process for now.",
    BrokerClient.cordon_cluster,
)
_admin_command(
    "uncordon",
    "Let cluster NAME take new work again: clears a cordon and a drain (admins).",
    BrokerClient.uncordon_cluster,
)
_admin_command(
    "drain",
    "Give cluster NAME no new work and let its running work finish (admins). Per broker process for now.",
    BrokerClient.drain_cluster,
)
