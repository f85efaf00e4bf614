"""``experiment metrics|params`` and ``artifacts ls|get``: what an experiment's runs recorded."""

from __future__ import annotations

import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

import click
from rich.table import Table

from broker.cli import render
from broker.cli.client import TERMINAL_STATUSES, BrokerClient, JSONObject
from broker.cli.experiment import by_ref, experiment, json_option, namespace_option, pass_client


def latest_points(points: list[JSONObject]) -> list[JSONObject]:
    """The newest point per (key, replica): MLflow's rule, highest step then timestamp."""
    newest: dict[tuple[str, str], JSONObject] = {}
    for point in points:
        slot = (str(point.get("key")), str(point.get("workerIndex") or ""))
        best = newest.get(slot)
        if best is None or (point.get("step") or 0, point.get("timestamp") or 0) >= (
            best.get("step") or 0,
            best.get("timestamp") or 0,
        ):
            newest[slot] = point
    return [newest[slot] for slot in sorted(newest)]


def _value(point: JSONObject) -> str:
    return "NaN" if point.get("isNan") else render.dash(point.get("value"))


def metrics_table(points: list[JSONObject]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("KEY", "REPLICA", "STEP", "VALUE", "POINTS"):
        table.add_column(column)
    counts: dict[tuple[str, str], int] = {}
    for point in points:
        slot = (str(point.get("key")), str(point.get("workerIndex") or ""))
        counts[slot] = counts.get(slot, 0) + 1
    for point in latest_points(points):
        slot = (str(point.get("key")), str(point.get("workerIndex") or ""))
        table.add_row(
            slot[0], render.dash(slot[1] or None), str(point.get("step")), _value(point), str(counts[slot])
        )
    return table


@experiment.command()
@click.argument("experiment_ref", metavar="EXPERIMENT")
@click.option("--key", default=None, help="Only this metric.")
@click.option(
    "--follow", "-f", is_flag=True, help="Print new points as they arrive, until the experiment ends."
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between polls.",
)
@namespace_option
@json_option
@pass_client
def metrics(
    client: BrokerClient,
    experiment_ref: str,
    key: str | None,
    follow: bool,
    interval: float,
    namespace: str | None,
    as_json: bool,
) -> None:
    """The latest value of each metric per replica (all attempts), or with --follow a live tail."""
    experiment_id, points = by_ref(
        client, experiment_ref, namespace, lambda i: client.experiment_metrics(i, key)
    )
    if as_json and not follow:
        render.print_json(points)
        return
    if not follow:
        console = render.make_console()
        if not points:
            console.print(f"experiment {experiment_id} has logged no metrics yet")
            return
        console.print(metrics_table(points))
        return
    seen: set[tuple[Any, ...]] = set()
    while True:
        status = client.get_experiment(experiment_id).get("status")
        for point in sorted(points, key=lambda p: (p.get("timestamp") or 0, p.get("step") or 0)):
            slot = tuple(point.get(k) for k in ("key", "workerIndex", "step", "timestamp", "value", "isNan"))
            if slot in seen:
                continue
            seen.add(slot)
            if as_json:
                render.print_json(point)
            else:
                click.echo(
                    f"{render.fmt_time_ms(point.get('timestamp'))}  {point.get('workerIndex') or '-':<10} "
                    f"{point.get('key')}  step={point.get('step')}  {_value(point)}"
                )
        if status in TERMINAL_STATUSES:
            return
        time.sleep(interval)
        points = client.experiment_metrics(experiment_id, key)


@experiment.command()
@click.argument("experiment_ref", metavar="EXPERIMENT")
@namespace_option
@json_option
@pass_client
def params(client: BrokerClient, experiment_ref: str, namespace: str | None, as_json: bool) -> None:
    """The params the experiment's runs logged (attempt by attempt)."""
    experiment_id, found = by_ref(client, experiment_ref, namespace, client.experiment_params)
    if as_json:
        render.print_json(found)
        return
    console = render.make_console()
    if not found:
        console.print(f"experiment {experiment_id} has logged no params yet")
        return
    table = Table(box=None, header_style="bold")
    for column in ("ATTEMPT", "KEY", "VALUE"):
        table.add_column(column)
    for item in found:
        table.add_row(str(item.get("attempt") or "-"), str(item.get("key")), str(item.get("value")))
    console.print(table)


@click.group()
def artifacts() -> None:
    """List and download the files an experiment's current attempt logged (MLflow artifacts)."""


@artifacts.command("ls")
@click.argument("experiment_ref", metavar="EXPERIMENT")
@click.argument("path", required=False, default="")
@namespace_option
@json_option
@pass_client
def ls(client: BrokerClient, experiment_ref: str, path: str, namespace: str | None, as_json: bool) -> None:
    """Every artifact path (under PATH, when given), one per line."""
    _, (found, _location) = by_ref(client, experiment_ref, namespace, client.experiment_artifacts)
    prefix = path.strip("/")
    shown = [p for p in found if not prefix or p == prefix or p.startswith(prefix + "/")]
    if as_json:
        render.print_json(shown)
        return
    for item in shown:
        click.echo(item)


@artifacts.command("get")
@click.argument("experiment_ref", metavar="EXPERIMENT")
@click.argument("path")
@click.option(
    "-o", "--output", default=None, help="Where to write it ('-' for stdout; default: its name, here)."
)
@namespace_option
@pass_client
def get(
    client: BrokerClient, experiment_ref: str, path: str, output: str | None, namespace: str | None
) -> None:
    """Download the artifact PATH of the experiment's current attempt."""
    experiment_id, (_paths, location) = by_ref(client, experiment_ref, namespace, client.experiment_artifacts)
    if location is None:
        raise click.ClickException(f"experiment {experiment_id} has no run yet: it has not been dispatched")
    relative = path.strip("/")
    if not relative or ".." in PurePosixPath(relative).parts:
        raise click.BadParameter("a relative path inside the run's artifacts", param_hint="PATH")
    if output == "-":
        client.download(f"{location}/{relative}", sys.stdout.buffer)
        return
    target = Path(output or PurePosixPath(relative).name)
    partial = target.with_name(target.name + ".part")
    try:
        with partial.open("wb") as out:
            size = client.download(f"{location}/{relative}", out)
        partial.replace(target)  # never a half-downloaded file under the wanted name
    finally:
        partial.unlink(missing_ok=True)
    render.make_console(stderr=True).print(f"wrote {target} ({render.fmt_bytes(size)})")
