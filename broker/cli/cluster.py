"""``submarine-broker cluster ...``: the clusters the broker federates, their condition and capacity,
and the admin verbs cordon, uncordon and drain."""

from __future__ import annotations

import time
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
    "Pause cluster NAME: it gets no new work, and what runs there runs on (admins). For a "
    "while (maintenance, an incident); 'uncordon' lifts it. Stored in the database: every broker "
    "replica honours it within a second.",
    BrokerClient.cordon_cluster,
)
_admin_command(
    "uncordon",
    "Let cluster NAME take new work again: clears a cordon and a drain (admins).",
    BrokerClient.uncordon_cluster,
)


class DrainTimeout(click.ClickException):
    """``drain --wait`` ran out of time: exit code 2, like ``experiment wait``."""

    exit_code = 2


@cluster.command()
@click.argument("name")
@click.option("--wait", "wait_", is_flag=True, help="Then wait until no workload is left on it.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up waiting after this many seconds (exit 2).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=2.0,
    show_default=True,
    help="Seconds between polls.",
)
@json_option
@pass_client
def drain(
    client: BrokerClient, name: str, wait_: bool, timeout: float | None, interval: float, as_json: bool
) -> None:
    """Empty cluster NAME before removing it (admins): it gets no new work, and this broker's
    experiments and notebooks there run to their own end. Nothing is evicted or moved: to empty it
    sooner, stop or delete that work. 'cluster get' and 'list' say "draining: N running", then
    "drained: empty, safe to remove"; --wait waits for that. Stored in the database: every broker
    replica honours it within a second; 'uncordon' undoes it."""
    found = client.drain_cluster(name)
    if not wait_:
        if as_json:
            render.print_json(found)
        else:
            render.make_console().print(render.cluster_changed("set to drain", found))
        return
    console = render.make_console()
    if not as_json:
        console.print(render.cluster_changed("set to drain", found))
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = render.drain_progress(found)
    while found.get("drained") is not True:
        if "drained" not in found:
            raise click.ClickException(f"the broker does not report when cluster {name} is empty")
        if deadline is not None and time.monotonic() >= deadline:
            raise DrainTimeout(
                f"timed out after {timeout:g}s waiting for cluster {name} to drain "
                f"({render.drain_progress(found) or found.get('state')})"
            )
        time.sleep(interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic())))
        found = client.get_cluster(name)
        progress = render.drain_progress(found)
        if progress != shown and not as_json:
            console.print(f"cluster {name} {progress or render.dash(found.get('state'))}", markup=False)
            shown = progress
    if as_json:
        render.print_json(found)
