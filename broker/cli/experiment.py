"""``submarine-broker experiment ...``: submit, list, get, logs, wait and delete experiments."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import yaml

from broker.cli import render
from broker.cli.client import TERMINAL_STATUSES, BrokerClient, JSONObject, NotFound

pass_client = click.make_pass_decorator(BrokerClient, ensure=True)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the raw JSON result.")
timeout_option = click.option(
    "--timeout", type=click.FloatRange(min=0), default=None, help="Give up after this many seconds (exit 2)."
)
interval_option = click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=2.0,
    show_default=True,
    help="Seconds between polls.",
)


class WaitTimeout(click.ClickException):
    """``wait`` ran out of time: exit code 2."""

    exit_code = 2


@click.group()
def experiment() -> None:
    """Submit and follow experiments."""


def load_spec(source: str) -> JSONObject:
    """Read an ExperimentSpec from a file path (``-`` = stdin); JSON or YAML, told apart by content."""
    name = "<stdin>" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text.strip():
        raise click.ClickException(f"{name} is empty: expected an ExperimentSpec in YAML or JSON")
    data: Any
    if text.lstrip()[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            try:  # a YAML flow mapping is not always valid JSON
                data = yaml.safe_load(text)
            except yaml.YAMLError:
                raise click.ClickException(f"{name} is not valid JSON: {exc}") from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            detail = " ".join(str(exc).split())
            raise click.ClickException(f"{name} is not valid YAML: {detail}") from None
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "nothing"
        raise click.ClickException(f"{name}: an ExperimentSpec must be a mapping, got {kind}")
    return data


@experiment.command()
@click.option("-f", "--file", "source", required=True, help="ExperimentSpec in YAML or JSON; '-' for stdin.")
@click.option(
    "--idempotency-key", default=None, help="Retry-safe key: the same key returns the same experiment."
)
@click.option("--wait", "wait_", is_flag=True, help="Then wait for the experiment to finish, like 'wait'.")
@timeout_option
@interval_option
@json_option
@pass_client
@click.pass_context
def submit(
    ctx: click.Context,
    client: BrokerClient,
    source: str,
    idempotency_key: str | None,
    wait_: bool,
    timeout: float | None,
    interval: float,
    as_json: bool,
) -> None:
    """Submit an experiment; print its id and status."""
    spec = load_spec(source)
    created = client.submit_experiment(spec, idempotency_key=idempotency_key)
    experiment_id = str(created.get("experimentId"))
    if as_json:
        render.print_json(created)
    else:
        click.echo(f"experiment {experiment_id} submitted: {render.dash(created.get('status'))}")
    if wait_:
        ctx.exit(wait_for(client, experiment_id, timeout, interval))


@experiment.command("list")
@click.option("--status", default=None, help="Only experiments in this status (e.g. Running).")
@click.option("--page", type=click.IntRange(min=1), default=None, help="Page number (1-based).")
@click.option("--page-size", type=click.IntRange(min=1), default=None, help="Experiments per page.")
@json_option
@pass_client
def list_(
    client: BrokerClient, status: str | None, page: int | None, page_size: int | None, as_json: bool
) -> None:
    """List experiments as a table."""
    result = client.list_experiments(status=status, page=page, page_size=page_size)
    if as_json:
        render.print_json(result.items)
        return
    console = render.make_console()
    if not result.items:
        console.print("No experiments.", markup=False)
    else:
        console.print(render.experiments_table(result.items))
    if result.total is not None and result.page_size:
        pages = max(1, -(-result.total // result.page_size))
        console.print(
            f"page {result.page or 1} of {pages}, {result.total} experiment(s) in all", markup=False
        )


@experiment.command()
@click.argument("experiment_id")
@json_option
@pass_client
def get(client: BrokerClient, experiment_id: str, as_json: bool) -> None:
    """Show one experiment, with its reason and status history."""
    found = client.get_experiment(experiment_id)
    if as_json:
        render.print_json(found)
        return
    render.make_console().print(render.experiment_details(found, client.experiment_events(experiment_id)))


@experiment.command()
@click.argument("experiment_id")
@json_option
@pass_client
def delete(client: BrokerClient, experiment_id: str, as_json: bool) -> None:
    """Delete (kill) an experiment."""
    deleted = client.delete_experiment(experiment_id)
    if as_json:
        render.print_json(deleted)
    else:
        click.echo(f"experiment {experiment_id} deleted: {render.dash(deleted.get('status'))}")


@experiment.command()
@click.argument("experiment_id")
@json_option
@pass_client
def stop(client: BrokerClient, experiment_id: str, as_json: bool) -> None:
    """Stop an experiment but keep it: it ends Failed (killed); delete removes it."""
    stopped = client.stop_experiment(experiment_id)
    if as_json:
        render.print_json(stopped)
    else:
        click.echo(f"experiment {experiment_id} stopped: {render.dash(stopped.get('status'))}")


@experiment.command()
@click.argument("experiment_id")
@timeout_option
@interval_option
@pass_client
@click.pass_context
def wait(
    ctx: click.Context, client: BrokerClient, experiment_id: str, timeout: float | None, interval: float
) -> None:
    """Wait until the experiment ends: exit 0 Succeeded, 1 Failed/Deleted, 2 timeout."""
    ctx.exit(wait_for(client, experiment_id, timeout, interval))


def _describe(experiment_id: str, found: JSONObject) -> str:
    line = f"{experiment_id} {render.dash(found.get('status'))}"
    if found.get("cluster"):
        line += f" on {found['cluster']}"
    if found.get("statusMessage"):
        line += f" ({found['statusMessage']})"
    return line


def wait_for(client: BrokerClient, experiment_id: str, timeout: float | None, interval: float) -> int:
    """Poll until terminal, showing each change; return the exit code (or raise WaitTimeout)."""
    console = render.make_console()
    deadline = None if timeout is None else time.monotonic() + timeout
    shown, found = "", client.get_experiment(experiment_id)  # NotFound here is a plain error
    status_ctx = console.status("") if console.is_terminal else contextlib.nullcontext()
    with status_ctx as spinner:
        while True:
            line = _describe(experiment_id, found)
            if line != shown:
                console.print(f"{datetime.now():%H:%M:%S} {line}", markup=False)
                shown = line
            if spinner is not None:
                spinner.update(f"waiting for {line}")
            status = found.get("status")
            if status in TERMINAL_STATUSES:
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(
                    f"timed out after {timeout:g}s waiting for experiment {experiment_id} "
                    f"(last status: {render.dash(status)})"
                )
            time.sleep(interval if remaining is None else min(interval, remaining))
            try:
                found = client.get_experiment(experiment_id)
            except NotFound:
                found = {**found, "status": "Deleted", "statusMessage": None}
    if status == "Succeeded":
        return 0
    if status == "Failed":
        reason = found.get("reason") or "no reason given"
        category = f" [{found['failureCategory']}]" if found.get("failureCategory") else ""
        console.print(f"experiment {experiment_id} failed: {reason}{category}", markup=False)
    else:
        console.print(f"experiment {experiment_id} was deleted", markup=False)
    return 1


def _pods(answer: JSONObject) -> list[tuple[str, list[str]]]:
    pods = []
    for entry in answer.get("logContent") or []:
        if not isinstance(entry, dict):
            continue
        lines = entry.get("podLog") or []
        lines = lines.splitlines() if isinstance(lines, str) else [str(line).rstrip("\n") for line in lines]
        pods.append((str(entry.get("podName") or "?"), lines))
    return pods


class _LogPrinter:
    """Prints pod log lines, each pod's only once, prefixed by the replica when several pods."""

    def __init__(self, experiment_id: str, tail: int | None) -> None:
        self.experiment_id = experiment_id
        self.tail = tail
        self.printed: dict[str, int] = {}
        self.multi = False

    def label(self, pod: str) -> str:
        prefix = f"{self.experiment_id}-"
        return pod[len(prefix) :] if pod.startswith(prefix) and len(pod) > len(prefix) else pod

    def emit(self, answer: JSONObject, first: bool) -> None:
        pods = _pods(answer)
        self.multi = self.multi or len(pods) > 1
        for pod, lines in pods:
            start = self.printed.get(pod)
            if start is None:
                start = max(0, len(lines) - self.tail) if first and self.tail is not None else 0
            elif start > len(lines):  # the pod was replaced (a new attempt): its log restarted
                start = 0
            for line in lines[start:]:
                click.echo(f"[{self.label(pod)}] {line}" if self.multi else line)
            self.printed[pod] = len(lines)


@experiment.command()
@click.argument("experiment_id")
@click.option("--replica", default=None, help="Only this replica (pod name).")
@click.option(
    "--tail", type=click.IntRange(min=0), default=None, help="Only the last N lines of each replica."
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the experiment ends.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between polls.",
)
@pass_client
def logs(
    client: BrokerClient,
    experiment_id: str,
    replica: str | None,
    tail: int | None,
    follow: bool,
    interval: float,
) -> None:
    """Print the experiment's logs (every replica, primary first)."""
    printer = _LogPrinter(experiment_id, tail)
    if not follow:
        printer.emit(client.experiment_logs(experiment_id, replica=replica, tail=tail), first=True)
        return
    first = True
    while True:
        try:  # read the status before the logs, so the last round prints the final lines
            ended = client.get_experiment(experiment_id).get("status") in TERMINAL_STATUSES
            answer = client.experiment_logs(experiment_id, replica=replica)
        except NotFound:
            if first:  # unknown id: a plain error
                raise
            return  # deleted meanwhile
        printer.emit(answer, first)
        first = False
        if ended:
            return
        time.sleep(interval)
