"""``submarine-broker policy ...`` and ``placement explain``: the Casbin policy and where work goes.

Each policy line is one argument (quote it: ``'p, alice, vision, cluster/gpu-*, place, allow'``);
``-f FILE`` reads one line per row, skipping blank rows and ``#`` comments (``-`` is stdin).
Every command talks REST to a broker except ``policy reset``, which acts on the database named by
``--config`` (like ``user add``), so it works when no one may edit the policy any more.

An edit the broker refuses (a bad line, or one that would leave nobody able to edit the policy)
prints ``Error: <why>`` and exits 1; an edit that changes nothing prints ``no change: ...`` and
exits 0, since the policy already is what was asked for.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from broker.cli import render
from broker.cli.client import BrokerClient, JSONObject
from broker.cli.experiment import json_option, load_spec, pass_client
from broker.cli.server_commands import _load, config_option, data_dir_option

file_option = click.option(
    "-f",
    "--file",
    "source",
    default=None,
    help="Policy lines, one per row ('#' comments and blank rows skipped); '-' for stdin.",
)
message_option = click.option(
    "-m", "--message", default="", help="Why: recorded with the revision (see 'policy revisions')."
)


def parse_policy_text(text: str) -> list[str]:
    """One policy line per row; blank rows and rows starting with ``#`` are skipped."""
    lines = []
    for row in text.splitlines():
        row = row.strip()
        if row and not row.startswith("#"):
            lines.append(row)
    return lines


def read_policy_file(source: str) -> list[str]:
    """The policy lines in a file (``-`` = stdin)."""
    name = "<stdin>" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_policy_text(text)


def gather_lines(arguments: tuple[str, ...], source: str | None) -> list[str]:
    """The lines given as arguments, then those in ``source``; at least one is required."""
    lines = [line.strip() for line in arguments if line.strip()]
    if source is not None:
        lines += read_policy_file(source)
    if not lines:
        where = f" ({source} has none)" if source is not None else ""
        raise click.UsageError(
            f"no policy lines given{where}: pass each line as one quoted argument, "
            "e.g. 'g, alice, member, vision', or use -f FILE"
        )
    return lines


def _report(result: JSONObject, as_json: bool, what: str) -> None:
    """One line saying what the edit did; an edit that changed nothing says "no change" (exit 0)."""
    if as_json:
        render.print_json(result)
        return
    count = len(result.get("lines") or [])
    noun = "line" if count == 1 else "lines"
    revision = render.dash(result.get("revision"))
    if result.get("changed") is False:
        click.echo(f"no change: policy stays at revision {revision} ({count} {noun})")
        return
    click.echo(f"{what}: policy now at revision {revision} ({count} {noun})")


@click.group()
def policy() -> None:
    """Read, edit, test and revert the access policy (Casbin lines)."""


@policy.command("list")
@json_option
@pass_client
def list_(client: BrokerClient, as_json: bool) -> None:
    """Print the live policy: its revision, then one line per row (a valid policy file)."""
    result = client.get_policy()
    if as_json:
        render.print_json(result)
        return
    for line in render.policy_lines(result):
        click.echo(line)


@policy.command()
@click.argument("lines", nargs=-1)
@file_option
@message_option
@json_option
@pass_client
def add(
    client: BrokerClient, lines: tuple[str, ...], source: str | None, message: str, as_json: bool
) -> None:
    """Add policy LINES (each one quoted argument) and/or those in -f FILE; all or none."""
    wanted = gather_lines(lines, source)
    _report(client.add_policy_lines(wanted, message), as_json, "added")


@policy.command()
@click.argument("lines", nargs=-1)
@file_option
@message_option
@json_option
@pass_client
def remove(
    client: BrokerClient, lines: tuple[str, ...], source: str | None, message: str, as_json: bool
) -> None:
    """Remove policy LINES (each one quoted argument) and/or those in -f FILE."""
    unwanted = gather_lines(lines, source)
    _report(client.remove_policy_lines(unwanted, message), as_json, "removed")


