"""``submarine-broker serve <command>``: serve registered model versions, list and show them, call
them through the broker's proxy, roll them out to another version, stop, start and delete them.
``submarine-broker serve`` without a command runs the broker itself
(:mod:`broker.cli.server_commands`); these are its subcommands."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from broker.cli import render
from broker.cli.client import BrokerClient, BrokerError, JSONObject, NotFound
from broker.cli.experiment import json_option, pass_client
from broker.cli.server_commands import serve

namespace_option = click.option(
    "-n", "--namespace", default=None, help="Namespace of a serve given by name (default: any you can see)."
)


def resolve(client: BrokerClient, ref: str, namespace: str | None) -> str:
    """The id of the serve ``ref`` names: an id, or the name of one live serve."""
    if namespace is None:
        try:
            return str(client.get_serve(ref).get("id") or ref)
        except NotFound as unknown:
            missing: NotFound = unknown
    else:
        missing = NotFound(404, f"no serve {ref} in namespace {namespace}")
    matches = [
        s for s in client.list_serves() if s.get("name") == ref and namespace in (None, s.get("namespace"))
    ]
    if not matches:
        raise missing
    if len(matches) > 1:
        listing = ", ".join(f"{s.get('id')} (namespace {s.get('namespace')})" for s in matches)
        raise BrokerError(409, f"'{ref}' names {len(matches)} serves: {listing}; give the id or -n")
    return str(matches[0].get("id"))


def _wait(
    client: BrokerClient, serve_id: str, timeout: float, done: Callable[[JSONObject], bool], what: str
) -> JSONObject:
    """Poll the serve until ``done``; its end (with no rollout to go back from) or a timeout is an error."""
    deadline = time.monotonic() + timeout
    found = client.get_serve(serve_id)
    while not done(found):
        if found.get("status") in ("Failed", "Succeeded", "Deleted") and not found.get("rollout"):
            raise click.ClickException(
                f"serve {serve_id} {found.get('status')}: {render.dash(found.get('reason'))}"
            )
        if time.monotonic() >= deadline:
            raise click.ClickException(
                f"timed out after {timeout:g}s waiting for {what} of serve {serve_id} "
                f"(last status: {render.dash(found.get('status'))})"
            )
        time.sleep(1.0)
        found = client.get_serve(serve_id)
    return found


def wait_ready(client: BrokerClient, serve_id: str, timeout: float) -> JSONObject:
    """Poll until a replica answers."""
    return _wait(client, serve_id, timeout, lambda found: bool(found.get("ready")), "a ready replica")


def wait_rolled_out(client: BrokerClient, serve_id: str, timeout: float) -> JSONObject:
    """Poll until the serve's rollout is over (switched, or gone back) and a replica answers."""
    return _wait(
        client,
        serve_id,
        timeout,
        lambda found: not found.get("rollout") and bool(found.get("ready")),
        "the rollout",
    )


def _line(found: JSONObject) -> str:
    ready = "ready" if found.get("ready") else "not ready"
    alias = f" @{found.get('alias')}" if found.get("alias") else ""
    line = (
        f"serve {found.get('id')} {found.get('name')} "
        f"({found.get('modelName')} v{found.get('modelVersion')}{alias}) "
        f"{found.get('status')}, {ready}: {found.get('url')}"
    )
    rollout = found.get("rollout")
    if isinstance(rollout, dict):
        line += f"; rolling out v{rollout.get('toVersion')}, v{rollout.get('fromVersion')} serves meanwhile"
    return line


