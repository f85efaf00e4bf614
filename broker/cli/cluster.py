"""``submarine-broker cluster ...``: the clusters the broker federates, with state and capacity."""

from __future__ import annotations

import click

from broker.cli import render
from broker.cli.client import BrokerClient

pass_client = click.make_pass_decorator(BrokerClient, ensure=True)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the raw JSON result.")


@click.group()
def cluster() -> None:
    """Inspect the member clusters."""


@cluster.command("list")
@json_option
@pass_client
def list_(client: BrokerClient, as_json: bool) -> None:
    """List clusters: state, free/total capacity, running experiments, labels."""
    clusters = client.list_clusters()
    if as_json:
        render.print_json(clusters)
        return
    console = render.make_console()
    if clusters:
        console.print(render.clusters_table(clusters))
    else:
        console.print("No clusters.", markup=False)


@cluster.command()
@click.argument("name")
@json_option
@pass_client
def get(client: BrokerClient, name: str, as_json: bool) -> None:
    """Show one cluster."""
    found = client.get_cluster(name)
    if as_json:
        render.print_json(found)
    else:
        render.make_console().print(render.cluster_details(found))
