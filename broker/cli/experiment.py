"""``submarine-broker experiment ...``: submit, list, get, logs, wait, stop and delete experiments.

Every command that acts on one experiment takes its id or its name: a name must be unique among
the live (not deleted) experiments the caller can see, in the namespace given with ``-n`` or else
in all of them; several matches are an error listing their ids. The id is tried first (Submarine's
REST contract is by id), the name only when no experiment has that id, so an id costs no extra call.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from broker.cli import render
from broker.cli.client import TERMINAL_STATUSES, BrokerClient, BrokerError, JSONObject, NotFound

T = TypeVar("T")

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


namespace_option = click.option(
    "-n",
    "--namespace",
    default=None,
    help="Namespace of an experiment given by name (default: every namespace you can see).",
)
#: How many of the failed replica's last log lines ``get`` and ``wait`` show after a failure.
FAILURE_LINES = 10


class WaitTimeout(click.ClickException):
    """``wait`` ran out of time: exit code 2."""

    exit_code = 2


@click.group()
def experiment() -> None:
    """Submit and follow experiments."""


def load_spec(source: str, kind: str = "ExperimentSpec") -> JSONObject:
    """Read an ExperimentSpec (or another ``kind`` of document) from a file path (``-`` = stdin);
    JSON or YAML, told apart by content."""
    name = "<stdin>" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text.strip():
        raise click.ClickException(f"{name} is empty: expected an {kind} in YAML or JSON")
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
        found = type(data).__name__ if data is not None else "nothing"
        raise click.ClickException(f"{name}: an {kind} must be a mapping, got {found}")
    return data


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"'{text}' is not KEY=VALUE", param_hint="--param")
    return key, value


@experiment.command()
@click.option("-f", "--file", "source", default=None, help="ExperimentSpec in YAML or JSON; '-' for stdin.")
@click.option("--template", "template", default=None, help="Submit from this experiment template instead.")
@click.option(
    "--param", "params", multiple=True, metavar="KEY=VALUE", help="A template parameter (repeatable)."
)
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
    source: str | None,
    template: str | None,
    params: tuple[str, ...],
    idempotency_key: str | None,
    wait_: bool,
    timeout: float | None,
    interval: float,
    as_json: bool,
) -> None:
    """Submit an experiment (from a file, or from a template with its parameters); print its id
    and status."""
    if (source is None) == (template is None):
        raise click.UsageError("give either -f FILE or --template NAME")
    if template is None and params:
        raise click.UsageError("--param goes with --template")
    if template is not None:
        values = dict(_param(p) for p in params)
        created = client.submit_from_template(template, values, idempotency_key=idempotency_key)
    else:
        assert source is not None
        created = client.submit_experiment(load_spec(source), idempotency_key=idempotency_key)
    experiment_id = str(created.get("experimentId"))
    if as_json:
        render.print_json(created)
    else:
        click.echo(f"experiment {experiment_id} submitted: {render.dash(created.get('status'))}")
    if wait_:
        ctx.exit(wait_for(client, experiment_id, timeout, interval))


@experiment.command("list")
@click.option("--status", default=None, help="Only experiments in this status (e.g. Running).")
@click.option("-n", "--namespace", default=None, help="Only experiments of this namespace.")
@click.option("--page", type=click.IntRange(min=1), default=None, help="Page number (1-based).")
@click.option("--page-size", type=click.IntRange(min=1), default=None, help="Experiments per page.")
@json_option
@pass_client
def list_(
    client: BrokerClient,
    status: str | None,
    namespace: str | None,
    page: int | None,
    page_size: int | None,
    as_json: bool,
) -> None:
    """List experiments as a table: id, name, namespace, owner, status, cluster, when accepted and
    how long it ran (so far)."""
    result = client.list_experiments(status=status, page=page, page_size=page_size, namespace=namespace)
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


def _named(items: list[JSONObject], name: str, namespace: str | None) -> list[JSONObject]:
    """The experiments called ``name`` (in ``namespace``), checked here too: an older broker
    ignores the list's name filter."""
    wanted = name.strip().lower()
    return [
        item
        for item in items
        if str(render.meta_of(item).get("name") or "").lower() == wanted
        and (namespace is None or item.get("namespace") == namespace)
    ]


