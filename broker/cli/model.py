"""``submarine-broker model ...``: the model registry: list, get, versions, history, promote,
alias, tag, untag and delete, through the broker's Submarine API (``/api/v1/registered-model``,
``/api/v1/model-version``) and its history and alias extensions."""

from __future__ import annotations

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from broker.cli import render
from broker.cli.client import BrokerClient, JSONObject

pass_client = click.make_pass_decorator(BrokerClient, ensure=True)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the raw JSON result.")
version_option = click.option(
    "--version", "version", type=click.IntRange(min=1), default=None, help="A version of the model."
)
STAGE_STYLES = {"Production": "green", "Developing": "yellow", "Archived": "dim", "None": ""}


def _stage(value: object) -> Text:
    text = render.dash(value)
    return Text(text, style=STAGE_STYLES.get(text, ""))


def _joined(values: object) -> str:
    if isinstance(values, dict):
        return ", ".join(f"{k}->{v}" for k, v in values.items()) or "-"
    if isinstance(values, list):
        return ", ".join(str(v) for v in values) or "-"
    return render.dash(values)


def models_table(items: list[JSONObject]) -> Table:
    """``model list``: name, namespace, owner, aliases, tags, last change."""
    table = Table(show_edge=False, pad_edge=False)
    for header in ("NAME", "NAMESPACE", "OWNER", "ALIASES", "TAGS", "UPDATED"):
        table.add_column(header)
    for model in items:
        table.add_row(
            Text(render.dash(model.get("name"))),
            Text(render.dash(model.get("namespace"))),
            Text(render.dash(model.get("owner"))),
            Text(_joined(model.get("aliases"))),
            Text(_joined(model.get("tags"))),
            Text(render.fmt_time(model.get("lastUpdatedTime"))),
        )
    return table


def versions_table(items: list[JSONObject]) -> Table:
    """``model versions``: number, stage, aliases, type, user, source, creation, tags."""
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("VERSION", justify="right")
    for header in ("STAGE", "ALIASES", "TYPE", "USER", "SOURCE", "CREATED", "TAGS"):
        table.add_column(header)
    for version in items:
        table.add_row(
            Text(render.dash(version.get("version"))),
            _stage(version.get("currentStage")),
            Text(_joined(version.get("aliases"))),
            Text(render.dash(version.get("modelType"))),
            Text(render.dash(version.get("userId"))),
            Text(render.dash(version.get("source"))),
            Text(render.fmt_time(version.get("creationTime"))),
            Text(_joined(version.get("tags"))),
        )
    return table


def history_table(events: list[JSONObject]) -> Table:
    """``model history``: when, what, which version, who, from, to, why."""
    table = Table(show_edge=False, pad_edge=False)
    for header in ("AT", "ACTION", "VERSION", "ACTOR", "FROM", "TO", "MESSAGE"):
        table.add_column(header)
    for event in events:
        table.add_row(
            Text(render.fmt_time_ms(event.get("atMs"))),
            Text(render.dash(event.get("action"))),
            Text(render.dash(event.get("version"))),
            Text(render.dash(event.get("actor"))),
            Text(render.dash(event.get("from"))),
            Text(render.dash(event.get("to"))),
            Text(render.dash(event.get("message"))),
        )
    return table


