"""``submarine-broker template ...``: Submarine's experiment templates: list, get, create, delete
(``/api/v1/template``); ``experiment submit --template`` submits from one."""

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


def _spec(item: JSONObject) -> JSONObject:
    spec = item.get("experimentTemplateSpec")
    return spec if isinstance(spec, dict) else {}


def _params(spec: JSONObject) -> list[JSONObject]:
    params = spec.get("parameters")
    return [p for p in params if isinstance(p, dict)] if isinstance(params, list) else []


def templates_table(items: list[JSONObject]) -> Table:
    """``template list``: name, namespace, shared, author, parameters, description."""
    table = Table(show_edge=False, pad_edge=False)
    for header in ("NAME", "NAMESPACE", "SHARED", "AUTHOR", "PARAMETERS", "DESCRIPTION"):
        table.add_column(header)
    for item in items:
        spec = _spec(item)
        table.add_row(
            Text(render.dash(spec.get("name"))),
            Text(render.dash(spec.get("namespace"))),
            Text("yes" if spec.get("shared") else "no"),
            Text(render.dash(spec.get("author"))),
            Text(str(len(_params(spec)))),
            Text(render.dash(spec.get("description"))),
        )
    return table


def template_details(item: JSONObject) -> RenderableType:
    """``template get``: the template's fields, then its parameters."""
    spec = _spec(item)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for label, key in (("Name", "name"), ("Namespace", "namespace"), ("Author", "author")):
        grid.add_row(label, Text(render.dash(spec.get(key))))
    grid.add_row("Shared", Text("yes" if spec.get("shared") else "no"))
    grid.add_row("Description", Text(render.dash(spec.get("description"))))
    params = Table(show_edge=False, pad_edge=False)
    for header in ("PARAMETER", "REQUIRED", "DEFAULT", "DESCRIPTION"):
        params.add_column(header)
    for param in _params(spec):
        params.add_row(
            Text(render.dash(param.get("name"))),
            Text("yes" if str(param.get("required")).lower() == "true" else "no"),
            Text(render.dash(param.get("value"))),
            Text(render.dash(param.get("description"))),
        )
    return Group(grid, Text(""), params)


@click.group()
def template() -> None:
    """Experiment templates: specs with {{param}} placeholders.

    Submit an experiment from one with 'experiment submit --template NAME --param KEY=VALUE'."""


@template.command("list")
@json_option
@pass_client
def list_(client: BrokerClient, as_json: bool) -> None:
    """List the templates you may read (your teams' and the shared ones)."""
    found = client.list_templates()
    if as_json:
        render.print_json(found)
    elif not found:
        render.make_console().print("No templates.", markup=False)
    else:
        render.make_console().print(templates_table(found))


@template.command()
@click.argument("name")
@json_option
@pass_client
def get(client: BrokerClient, name: str, as_json: bool) -> None:
    """Show a template and its parameters."""
    found = client.get_template(name)
    if as_json:
        render.print_json(found)
    else:
        render.make_console().print(template_details(found))


@template.command()
@click.option(
    "-f", "--file", "source", required=True, help="ExperimentTemplateSpec in YAML or JSON; '-' for stdin."
)
@json_option
@pass_client
def create(client: BrokerClient, source: str, as_json: bool) -> None:
    """Store a template from a file."""
    created = client.create_template(load_spec(source, "ExperimentTemplateSpec"))
    if as_json:
        render.print_json(created)
    else:
        spec = _spec(created)
        click.echo(f"template {spec.get('name')} created in namespace {spec.get('namespace')}")


@template.command()
@click.argument("name")
@json_option
@pass_client
def delete(client: BrokerClient, name: str, as_json: bool) -> None:
    """Delete a template (experiments submitted from it stay)."""
    deleted = client.delete_template(name)
    if as_json:
        render.print_json(deleted)
    else:
        click.echo(f"template {name} deleted")
