"""``submarine-broker notebook ...``: create, list, show, open, logs, stop, start and delete notebooks."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from broker.cli import render
from broker.cli.client import API_PREFIX, BrokerClient, BrokerError, JSONObject, NotFound
from broker.cli.experiment import json_option, load_spec, pass_client

#: Statuses after which ``--wait`` stops: the server answers, or it will not without a start.
_SETTLED = frozenset({"running", "stopped", "failed", "not_found"})
#: How many of the Jupyter server's last log lines a failed ``--wait`` shows.
FAILURE_LINES = 10


@click.group()
def notebook() -> None:
    """Jupyter notebooks, placed on the clusters and opened through the broker."""


#: ``-n`` for the commands that take a notebook by name.
namespace_option = click.option(
    "-n",
    "--namespace",
    default=None,
    help="Namespace of a notebook given by name (default: every namespace you can see).",
)


def resolve(client: BrokerClient, ref: str, namespace: str | None) -> str:
    """The id of the notebook ``ref`` names: an id, or the name of one live notebook (names are
    unique per namespace, so a name two namespaces share needs ``-n``)."""
    if namespace is None:
        try:
            return str(client.get_notebook(ref).get("notebookId") or ref)
        except NotFound as unknown:
            missing: NotFound = unknown
    else:
        missing = NotFound(404, f"no notebook {ref} in namespace {namespace}")
    matches = [
        item
        for item in client.list_notebooks()
        if item.get("name") == ref and namespace in (None, item.get("namespace"))
    ]
    if not matches:
        raise missing
    if len(matches) > 1:
        listing = ", ".join(
            f"{item.get('notebookId')} (namespace {render.dash(item.get('namespace'))})" for item in matches
        )
        raise BrokerError(
            409, f"'{ref}' names {len(matches)} notebooks: {listing}; give the id, or the namespace with -n"
        )
    return str(matches[0].get("notebookId"))


def spec_from_options(
    name: str | None,
    namespace: str | None,
    resources: str | None,
    env: tuple[str, ...],
    image: str | None,
    idle_timeout: float | None,
    cluster: str | None,
) -> JSONObject:
    """A NotebookSpec from command-line options (``--env K=V`` may repeat)."""
    if not name:
        raise click.UsageError("give a name (NAME argument) or a spec file (-f)")
    variables: dict[str, str] = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"'{item}' is not KEY=VALUE", param_hint="--env")
        variables[key] = value
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if cluster:
        meta["placement"] = {"cluster": cluster}
    spec: dict[str, Any] = {"envVars": variables}
    if resources:
        spec["resources"] = resources
    if idle_timeout is not None:
        spec["idleTimeoutSeconds"] = idle_timeout
    document: JSONObject = {"meta": meta, "spec": spec}
    if image:
        document["environment"] = {"image": image}
    return document


def open_url(client: BrokerClient, found: JSONObject) -> str:
    """The notebook's full URL through this broker."""
    return client.url.rstrip("/").removesuffix(API_PREFIX) + str(found.get("url") or "")