def model_details(model: JSONObject, versions: list[JSONObject]) -> RenderableType:
    """``model get``: the model's fields, then its versions."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    rows = [
        ("Name", model.get("name")),
        ("Namespace", model.get("namespace")),
        ("Owner", model.get("owner")),
        ("Description", model.get("description")),
        ("Tags", _joined(model.get("tags"))),
        ("Aliases", _joined(model.get("aliases"))),
        ("Created", render.fmt_time(model.get("creationTime"))),
        ("Updated", render.fmt_time(model.get("lastUpdatedTime"))),
    ]
    for label, value in rows:
        grid.add_row(label, Text(render.dash(value)))
    if not versions:
        return Group(grid, Text(""), Text("No versions."))
    return Group(grid, Text(""), versions_table(versions))


def _key_value(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    if not key:
        raise click.BadParameter("KEY or KEY=VALUE with a non-empty KEY", param_hint="TAG")
    return key, value


def _done(text: str) -> None:
    render.make_console().print(Text(text))


@click.group()
def model() -> None:
    """Registered models and their versions: stages, aliases, tags and the audited history."""


@model.command("list")
@json_option
@pass_client
def list_(client: BrokerClient, as_json: bool) -> None:
    """List the models you may read."""
    found = client.list_models()
    if as_json:
        render.print_json(found)
    elif found:
        render.make_console().print(models_table(found))
    else:
        click.echo("No registered models.")


@model.command()
@click.argument("name")
@json_option
@pass_client
def get(client: BrokerClient, name: str, as_json: bool) -> None:
    """Show a model: description, tags, aliases and its versions."""
    found = client.get_model(name)
    versions = client.model_versions(name)
    if as_json:
        render.print_json({**found, "versions": versions})
    else:
        render.make_console().print(model_details(found, versions))


@model.command()
@click.argument("name")
@json_option
@pass_client
def versions(client: BrokerClient, name: str, as_json: bool) -> None:
    """List a model's versions, oldest first."""
    found = client.model_versions(name)
    if as_json:
        render.print_json(found)
    elif found:
        render.make_console().print(versions_table(found))
    else:
        click.echo(f"Model {name} has no versions.")


@model.command()
@click.argument("name")
@version_option
@json_option
@pass_client
def history(client: BrokerClient, name: str, version: int | None, as_json: bool) -> None:
    """Who changed what and when: stages, aliases, tags, renames, deletes (also of a deleted model)."""
    found = client.model_history(name, version)
    if as_json:
        render.print_json(found)
    elif found:
        render.make_console().print(history_table(found))
    else:
        click.echo("No recorded changes.")


@model.command()
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@click.argument("stage")
@click.option("-m", "--message", default="", help="Why: recorded in the history.")
@click.option(
    "--archive-existing", is_flag=True, help="Move the model's other versions in STAGE to Archived."
)
@pass_client
def promote(
    client: BrokerClient, name: str, version: int, stage: str, message: str, archive_existing: bool
) -> None:
    """Move VERSION of NAME to STAGE (None, Developing, Production or Archived)."""
    client.promote_model_version(name, version, stage, message, archive_existing)
    now = client.get_model_version(name, version)
    _done(f"{name} version {version} is now in {now.get('currentStage')}")


@model.group()
def alias() -> None:
    """Point a named alias (such as champion) at a version, or remove it."""


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version", type=click.IntRange(min=1))
@pass_client
def alias_set(client: BrokerClient, name: str, alias_name: str, version: int) -> None:
    """Point ALIAS of model NAME at VERSION (moving it from where it was)."""
    client.set_model_alias(name, alias_name, version)
    _done(f"{name}@{alias_name} -> version {version}")


@alias.command("delete")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@pass_client
def alias_delete(client: BrokerClient, name: str, alias_name: str) -> None:
    """Remove ALIAS from model NAME."""
    client.delete_model_alias(name, alias_name)
    _done(f"{name}@{alias_name} removed")


@model.command()
@click.argument("name")
@click.argument("tag", metavar="KEY[=VALUE]")
@version_option
@pass_client
def tag(client: BrokerClient, name: str, tag: str, version: int | None) -> None:
    """Set a tag on model NAME (or on one --version)."""
    key, value = _key_value(tag)
    client.set_model_tag(name, key, value, version)
    where = name if version is None else f"{name} version {version}"
    _done(f"{where}: tag {key} set")


@model.command()
@click.argument("name")
@click.argument("key")
@version_option
@pass_client
def untag(client: BrokerClient, name: str, key: str, version: int | None) -> None:
    """Remove tag KEY from model NAME (or from one --version)."""
    client.delete_model_tag(name, key, version)
    where = name if version is None else f"{name} version {version}"
    _done(f"{where}: tag {key} removed")


@model.command()
@click.argument("name")
@version_option
@pass_client
def delete(client: BrokerClient, name: str, version: int | None) -> None:
    """Delete model NAME with its versions (refused while one is in Production), or one --version.
    The history is kept."""
    if version is None:
        client.delete_model(name)
        _done(f"model {name} deleted")
    else:
        client.delete_model_version(name, version)
        _done(f"{name} version {version} deleted")
