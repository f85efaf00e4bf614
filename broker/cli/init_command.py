"""``submarine-broker init [DIR]``: an editable copy of the packaged default configuration."""

from __future__ import annotations

from pathlib import Path

import click

from broker.config.defaults import INIT_DIR, TargetExists, write_copy


@click.command("init")
@click.argument("directory", default=INIT_DIR, type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite files that exist already.")
def init(directory: Path, force: bool) -> None:
    """Write broker.yaml, clusters.d/local.yaml and policy.csv (the packaged default) to DIRECTORY
    (default: ./submarine-broker), to edit and serve with --config DIRECTORY/broker.yaml."""
    try:
        written = write_copy(directory, force=force)
    except TargetExists as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {directory}: {exc.strerror}") from None
    for path in written:
        click.echo(f"wrote {path}")
    click.echo(f"next: submarine-broker serve --config {directory / 'broker.yaml'}")