@notebook.command()
@click.argument("name", required=False)
@click.option("-f", "--file", "source", default=None, help="NotebookSpec in YAML or JSON; '-' for stdin.")
@click.option("-n", "--namespace", default=None, help="Namespace (team); default: your first team.")
@click.option("--resources", default=None, help="e.g. cpu=1,memory=2Gi")
@click.option("--env", multiple=True, help="KEY=VALUE environment variable (repeatable).")
@click.option("--image", default=None, help="Image, for clusters that run images.")
@click.option(
    "--idle-timeout", type=click.FloatRange(min=0), default=None, help="Seconds idle before it stops."
)
@click.option("--cluster", default=None, help="Run only on this cluster.")
@click.option("--wait", "wait_", is_flag=True, help="Then wait until it is running and print its URL.")
@click.option("--timeout", type=click.FloatRange(min=0), default=300.0, show_default=True)
@json_option
@pass_client
def create(
    client: BrokerClient,
    name: str | None,
    source: str | None,
    namespace: str | None,
    resources: str | None,
    env: tuple[str, ...],
    image: str | None,
    idle_timeout: float | None,
    cluster: str | None,
    wait_: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Create a notebook from options or a spec file; print its id, status and URL."""
    if source is not None:
        spec = load_spec(source)
    else:
        spec = spec_from_options(name, namespace, resources, env, image, idle_timeout, cluster)
    created = client.create_notebook(spec)
    notebook_id = str(created.get("notebookId"))
    if wait_:
        created = wait_running(client, notebook_id, timeout)
    if as_json:
        render.print_json(created)
        return
    click.echo(f"notebook {notebook_id} {render.dash(created.get('status'))}: {open_url(client, created)}")


def wait_running(client: BrokerClient, notebook_id: str, timeout: float) -> JSONObject:
    """Poll until the notebook runs; a timeout, a stop or a failure is an error (a failure shows the
    Jupyter server's last log lines)."""
    deadline = time.monotonic() + timeout
    found = client.get_notebook(notebook_id)
    while found.get("status") not in _SETTLED:
        if time.monotonic() >= deadline:
            raise click.ClickException(
                f"timed out after {timeout:g}s waiting for notebook {notebook_id} "
                f"(last status: {render.dash(found.get('status'))})"
            )
        time.sleep(1.0)
        found = client.get_notebook(notebook_id)
    if found.get("status") == "running":
        return found
    message = f"notebook {notebook_id} {found.get('status')}: {render.dash(found.get('reason'))}"
    if found.get("status") == "failed":
        lines = _server_lines(client, notebook_id, FAILURE_LINES)
        if lines:
            message += "\nLast log lines of the Jupyter server:\n" + "\n".join(f"  {line}" for line in lines)
    raise click.ClickException(message)


def _server_lines(client: BrokerClient, notebook_id: str, tail: int | None) -> list[str]:
    """The Jupyter server's output (its one replica's log lines); empty when it cannot be read."""
    try:
        answer = client.notebook_logs(notebook_id, tail=tail)
    except BrokerError:
        return []
    lines: list[str] = []
    for entry in answer.get("logContent") or []:
        if isinstance(entry, dict):
            raw = entry.get("podLog") or []
            lines += raw.splitlines() if isinstance(raw, str) else [str(line).rstrip("\n") for line in raw]
    return lines


def notebooks_table(items: list[JSONObject]) -> Table:
    """``notebook list``: id, name, namespace, status, why it stopped or failed, cluster, created, URL."""
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("ID", no_wrap=True, overflow="fold")
    for header in ("NAME", "NAMESPACE", "STATUS", "REASON", "CLUSTER", "CREATED", "URL"):
        table.add_column(header)
    for item in items:
        ended = item.get("status") in ("stopped", "failed")
        reason = item.get("reason") if ended else item.get("statusMessage")
        table.add_row(
            Text(render.dash(item.get("notebookId"))),
            Text(render.dash(item.get("name"))),
            Text(render.dash(item.get("namespace"))),
            render.styled(item.get("status")),
            Text(render.dash(reason)),
            Text(render.dash(item.get("cluster"))),
            Text(render.fmt_time(item.get("createdTime"))),
            Text(render.dash(item.get("url"))),
        )
    return table


@notebook.command("list")
@click.option("--status", default=None, help="Only notebooks in this status (e.g. running).")
@json_option
@pass_client
def list_(client: BrokerClient, status: str | None, as_json: bool) -> None:
    """List notebooks as a table."""
    items = client.list_notebooks(status=status)
    if as_json:
        render.print_json(items)
        return
    console = render.make_console()
    console.print(notebooks_table(items) if items else "No notebooks.")


@notebook.command()
@click.argument("notebook_ref", metavar="NOTEBOOK")
@namespace_option
@json_option
@pass_client
def get(client: BrokerClient, notebook_ref: str, namespace: str | None, as_json: bool) -> None:
    """Show one notebook: status, why it stopped or failed, URL, where it runs, and its history."""
    notebook_id = resolve(client, notebook_ref, namespace)
    found = client.get_notebook(notebook_id)
    if as_json:
        render.print_json(found)
        return
    details = render.notebook_details(found, open_url(client, found), client.notebook_events(notebook_id))
    render.make_console().print(details)


@notebook.command()
@click.argument("notebook_ref", metavar="NOTEBOOK")
@namespace_option
@click.option("--tail", type=click.IntRange(min=0), default=None, help="Only the last N lines.")
@pass_client
def logs(client: BrokerClient, notebook_ref: str, namespace: str | None, tail: int | None) -> None:
    """Print the Jupyter server's output (of its current or last run)."""
    notebook_id = resolve(client, notebook_ref, namespace)
    answer = client.notebook_logs(notebook_id, tail=tail)
    for entry in answer.get("logContent") or []:
        if isinstance(entry, dict):
            raw = entry.get("podLog") or []
            for line in raw.splitlines() if isinstance(raw, str) else raw:
                click.echo(str(line).rstrip("\n"))


@notebook.command()
@click.argument("notebook_ref", metavar="NOTEBOOK")
@namespace_option
@json_option
@pass_client
def stop(client: BrokerClient, notebook_ref: str, namespace: str | None, as_json: bool) -> None:
    """Stop the notebook's server; keep the notebook (and its files) to start again."""
    notebook_id = resolve(client, notebook_ref, namespace)
    stopped = client.stop_notebook(notebook_id)
    if as_json:
        render.print_json(stopped)
    elif stopped.get("status") == "stopped":
        click.echo(f"notebook {notebook_id} stopped")
    else:  # it ended some other way meanwhile
        click.echo(f"notebook {notebook_id} {stopped.get('status')}: {render.dash(stopped.get('reason'))}")


@notebook.command()
@click.argument("notebook_ref", metavar="NOTEBOOK")
@namespace_option
@click.option("--wait", "wait_", is_flag=True, help="Then wait until it is running and print its URL.")
@click.option("--timeout", type=click.FloatRange(min=0), default=300.0, show_default=True)
@json_option
@pass_client
def start(
    client: BrokerClient, notebook_ref: str, namespace: str | None, wait_: bool, timeout: float, as_json: bool
) -> None:
    """Start a stopped (or failed) notebook again: same id, URL and files."""
    notebook_id = resolve(client, notebook_ref, namespace)
    started = client.start_notebook(notebook_id)
    if wait_:
        started = wait_running(client, notebook_id, timeout)
    if as_json:
        render.print_json(started)
    elif wait_:
        click.echo(
            f"notebook {notebook_id} {render.dash(started.get('status'))}: {open_url(client, started)}"
        )
    else:
        click.echo(f"notebook {notebook_id} started: {render.dash(started.get('status'))}")


@notebook.command()
@click.argument("notebook_ref", metavar="NOTEBOOK")
@namespace_option
@json_option
@pass_client
def delete(client: BrokerClient, notebook_ref: str, namespace: str | None, as_json: bool) -> None:
    """Stop the notebook's server and remove the notebook (and its files); its name is free again."""
    notebook_id = resolve(client, notebook_ref, namespace)
    deleted = client.delete_notebook(notebook_id)
    if as_json:
        render.print_json(deleted)
    else:
        click.echo(f"notebook {notebook_id} deleted: {render.dash(deleted.get('status'))}")


@notebook.command("open")
@click.argument("notebook_ref", metavar="NOTEBOOK")
@namespace_option
@click.option(
    "--sign-in-link",
    "sign_in_link",
    is_flag=True,
    help="Print a one-time link that signs a browser in with your token, then opens the notebook "
    "(it works once, within a minute; the token itself is not in it).",
)
@pass_client
def open_(client: BrokerClient, notebook_ref: str, namespace: str | None, sign_in_link: bool) -> None:
    """Print the notebook's URL (through the broker); a browser not signed in is led through the
    sign-in page to it."""
    notebook_id = resolve(client, notebook_ref, namespace)
    found = client.get_notebook(notebook_id)
    if not sign_in_link:
        click.echo(open_url(client, found))
        return
    link = client.sign_in_link(str(found.get("url") or ""))
    root = client.url.rstrip("/").removesuffix(API_PREFIX)
    click.echo(root + str(link.get("url") or ""))
    click.echo(f"(works once, for {link.get('expiresInSeconds')} s)", err=True)