@serve.command()
@click.argument("name")
@click.option("--model", "model", required=True, help="Registered model name.")
@click.option("--version", "version", type=click.IntRange(min=1), default=None, help="Version number.")
@click.option("--alias", default=None, help="Serve the version this alias names.")
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--resources", default=None, help="Per replica, e.g. cpu=1,memory=1Gi")
@click.option("-n", "--namespace", default=None, help="Namespace (team); default: your first team.")
@click.option("--cluster", default=None, help="Serve only on this cluster.")
@click.option(
    "--environment",
    default=None,
    help="A registered environment to serve in (notebook-env: the cluster's own Python); "
    "default: one made from the model's requirements.txt.",
)
@click.option("--wait", "wait_", is_flag=True, help="Then wait until a replica answers.")
@click.option("--timeout", type=click.FloatRange(min=0), default=300.0, show_default=True)
@json_option
@pass_client
def create(
    client: BrokerClient,
    name: str,
    model: str,
    version: int | None,
    alias: str | None,
    replicas: int,
    resources: str | None,
    namespace: str | None,
    cluster: str | None,
    environment: str | None,
    wait_: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Serve version --version (or --alias) of registered model --model as NAME."""
    if (version is None) == (alias is None):
        raise click.UsageError("give --version or --alias (one of them)")
    spec: JSONObject = {"modelName": model, "name": name, "replicas": replicas}
    spec.update({"modelVersion": version} if version is not None else {"alias": alias})
    if resources:
        spec["resources"] = resources
    if namespace:
        spec["namespace"] = namespace
    if cluster:
        spec["placement"] = {"cluster": cluster}
    if environment:
        spec["environment"] = {"name": environment}
    created = client.create_serve(spec)
    if wait_:
        created = wait_ready(client, str(created.get("id")), timeout)
    if as_json:
        render.print_json(created)
        return
    click.echo(_line(created))


@serve.command("list")
@click.option("--status", default=None, help="Only serves in this status (e.g. Running).")
@json_option
@pass_client
def list_(client: BrokerClient, status: str | None, as_json: bool) -> None:
    """List serves: id, name, namespace, model, version, status, ready, cluster, URL."""
    items = client.list_serves(status=status)
    if as_json:
        render.print_json(items)
        return
    if not items:
        render.make_console().print("No serves.")
        return
    table = Table(show_edge=False, pad_edge=False)
    for header in ("ID", "NAME", "NAMESPACE", "MODEL", "VERSION", "STATUS", "READY", "CLUSTER", "URL"):
        table.add_column(header)
    for s in items:
        table.add_row(
            Text(render.dash(s.get("id"))),
            Text(render.dash(s.get("name"))),
            Text(render.dash(s.get("namespace"))),
            Text(render.dash(s.get("modelName"))),
            Text(render.dash(s.get("modelVersion"))),
            render.styled(s.get("status")),
            Text(f"{s.get('readyReplicas', 0)}/{s.get('replicas', 1)}"),
            Text(render.dash(s.get("cluster"))),
            Text(render.dash(s.get("url"))),
        )
    render.make_console().print(table)


@serve.command()
@click.argument("serve_ref", metavar="SERVE")
@namespace_option
@json_option
@pass_client
def get(client: BrokerClient, serve_ref: str, namespace: str | None, as_json: bool) -> None:
    """Show one serve and its history."""
    serve_id = resolve(client, serve_ref, namespace)
    found = client.get_serve(serve_id)
    if as_json:
        render.print_json({**found, "events": client.serve_events(serve_id)})
        return
    click.echo(_line(found))
    if found.get("reason"):
        click.echo(f"reason: {found.get('reason')}")
    for event in client.serve_events(serve_id):
        move = event.get("to") or "note"
        click.echo(f"  {render.fmt_time(event.get('at'))}  {move:<9} {render.dash(event.get('reason'))}")


@serve.command()
@click.argument("serve_ref", metavar="SERVE")
@click.option(
    "-f", "--file", "source", required=True, help="Input JSON (MLflow scoring protocol); '-' = stdin."
)
@namespace_option
@pass_client
def predict(client: BrokerClient, serve_ref: str, source: str, namespace: str | None) -> None:
    """Send -f's JSON (``{"inputs": ...}``, ``dataframe_split``, ...) to the serve; print the answer."""
    serve_id = resolve(client, serve_ref, namespace)
    found = client.get_serve(serve_id)
    try:
        body = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise click.BadParameter(str(exc), param_hint="-f") from None
    answer = client.predict(str(found.get("url")), body, "application/json")
    if answer.status_code >= 400:
        raise click.ClickException(f"HTTP {answer.status_code}: {answer.text.strip()}")
    click.echo(answer.text.strip())


@serve.command()
@click.argument("serve_ref", metavar="SERVE")
@click.option("--version", "version", type=click.IntRange(min=1), default=None, help="Version number.")
@click.option("--alias", default=None, help="Follow this alias (re-rolled whenever it moves).")
@namespace_option
@click.option("--wait", "wait_", is_flag=True, help="Then wait until the new version serves.")
@click.option("--timeout", type=click.FloatRange(min=0), default=300.0, show_default=True)
@json_option
@pass_client
def update(
    client: BrokerClient,
    serve_ref: str,
    version: int | None,
    alias: str | None,
    namespace: str | None,
    wait_: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Roll SERVE out to another --version (or --alias) of its model: the new version's replicas
    start, requests switch to them once they all answer, then the old ones stop."""
    if (version is None) == (alias is None):
        raise click.UsageError("give --version or --alias (one of them)")
    serve_id = resolve(client, serve_ref, namespace)
    change: JSONObject = {"modelVersion": version} if version is not None else {"alias": alias}
    updated = client.update_serve(serve_id, change)
    if wait_:
        updated = wait_rolled_out(client, serve_id, timeout)
    if as_json:
        render.print_json(updated)
        return
    click.echo(_line(updated))


def _act(client: BrokerClient, serve_ref: str, namespace: str | None, action: str, as_json: bool) -> None:
    serve_id = resolve(client, serve_ref, namespace)
    done = client.delete_serve(serve_id) if action == "delete" else client.serve_action(serve_id, action)
    if as_json:
        render.print_json(done)
    else:
        click.echo(_line(done))


@serve.command()
@click.argument("serve_ref", metavar="SERVE")
@namespace_option
@json_option
@pass_client
def stop(client: BrokerClient, serve_ref: str, namespace: str | None, as_json: bool) -> None:
    """Stop the model servers; keep the serve (same id and URL) to start again."""
    _act(client, serve_ref, namespace, "stop", as_json)


@serve.command()
@click.argument("serve_ref", metavar="SERVE")
@namespace_option
@json_option
@pass_client
def start(client: BrokerClient, serve_ref: str, namespace: str | None, as_json: bool) -> None:
    """Start a stopped serve again."""
    _act(client, serve_ref, namespace, "start", as_json)


@serve.command()
@click.argument("serve_ref", metavar="SERVE")
@namespace_option
@json_option
@pass_client
def delete(client: BrokerClient, serve_ref: str, namespace: str | None, as_json: bool) -> None:
    """Stop the model servers and remove the serve."""
    _act(client, serve_ref, namespace, "delete", as_json)