def resolve_name(
    client: BrokerClient, name: str, namespace: str | None, missing: NotFound, *, deleted: bool = False
) -> str:
    """The id of the one live (with ``deleted``: deleted) experiment called ``name``; ``missing``
    (the 404 of the call by id, whatever it was about: an unknown id, an unknown replica) when none
    is; an error listing the ids when several are."""
    kind = "deleted" if deleted else "live"
    page = client.list_experiments(status="Deleted" if deleted else None, name=name, namespace=namespace)
    matches = _named(page.items, name, namespace)
    where = f" in namespace {namespace}" if namespace else ""
    if not matches:
        raise missing
    if len(matches) == 1:
        return str(matches[0].get("experimentId"))
    listing = ", ".join(
        f"{item.get('experimentId')} ({render.dash(item.get('status'))}, namespace "
        f"{render.dash(item.get('namespace'))})"
        for item in matches
    )
    several = len({item.get("namespace") for item in matches}) > 1
    hint = "give the id, or the namespace with -n" if several else "give the id"
    raise BrokerError(409, f"'{name}' names {len(matches)} {kind} experiments{where}: {listing}; {hint}")


def by_ref(
    client: BrokerClient,
    ref: str,
    namespace: str | None,
    call: Callable[[str], T],
    *,
    deleted: bool = False,
) -> tuple[str, T]:
    """``call(id)`` for the experiment ``ref`` names (an id, else a name); returns ``(id, answer)``."""
    try:
        return ref, call(ref)
    except NotFound as missing:
        experiment_id = resolve_name(client, ref, namespace, missing, deleted=deleted)
    return experiment_id, call(experiment_id)


_REPLICA_IN_REASON = re.compile(r"\breplicas? ([A-Za-z0-9_.-]+?)(?=[\s:,;)]|$)")


def failure_tail(client: BrokerClient, experiment_id: str, found: JSONObject) -> tuple[str, list[str]] | None:
    """The failed replica of a Failed experiment and its last :data:`FAILURE_LINES` log lines: the
    replica the reason names (``replica worker-1 exited with code 3``), else the only one; None
    when neither tells, or the logs cannot be read."""
    if found.get("status") != "Failed":
        return None
    try:
        pods = _pods(client.experiment_logs(experiment_id, tail=FAILURE_LINES))
    except BrokerError:
        return None
    label = _LogPrinter(experiment_id, None).label
    by_replica = {label(pod): lines for pod, lines in pods}
    named = _REPLICA_IN_REASON.search(str(found.get("reason") or ""))
    if named and named.group(1) in by_replica:
        return named.group(1), by_replica[named.group(1)]
    if len(by_replica) == 1:
        return next(iter(by_replica.items()))
    return None


def print_failure_tail(console: Any, client: BrokerClient, experiment_id: str, found: JSONObject) -> None:
    """End the output of a failure with the failed replica's last log lines (see :func:`failure_tail`)."""
    tail = failure_tail(client, experiment_id, found)
    if tail is None:
        return
    replica, lines = tail
    console.print("", markup=False)
    if not lines:
        console.print(f"{replica} wrote no log lines.", markup=False)
        return
    console.print(f"Last log lines of {replica}:", markup=False)
    for line in lines:
        console.print(f"  {line}", markup=False, highlight=False)


@experiment.command()
@click.argument("experiment")
@namespace_option
@json_option
@pass_client
def get(client: BrokerClient, experiment: str, namespace: str | None, as_json: bool) -> None:
    """Show one experiment (id or name), with its reason and status history; a failure ends with
    the failed replica's last log lines."""
    experiment_id, found = by_ref(client, experiment, namespace, client.get_experiment)
    if as_json:
        render.print_json(found)
        return
    console = render.make_console()
    console.print(render.experiment_details(found, client.experiment_events(experiment_id)))
    print_failure_tail(console, client, experiment_id, found)


@experiment.command()
@click.argument("experiment")
@namespace_option
@json_option
@pass_client
def delete(client: BrokerClient, experiment: str, namespace: str | None, as_json: bool) -> None:
    """Delete an experiment (id or name): stop every replica; its record, events and logs stay
    (list --status Deleted, logs --deleted)."""
    experiment_id, deleted = by_ref(client, experiment, namespace, client.delete_experiment)
    if as_json:
        render.print_json(deleted)
    else:
        click.echo(f"experiment {experiment_id} deleted: {render.dash(deleted.get('status'))}")


@experiment.command()
@click.argument("experiment")
@namespace_option
@json_option
@pass_client
def stop(client: BrokerClient, experiment: str, namespace: str | None, as_json: bool) -> None:
    """Stop an experiment (id or name) but keep it: it ends Failed (killed); delete removes it."""
    experiment_id, stopped = by_ref(client, experiment, namespace, client.stop_experiment)
    if as_json:
        render.print_json(stopped)
    else:
        click.echo(f"experiment {experiment_id} stopped: {render.dash(stopped.get('status'))}")