@policy.command()
@click.option(
    "-f",
    "--file",
    "source",
    required=True,
    help="The whole new policy, one line per row ('#' comments skipped); '-' for stdin.",
)
@message_option
@json_option
@pass_client
def replace(client: BrokerClient, source: str, message: str, as_json: bool) -> None:
    """Make the lines in FILE the whole policy (lines not in it are removed)."""
    lines = read_policy_file(source)
    if not lines:
        raise click.ClickException(
            f"{'<stdin>' if source == '-' else source} has no policy lines; "
            "refusing to replace the policy with nothing (that would lock everyone out)"
        )
    _report(client.replace_policy(lines, message), as_json, "policy replaced")


@policy.command("test")
@click.argument("user")
@click.argument("namespace")
@click.argument("obj", metavar="OBJECT")
@click.argument("action")
@json_option
@pass_client
def test_(client: BrokerClient, user: str, namespace: str, obj: str, action: str, as_json: bool) -> None:
    """Would the policy let USER do ACTION on OBJECT in NAMESPACE? Prints ALLOW or DENY (exit 0)."""
    answer = client.test_policy(user, namespace, obj, action)
    if as_json:
        render.print_json(answer)
    else:
        render.make_console().print(render.policy_test_result(answer))


@policy.command()
@json_option
@pass_client
def revisions(client: BrokerClient, as_json: bool) -> None:
    """List every policy revision: when, who, what changed and why."""
    items = client.policy_revisions()
    if as_json:
        render.print_json(items)
        return
    console = render.make_console()
    if not items:
        console.print("No policy revisions.", markup=False)
    else:
        console.print(render.revisions_table(items))


@policy.command()
@click.argument("revision", type=click.IntRange(min=1))
@json_option
@pass_client
def revert(client: BrokerClient, revision: int, as_json: bool) -> None:
    """Restore the policy as it was right after REVISION (recorded as a new revision)."""
    _report(client.revert_policy(revision), as_json, f"reverted to revision {revision}")


@policy.command()
@config_option
@data_dir_option
def reset(config_path: str, data_dir: str | None) -> None:
    """Offline: make broker.yaml's default_policy file the whole policy again (revision by 'recovery').

    Acts on the database itself, for the day nobody may edit the policy through the broker any more;
    running brokers enforce the result within a second. The lines it drops stay in the revision
    history ('policy revisions' shows them; add back the ones you need).
    """
    from broker.cli.admin import _with_database
    from broker.config import ConfigError
    from broker.policy_store import read_policy_file, reset_policy

    config = _load(config_path, data_dir)
    path = config.default_policy
    try:
        lines = read_policy_file(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not lines:
        raise click.ClickException(f"{path} has no policy lines; refusing to reset the policy to nothing")
    edit = _with_database(config_path, data_dir, lambda s: reset_policy(s, lines, source=path.name))
    revision, count = edit.snapshot.revision, len(edit.snapshot.lines)
    if not edit.changed:
        click.echo(f"no change: the policy is {path} already (revision {revision}, {count} lines)")
        return
    click.echo(f"policy reset to {path}: revision {revision} by recovery ({count} lines)")
    for line in edit.added:
        click.echo(f"  + {line}")
    for line in edit.removed:
        click.echo(f"  - {line}")
    click.echo(f"the lines removed are in 'submarine-broker policy revisions' (revision {revision})")
    if config.auth == "token":
        click.echo("with auth: token, an admin needs a token: submarine-broker token create <admin user>")


@click.group()
def placement() -> None:
    """Ask where work would be placed, and why."""


@placement.command()
@click.option("-f", "--file", "source", required=True, help="ExperimentSpec in YAML or JSON; '-' for stdin.")
@json_option
@pass_client
def explain(client: BrokerClient, source: str, as_json: bool) -> None:
    """Dry-run placement of a spec: every cluster's verdict, scores and the choice (nothing is submitted)."""
    result = client.explain_placement(load_spec(source))
    if as_json:
        render.print_json(result)
    else:
        render.make_console().print(render.placement_explanation(result))
