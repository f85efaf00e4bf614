"""Rich tables and small formatters for the CLI. Every server-supplied string is rendered as
plain text (never as Rich markup), and output stays free of colour when stdout is not a tty."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from broker.cli.client import JSONObject

STATUS_STYLES = {
    "Accepted": "cyan",
    "Created": "blue",
    "Running": "yellow",
    "Succeeded": "green",
    "Failed": "red",
    "Deleted": "dim",
    "waiting": "cyan",
    "creating": "blue",
    "running": "green",
    "stopped": "dim",
    "failed": "red",
    "terminating": "dim",
    "Ready": "green",
    "Unreachable": "red",
    "NotReady": "red",
    "Cordoned": "yellow",
    "Draining": "magenta",
    "Unknown": "dim",
}
_WIDE = 200


def make_console(stderr: bool = False) -> Console:
    """A console on the *current* sys.stdout/stderr; wide when not a terminal so tables don't wrap."""
    stream = sys.stderr if stderr else sys.stdout
    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    width = None if is_tty or os.environ.get("COLUMNS") else _WIDE
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def error_text(message: str, problems: list[JSONObject]) -> str:
    """A refusal for the terminal: the message, or with several problems one line per problem.

    ``Invalid experiment spec (2 problems):`` then ``  meta.foo: unknown field`` and so on; the
    server's message lists them in one line, joined by ``;``.
    """
    if len(problems) < 2:
        return message
    first = f"{problems[0].get('field')}: "
    header = message.split(first, 1)[0].rstrip(": ") if first in message else message
    lines = [f"  {p.get('field')}: {p.get('problem')}" for p in problems]
    return "\n".join([f"{header or 'Refused'} ({len(problems)} problems):", *lines])


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (the ``--json`` flag)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def dash(value: object) -> str:
    """``None``/empty → ``-``; anything else → ``str``."""
    return "-" if value is None or value == "" else str(value)