@experiment.command()
@click.argument("experiment")
@namespace_option
@timeout_option
@interval_option
@pass_client
@click.pass_context
def wait(
    ctx: click.Context,
    client: BrokerClient,
    experiment: str,
    namespace: str | None,
    timeout: float | None,
    interval: float,
) -> None:
    """Wait until the experiment (id or name) ends: exit 0 Succeeded, 1 Failed/Deleted, 2 timeout.
    A failure ends with the failed replica's last log lines."""
    experiment_id, found = by_ref(client, experiment, namespace, client.get_experiment)
    ctx.exit(wait_for(client, experiment_id, timeout, interval, found=found))


def _describe(experiment_id: str, found: JSONObject) -> str:
    line = f"{experiment_id} {render.dash(found.get('status'))}"
    if found.get("cluster"):
        line += f" on {found['cluster']}"
    if found.get("statusMessage"):
        line += f" ({found['statusMessage']})"
    return line


def final_status(console: Any, experiment_id: str, found: JSONObject) -> int:
    """Say how the experiment ended; the exit code ``wait`` gives it (0 Succeeded, 1 otherwise)."""
    status = found.get("status")
    if status == "Succeeded":
        return 0
    if status == "Failed":
        reason = found.get("reason") or "no reason given"
        category = f" [{found['failureCategory']}]" if found.get("failureCategory") else ""
        console.print(f"experiment {experiment_id} failed: {reason}{category}", markup=False)
    else:
        console.print(f"experiment {experiment_id} was deleted", markup=False)
    return 1


def wait_for(
    client: BrokerClient,
    experiment_id: str,
    timeout: float | None,
    interval: float,
    *,
    found: JSONObject | None = None,
) -> int:
    """Poll until terminal, showing each change; return the exit code (or raise WaitTimeout).
    ``found``: the experiment as just read, if it was."""
    console = render.make_console()
    deadline = None if timeout is None else time.monotonic() + timeout
    shown = ""
    if found is None:
        found = client.get_experiment(experiment_id)  # NotFound here is a plain error
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
    code = final_status(console, experiment_id, found)
    print_failure_tail(console, client, experiment_id, found)
    return code


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
@click.argument("experiment")
@namespace_option
@click.option(
    "--replica", default=None, help="Only this replica: worker-1, or the podName logs show (<id>-worker-1)."
)
@click.option(
    "--tail", type=click.IntRange(min=0), default=None, help="Only the last N lines of each replica."
)
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Keep printing new lines until the experiment ends; then print how it ended (on stderr) "
    "and exit like wait: 0 Succeeded, 1 Failed or Deleted.",
)
@click.option("--deleted", is_flag=True, help="The experiment was deleted: read the logs its cluster kept.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between polls.",
)
@pass_client
@click.pass_context
def logs(
    ctx: click.Context,
    client: BrokerClient,
    experiment: str,
    namespace: str | None,
    replica: str | None,
    tail: int | None,
    follow: bool,
    deleted: bool,
    interval: float,
) -> None:
    """Print the logs of an experiment (id or name): every replica, primary first."""
    if deleted and follow:
        raise click.UsageError("--follow follows a live experiment; a deleted one has ended")
    if not follow:

        def read(experiment_id: str) -> JSONObject:
            return client.experiment_logs(experiment_id, replica=replica, tail=tail, deleted=deleted)

        experiment_id, answer = by_ref(client, experiment, namespace, read, deleted=deleted)
        _LogPrinter(experiment_id, tail).emit(answer, first=True)
        return
    # Each round reads the status before the logs, so the last round prints the final lines.
    experiment_id, found = by_ref(client, experiment, namespace, client.get_experiment)
    printer = _LogPrinter(experiment_id, tail)
    first = True
    while True:
        ended = found.get("status") in TERMINAL_STATUSES
        try:
            answer = client.experiment_logs(experiment_id, replica=replica)
        except NotFound:  # deleted meanwhile: its last lines are still there
            found = {**found, "status": "Deleted"}
            with contextlib.suppress(BrokerError):
                printer.emit(client.experiment_logs(experiment_id, replica=replica, deleted=True), first)
            break
        printer.emit(answer, first)
        first = False
        if ended:
            break
        time.sleep(interval)
        try:
            found = client.get_experiment(experiment_id)
        except NotFound:
            found = {**found, "status": "Deleted"}
    err = render.make_console(stderr=True)
    if found.get("status") == "Succeeded":
        err.print(f"experiment {experiment_id} Succeeded", markup=False)
    ctx.exit(final_status(err, experiment_id, found))
