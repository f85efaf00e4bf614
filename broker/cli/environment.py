"""``submarine-broker environment ...``: registered environments: list, get, create, update,
delete and prepare (build ahead of time on a cluster), through ``/api/v1/environment``."""

from __future__ import annotations

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from broker.cli import render
from broker.cli.client import BrokerClient, JSONObject
from broker.cli.experiment import load_spec

pass_client = click.make_pass_decorator(BrokerClient, ensure=True)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the raw JSON result.")
KIND = "EnvironmentSpec"


def _kernel(environment: JSONObject) -> JSONObject:
    spec = environment.get("environmentSpec") or {}
    kernel = spec.get("kernelSpec") if isinstance(spec, dict) else None
    return kernel if isinstance(kernel, dict) else {}


def _packages(environment: JSONObject) -> int:
    kernel = _kernel(environment)
    return len(kernel.get("pipDependencies") or []) + len(kernel.get("condaDependencies") or [])


def _spec(environment: JSONObject) -> JSONObject:
    spec = environment.get("environmentSpec")
    return spec if isinstance(spec, dict) else {}


def environments_table(items: list[JSONObject]) -> Table:
    """``environment list``: name, revision, image, package count, short hash."""
    table = Table(show_edge=False, pad_edge=False)
    for header in ("NAME", "REVISION", "IMAGE", "PACKAGES", "HASH"):
        table.add_column(header)
    for environment in items:
        spec = _spec(environment)
        table.add_row(
            Text(render.dash(spec.get("name"))),
            Text(render.dash(environment.get("revision"))),
            Text(render.dash(spec.get("dockerImage") or spec.get("image"))),
            Text(str(_packages(environment))),
            Text(render.dash(str(environment.get("hash") or "")[:16])),
        )
    return table


def builds_table(builds: list[JSONObject]) -> Table:
    """The builds of an environment's current revision, per cluster."""
    table = Table(show_edge=False, pad_edge=False)
    for header in ("CLUSTER", "STATE", "BUILT", "LAST USED", "MESSAGE"):
        table.add_column(header)
    for build in builds:
        table.add_row(
            Text(render.dash(build.get("cluster"))),
            Text(render.dash(build.get("state"))),
            Text(render.fmt_time(build.get("builtAt"))),
            Text(render.fmt_time(build.get("lastUsedAt"))),
            Text(render.dash(build.get("message"))),
        )
    return table


def environment_details(environment: JSONObject) -> RenderableType:
    """``environment get``: the spec's fields, then where it is built."""
    spec, kernel = _spec(environment), _kernel(environment)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rows = [
        ("Name", spec.get("name")),
        ("Id", environment.get("environmentId")),
        ("Revision", environment.get("revision")),
        ("Hash", environment.get("hash")),
        ("Image", spec.get("dockerImage") or spec.get("image")),
        ("Kernel", kernel.get("name")),
        ("Channels", ", ".join(kernel.get("channels") or [])),
        ("Conda", ", ".join(kernel.get("condaDependencies") or [])),
        ("Pip", ", ".join(kernel.get("pipDependencies") or [])),
        ("Description", spec.get("description")),
    ]
    for label, value in rows:
        grid.add_row(label, Text(render.dash(value)))
    builds = [b for b in environment.get("builds") or [] if isinstance(b, dict)]
    if not builds:
        return Group(grid, Text(""), Text("Not built on any cluster yet."))
    return Group(grid, Text(""), builds_table(builds))


def _done(text: str) -> None:
    render.make_console().print(Text(text))


@click.group()
def environment() -> None:
    """Registered environments: what work installs, built once per cluster and reused."""


@environment.command("list")
@json_option
@pass_client
def list_(client: BrokerClient, as_json: bool) -> None:
    """List the environments."""
    found = client.list_environments()
    if as_json:
        render.print_json(found)
    elif found:
        render.make_console().print(environments_table(found))
    else:
        click.echo("No environments.")


@environment.command()
@click.argument("name")
@json_option
@pass_client
def get(client: BrokerClient, name: str, as_json: bool) -> None:
    """Show an environment: its current revision and the clusters where it is built."""
    found = client.get_environment(name)
    if as_json:
        render.print_json(found)
    else:
        render.make_console().print(environment_details(found))


@environment.command()
@click.option("-f", "--file", "source", required=True, help="EnvironmentSpec in YAML or JSON; '-' for stdin.")
@json_option
@pass_client
def create(client: BrokerClient, source: str, as_json: bool) -> None:
    """Register an environment from an EnvironmentSpec file."""
    made = client.create_environment(load_spec(source, KIND))
    if as_json:
        render.print_json(made)
    else:
        _done(f"environment {_spec(made).get('name')} created: revision {made.get('revision')}")


@environment.command()
@click.argument("name")
@click.option("-f", "--file", "source", required=True, help="EnvironmentSpec in YAML or JSON; '-' for stdin.")
@json_option
@pass_client
def update(client: BrokerClient, name: str, source: str, as_json: bool) -> None:
    """Replace an environment's spec (a change is a new revision; running work keeps its own)."""
    changed = client.update_environment(name, load_spec(source, KIND))
    if as_json:
        render.print_json(changed)
    else:
        _done(f"environment {name}: revision {changed.get('revision')}")


@environment.command()
@click.argument("name")
@pass_client
def delete(client: BrokerClient, name: str) -> None:
    """Delete an environment (refused while work that has not ended uses it)."""
    client.delete_environment(name)
    _done(f"environment {name} deleted")


@environment.command()
@click.argument("name")
@click.option("--cluster", "cluster", required=True, help="The cluster to build it on.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=1800.0,
    show_default=True,
    help="Seconds to wait for the build.",
)
@json_option
@pass_client
def prepare(client: BrokerClient, name: str, cluster: str, timeout: float, as_json: bool) -> None:
    """Build an environment on a cluster now, so work there starts without installing."""
    built = client.prepare_environment(name, cluster, timeout=timeout)
    if as_json:
        render.print_json(built)
    else:
        _done(f"environment {name} built on {built.get('cluster')} ({str(built.get('hash') or '')[:16]})")