def fmt_time(value: object) -> str:
    """``2026-11-29T12:00:00Z`` → ``2026-11-29 12:00:00Z`` (UTC); unparsable values shown as given."""
    if not isinstance(value, str) or not value:
        return dash(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return parsed.strftime("%Y-%m-%d %H:%M:%S")


def fmt_time_ms(value: object) -> str:
    """Epoch milliseconds (MLflow's times) as ``2026-11-29 12:00:00.123Z``."""
    if not isinstance(value, int) or isinstance(value, bool):
        return dash(value)
    stamp = datetime.fromtimestamp(value / 1000, UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{value % 1000:03d}Z"


def fmt_bytes(value: object) -> str:
    """Bytes in binary units: ``1610612736`` → ``1.5Gi``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return dash(value)
    size = float(value)
    if abs(size) < 1024:
        return f"{size:.0f}B"
    units = ("Ki", "Mi", "Gi", "Ti", "Pi")
    index = -1
    while index < len(units) - 1 and (index < 0 or abs(size) >= 1024):
        size /= 1024
        index += 1
    return f"{size:.1f}".rstrip("0").rstrip(".") + units[index]


def fmt_number(value: object) -> str:
    """``4.0`` → ``4``, ``3.5`` → ``3.5``; ``None`` → ``-``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return dash(value)


def styled(value: object) -> Text:
    """A status (experiment or cluster state) coloured by its meaning."""
    text = dash(value)
    return Text(text, style=STATUS_STYLES.get(text, ""))


def meta_of(experiment: JSONObject) -> JSONObject:
    """``spec.meta`` of an experiment or notebook (empty when absent)."""
    spec = experiment.get("spec")
    meta = spec.get("meta") if isinstance(spec, dict) else None
    return meta if isinstance(meta, dict) else {}


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fmt_seconds(seconds: float) -> str:
    """``42`` → ``42s``, ``185`` → ``3m05s``, ``7384`` → ``2h03m``, ``90000`` → ``1d01h``."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def fmt_duration(experiment: JSONObject, at: datetime | None = None) -> str:
    """How long the experiment has run: from running (else created) to finished, or to ``at``
    (now) while it runs; ``-`` before it started or when it ended without starting."""
    started = _parse_time(experiment.get("runningTime")) or _parse_time(experiment.get("createdTime"))
    if started is None:
        return "-"
    ended = _parse_time(experiment.get("finishedTime"))
    if ended is None:
        if experiment.get("status") in ("Succeeded", "Failed", "Deleted"):
            return "-"  # deleted before it finished: no end time to count to
        ended = at or datetime.now(UTC)
    return fmt_seconds((ended - started).total_seconds())


def experiments_table(items: list[JSONObject]) -> Table:
    """``experiment list``: id, name, namespace, owner, framework, status, cluster, accepted, duration."""
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("ID", no_wrap=True, overflow="fold")
    for header in ("NAME", "NAMESPACE", "OWNER", "FRAMEWORK", "STATUS", "CLUSTER", "ACCEPTED"):
        table.add_column(header)
    table.add_column("DURATION", justify="right")
    now = datetime.now(UTC)
    for exp in items:
        meta = meta_of(exp)
        table.add_row(
            Text(dash(exp.get("experimentId"))),
            Text(dash(meta.get("name"))),
            Text(dash(exp.get("namespace") or meta.get("namespace"))),
            Text(dash(exp.get("owner"))),
            Text(dash(meta.get("framework"))),
            styled(exp.get("status")),
            Text(dash(exp.get("cluster"))),
            Text(fmt_time(exp.get("acceptedTime"))),
            Text(fmt_duration(exp, now)),
        )
    return table


def _fields(rows: list[tuple[str, object]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, value if isinstance(value, Text) else Text(dash(value)))
    return grid


def _replicas(experiment: JSONObject) -> str:
    spec = experiment.get("spec")
    roles = spec.get("spec") if isinstance(spec, dict) else None
    if not isinstance(roles, dict):
        return "-"
    parts = []
    for role, task in roles.items():
        if isinstance(task, dict):
            parts.append(f"{role} x{task.get('replicas', 1)} ({dash(task.get('resources'))})")
    return ", ".join(parts) or "-"


def experiment_details(experiment: JSONObject, events: list[JSONObject]) -> RenderableType:
    """``experiment get``: the key facts, the failure reason if any, then the events table."""
    meta = meta_of(experiment)
    rows: list[tuple[str, object]] = [
        ("ID", experiment.get("experimentId")),
        ("Name", meta.get("name")),
        ("Namespace", experiment.get("namespace") or meta.get("namespace")),
        ("Owner", experiment.get("owner")),
        ("Framework", meta.get("framework")),
        ("Command", meta.get("cmd")),
        ("Replicas", _replicas(experiment)),
        ("Status", styled(experiment.get("status"))),
        ("Cluster", experiment.get("cluster")),
        ("Attempt", experiment.get("attempt")),
    ]
    template = experiment.get("template")
    if isinstance(template, dict):
        params = template.get("params") or {}
        given = ", ".join(f"{k}={v}" for k, v in params.items()) if isinstance(params, dict) else ""
        rows.append(("Template", f"{template.get('name')}" + (f" ({given})" if given else "")))
    for label, key in (("Waiting", "statusMessage"), ("Reason", "reason"), ("Failure", "failureCategory")):
        if experiment.get(key):
            rows.append((label, experiment.get(key)))
    for label, key in (
        ("Accepted", "acceptedTime"),
        ("Created", "createdTime"),
        ("Running", "runningTime"),
        ("Finished", "finishedTime"),
    ):
        rows.append((label, fmt_time(experiment.get(key))))
    return Group(_fields(rows), Text(""), events_table(events))


def events_table(events: list[JSONObject]) -> RenderableType:
    """The history under ``experiment get`` and ``notebook get``: time, from, to, attempt, reason."""
    if not events:
        return Text("No events.")
    table = Table(title="Events", title_justify="left", show_edge=False, pad_edge=False)
    for header in ("AT", "FROM", "TO", "ATTEMPT", "REASON"):
        table.add_column(header)
    for event in events:
        table.add_row(
            Text(fmt_time(event.get("at"))),
            styled(event.get("from")),
            styled(event.get("to")),
            Text(dash(event.get("attempt"))),
            Text(dash(event.get("reason"))),
        )
    return table


def notebook_details(notebook: JSONObject, url: str, events: list[JSONObject]) -> RenderableType:
    """``notebook get``, laid out like ``experiment get``: the key facts, why it stopped or failed,
    then the events table. ``url`` is where it opens through the broker."""

    def mapping(value: object) -> JSONObject:
        return value if isinstance(value, dict) else {}

    spec = mapping(notebook.get("spec"))
    pod, environment = mapping(spec.get("spec")), mapping(spec.get("environment"))
    idle = pod.get("idleTimeoutSeconds")
    rows: list[tuple[str, object]] = [
        ("ID", notebook.get("notebookId")),
        ("Name", notebook.get("name")),
        ("Namespace", notebook.get("namespace")),
        ("Owner", notebook.get("owner")),
        ("Status", styled(notebook.get("status"))),
        ("URL", url),
        ("Cluster", notebook.get("cluster")),
        ("Attempt", notebook.get("attempt")),
        ("Resources", pod.get("resources")),
        ("Image", environment.get("image")),
        ("Idle timeout", f"{fmt_number(idle)}s" if idle is not None else "broker default"),
    ]
    if notebook.get("statusMessage"):
        rows.append(("Waiting", notebook.get("statusMessage")))
    if notebook.get("status") in ("stopped", "failed"):
        rows.append(("Reason", notebook.get("reason")))
        rows.append(("Failure", notebook.get("failureCategory")))
    rows.append(("Created", fmt_time(notebook.get("createdTime"))))
    rows.append(("Last activity", fmt_time(notebook.get("lastActivity"))))
    return Group(_fields(rows), Text(""), events_table(events))


def _capacity(cluster: JSONObject) -> tuple[JSONObject, JSONObject]:
    capacity = cluster.get("capacity")
    capacity = capacity if isinstance(capacity, dict) else {}
    total, free = capacity.get("total"), capacity.get("free")
    return (total if isinstance(total, dict) else {}), (free if isinstance(free, dict) else {})


def _free_total(cluster: JSONObject, resource: str, fmt: Any) -> str:
    total, free = _capacity(cluster)
    return f"{fmt(free.get(resource))}/{fmt(total.get(resource))}"


def fmt_labels(labels: object) -> str:
    """``{"zone": "a", "gpu": "t4"}`` → ``gpu=t4,zone=a``."""
    if not isinstance(labels, dict) or not labels:
        return "-"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _flags(cluster: JSONObject) -> list[str]:
    """The admin flags and removal not already said by the state."""
    state = cluster.get("state")
    flags = [flag for flag in ("cordoned", "draining", "removed") if cluster.get(flag) is True]
    if state == "Cordoned":
        flags = [f for f in flags if f != "cordoned"]
    if state == "Draining":
        flags = [f for f in flags if f not in ("draining", "removed")] + (
            ["file removed"] if cluster.get("removed") is True else []
        )
    return flags


def drain_progress(cluster: JSONObject) -> str | None:
    """For a draining cluster: ``draining: 3 running`` (its workloads still there) or ``drained:
    empty, safe to remove``; None for any other cluster, or a server that does not count."""
    if cluster.get("state") != "Draining" and cluster.get("draining") is not True:
        return None
    if cluster.get("drained") is True:
        return "drained: empty, safe to remove"
    held = cluster.get("workloads")
    return f"draining: {held} running" if isinstance(held, int) else None


def cluster_state(cluster: JSONObject) -> Text:
    """``Unreachable since 2026-11-29 12:00:01Z (3 failed checks)``, ``Ready (cordoned)``,
    ``Draining (draining: 2 running)``, ``Draining (drained: empty, safe to remove)``..."""
    text = styled(cluster.get("state"))
    if cluster.get("state") == "Unreachable":
        text.append(f" since {fmt_time(cluster.get('unreachableSince'))}")
        failed = cluster.get("failedChecks")
        if isinstance(failed, int) and failed > 0:
            text.append(f" ({failed} failed check{'s' if failed != 1 else ''})")
    flags = _flags(cluster)
    progress = drain_progress(cluster)
    if progress:
        flags.append(progress)
    if flags:
        text.append(f" ({', '.join(flags)})")
    return text


def cluster_changed(done: str, cluster: JSONObject) -> Text:
    """``cluster local cordoned: Cordoned`` after an admin verb."""
    return Text(f"cluster {dash(cluster.get('name'))} {done}: ") + cluster_state(cluster)


def clusters_table(items: list[JSONObject]) -> Table:
    """``cluster list``: name, kind, state (since when, if unreachable), cpu/memory/gpu free/total,
    running, labels."""
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("NAME", no_wrap=True, overflow="fold")
    for header in (
        "KIND",
        "STATE",
        "CPU FREE/TOTAL",
        "MEMORY FREE/TOTAL",
        "GPU FREE/TOTAL",
        "RUNNING",
        "LABELS",
    ):
        table.add_column(header)
    for cluster in items:
        table.add_row(
            Text(dash(cluster.get("name"))),
            Text(dash(cluster.get("kind"))),
            cluster_state(cluster),
            Text(_free_total(cluster, "cpu", fmt_number)),
            Text(_free_total(cluster, "memory", fmt_bytes)),
            Text(_free_total(cluster, "gpu", fmt_number)),
            Text(dash(cluster.get("running"))),
            Text(fmt_labels(cluster.get("labels"))),
        )
    return table


def _yes_no(value: object) -> str:
    return "yes" if value is True else "no" if value is False else dash(value)


def _located(problem: JSONObject) -> str:
    """``line 3, column 8: key: reason`` (the parts the server gave)."""
    where = ""
    if problem.get("line") is not None:
        where = f"line {problem.get('line')}"
        if problem.get("column") is not None:
            where += f", column {problem.get('column')}"
    key = problem.get("key")
    text = f"{key}: {dash(problem.get('reason'))}" if key else dash(problem.get("reason"))
    return f"{where}: {text}" if where else text


def config_error(error: object) -> str:
    """``file:line: key: reason``, or the file and one indented line per problem when there are
    several (the server never puts a value from the file in them)."""
    if not isinstance(error, dict):
        return dash(error)
    problems = [p for p in error.get("problems") or [] if isinstance(p, dict)]
    if len(problems) > 1:
        lines = [f"    {_located(p)}" for p in problems]
        return "\n".join([f"{dash(error.get('file'))}: {len(problems)} problems:", *lines])
    where = dash(error.get("file"))
    if error.get("line") is not None:
        where += f":{error.get('line')}"
        if error.get("column") is not None:
            where += f":{error.get('column')}"
    key = error.get("key")
    return f"{where}: {key}: {dash(error.get('reason'))}" if key else f"{where}: {dash(error.get('reason'))}"


def _config_lines(config: object) -> str:
    if not isinstance(config, dict) or not config:
        return "-"
    return "\n".join(f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in config.items())


def cluster_details(cluster: JSONObject) -> RenderableType:
    """``cluster get``: every field of one cluster, secrets masked by the server."""
    rows: list[tuple[str, object]] = [
        ("Name", cluster.get("name")),
        ("Kind", cluster.get("kind")),
        ("State", cluster_state(cluster)),
        ("Message", cluster.get("message")),
        ("Reachable", _yes_no(cluster.get("reachable"))),
        ("Unreachable since", fmt_time(cluster.get("unreachableSince"))),
        ("Failed checks", cluster.get("failedChecks")),
        ("Next check", fmt_time(cluster.get("nextCheck"))),
        ("Last check", fmt_time(cluster.get("lastCheck"))),
        ("Cordoned", _yes_no(cluster.get("cordoned"))),
        ("Draining", _yes_no(cluster.get("draining"))),
        ("File removed", _yes_no(cluster.get("removed"))),
        ("Weight", fmt_number(cluster.get("weight"))),
        ("Labels", fmt_labels(cluster.get("labels"))),
        ("Capabilities", ", ".join(_strings(cluster.get("capabilities"))) or "-"),
        ("CPU free/total", _free_total(cluster, "cpu", fmt_number)),
        ("Memory free/total", _free_total(cluster, "memory", fmt_bytes)),
        ("GPU free/total", _free_total(cluster, "gpu", fmt_number)),
        ("Running", cluster.get("running")),
        ("Workloads (this broker)", cluster.get("workloads")),
        ("Source", cluster.get("source")),
    ]
    if cluster.get("configError"):
        refusal = config_error(cluster.get("configError"))
        note = "(last good config in use)"
        rows.append(("Config error", f"{refusal}\n{note}" if "\n" in refusal else f"{refusal} {note}"))
    rows.append(("Config", _config_lines(cluster.get("config"))))
    return _fields(rows)


def config_errors(errors: list[JSONObject]) -> RenderableType:
    """The refused cluster files, one line each."""
    lines = [f"  {line}" for error in errors for line in config_error(error).splitlines()]
    return Group(Text("Refused cluster files:", style="bold red"), *(Text(line) for line in lines))


# ---------------------------------------------------------------------------- users and policy
def _strings(value: object) -> list[str]:
    """A JSON list of strings (anything else in it shown as text); not a list → empty."""
    return [str(item) for item in value] if isinstance(value, list) else []


def users_table(items: list[JSONObject]) -> Table:
    """``user list``: name, teams, created."""
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("NAME", no_wrap=True, overflow="fold")
    table.add_column("TEAMS")
    table.add_column("CREATED")
    for user in items:
        table.add_row(
            Text(dash(user.get("name"))),
            Text(", ".join(_strings(user.get("teams"))) or "-"),
            Text(fmt_time(user.get("createdTime"))),
        )
    return table


def tokens_table(items: list[JSONObject]) -> Table:
    """``token list``: id, the text the token starts with, user, created, last used (and revoked,
    when any listed token is)."""
    revoked = any(item.get("revokedTime") for item in items)
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("ID", no_wrap=True)
    table.add_column("STARTS WITH", no_wrap=True)
    table.add_column("USER", no_wrap=True, overflow="fold")
    table.add_column("CREATED")
    table.add_column("LAST USED")
    if revoked:
        table.add_column("REVOKED")
    for item in items:
        row = [
            Text(dash(item.get("id"))),
            Text(dash(item.get("prefix"))),
            Text(dash(item.get("user"))),
            Text(fmt_time(item.get("createdTime"))),
            Text(fmt_time(item.get("lastUsedTime"))),
        ]
        table.add_row(*row, *([Text(fmt_time(item.get("revokedTime")))] if revoked else []))
    return table


def whoami_details(me: JSONObject) -> RenderableType:
    """``user whoami``: name, teams and whether the caller is an admin."""
    admin = me.get("admin")
    return _fields(
        [
            ("Name", me.get("name")),
            ("Teams", ", ".join(_strings(me.get("teams"))) or "-"),
            ("Admin", "yes" if admin is True else "no" if admin is False else dash(admin)),
        ]
    )


def policy_lines(policy: JSONObject) -> list[str]:
    """``policy list``: a ``#`` header naming the revision, then one line per policy line, so the
    output is itself a policy file (``policy list > p.csv`` then ``policy replace -f p.csv``)."""
    lines = _strings(policy.get("lines"))
    count = f"{len(lines)} line" + ("" if len(lines) == 1 else "s")
    return [f"# policy revision {dash(policy.get('revision'))} ({count})", *lines]


def policy_test_result(answer: JSONObject) -> RenderableType:
    """``policy test``: ALLOW or DENY for the request tuple, then the line(s) that decided it."""
    allowed = answer.get("allowed") is True
    verdict = Text("ALLOW" if allowed else "DENY", style="bold green" if allowed else "bold red")
    asked = " ".join(dash(answer.get(key)) for key in ("user", "namespace", "object", "action"))
    head = Text.assemble(verdict, "  ", asked, f"  (policy revision {dash(answer.get('revision'))})")
    matched = _strings(answer.get("matched"))
    if not matched:
        reason = "no policy line matches: denied by default" if not allowed else "no matched line reported"
        return Group(head, Text(reason))
    return Group(head, Text("matched:"), *(Text(f"  {line}") for line in matched))


def revisions_table(items: list[JSONObject]) -> Table:
    """``policy revisions``: revision, time, author, the lines added (+) and removed (-), message."""
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("REVISION", justify="right", no_wrap=True)
    for header in ("AT", "AUTHOR", "CHANGES", "MESSAGE"):
        table.add_column(header)
    for item in items:
        changes = [f"+ {line}" for line in _strings(item.get("added"))]
        changes += [f"- {line}" for line in _strings(item.get("removed"))]
        table.add_row(
            Text(dash(item.get("revision"))),
            Text(fmt_time(item.get("at"))),
            Text(dash(item.get("author"))),
            Text("\n".join(changes) or "(no change)"),
            Text(dash(item.get("message"))),
        )
    return table


def _scores(value: object) -> str:
    if not isinstance(value, dict) or not value:
        return "-"
    return " ".join(f"{name}={fmt_number(score)}" for name, score in value.items())


def verdict_reasons(verdict: JSONObject) -> list[str]:
    """Why a cluster is not eligible: each failing filter as ``name: reason``, then any other reason
    the server gave that the filters did not already say."""
    shown: list[str] = []
    said: set[str] = set()
    for check in verdict.get("filters") or []:
        if not isinstance(check, dict) or check.get("passed") is not False:
            continue
        reason = check.get("reason")
        name = dash(check.get("name"))
        shown.append(f"{name}: {reason}" if reason else f"{name}: failed")
        if reason:
            said.add(str(reason))
    shown += [reason for reason in _strings(verdict.get("reasons")) if reason not in said]
    return shown


def placement_explanation(result: JSONObject) -> RenderableType:
    """``placement explain``: one row per cluster (server order, best first) with eligibility,
    score, the per-scorer breakdown and the failing filters' reasons; then the outcome."""
    head = Text(f"namespace {dash(result.get('namespace'))}, policy revision {dash(result.get('revision'))}")
    verdicts = [v for v in result.get("verdicts") or [] if isinstance(v, dict)]
    parts: list[RenderableType] = [head]
    if verdicts:
        table = Table(show_edge=False, pad_edge=False)
        table.add_column("CLUSTER", no_wrap=True, overflow="fold")
        table.add_column("ELIGIBLE", justify="center")
        table.add_column("SCORE", justify="right")
        table.add_column("SCORES")
        table.add_column("REASONS")
        for verdict in verdicts:
            eligible = verdict.get("eligible") is True
            table.add_row(
                Text(dash(verdict.get("cluster"))),
                Text("✓", style="green") if eligible else Text("✗", style="red"),
                Text(fmt_number(verdict.get("score")) if eligible else "-"),
                Text(_scores(verdict.get("scores")) if eligible else "-"),
                Text("\n".join(verdict_reasons(verdict)) or "-"),
            )
        parts.append(table)
    else:
        parts.append(Text("No clusters are registered."))
    chosen = result.get("chosen")
    if chosen:
        outcome = Text.assemble("would be placed on ", (str(chosen), "bold green"))
    elif result.get("neverFits"):
        why = result.get("rejection") or result.get("summary") or "no reason given"
        outcome = Text.assemble(("can never run: ", "bold red"), str(why))
    else:
        outcome = Text.assemble(("would wait: ", "bold yellow"), dash(result.get("summary")))
    parts.append(outcome)
    return Group(*parts)
