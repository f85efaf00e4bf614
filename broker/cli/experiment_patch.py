"""``submarine-broker experiment patch ID -f spec.yaml``: Submarine's patch of an experiment.

While the experiment is Accepted the file replaces its spec (checked like a submit); once it has
been dispatched only ``meta.tags`` may differ from what it runs (the broker refuses anything else
with a message naming the fields, exit 1). Kept apart from the other experiment commands.
"""

from __future__ import annotations

import click

from broker.cli import render
from broker.cli.client import BrokerClient
from broker.cli.experiment import json_option, load_spec, pass_client


@click.command()
@click.argument("experiment_id")
@click.option("-f", "--file", "source", required=True, help="ExperimentSpec in YAML or JSON; '-' for stdin.")
@json_option
@pass_client
def patch(client: BrokerClient, experiment_id: str, source: str, as_json: bool) -> None:
    """Replace an Accepted experiment's spec, or change the tags of one already dispatched."""
    patched = client.patch_experiment(experiment_id, load_spec(source))
    if as_json:
        render.print_json(patched)
        return
    tags = ", ".join(str(t) for t in (patched.get("spec") or {}).get("meta", {}).get("tags") or []) or "-"
    click.echo(f"experiment {experiment_id} patched: {render.dash(patched.get('status'))} (tags: {tags})")
