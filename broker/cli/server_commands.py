"""Commands that act on the broker itself: ``serve`` and ``db upgrade``."""

from __future__ import annotations

from pathlib import Path

import click

from broker.config import ConfigError, load_broker_config
from broker.config.defaults import choose_config
from broker.config.drivers import check_database_driver
from broker.config.models import BrokerConfig


def _load(config: str | None, data_dir: str | None) -> BrokerConfig:
    """The broker.yaml a command uses (``--config``, else ``$SUBMARINE_BROKER_CONFIG``, else the
    packaged default), with ``--data-dir`` applied and the database driver checked."""
    path, _ = choose_config(config)
    try:
        loaded = load_broker_config(path)
        if data_dir:
            loaded = loaded.model_copy(update={"data_dir": Path(data_dir).expanduser().resolve()})
        if loaded.database_url is not None:
            check_database_driver(loaded.database_url, str(path))
    except ConfigError as exc:
        raise click.ClickException(exc.report()) from None
    return loaded


config_option = click.option(
    "--config",
    "config_path",
    default=None,
    envvar="SUBMARINE_BROKER_CONFIG",
    help="broker.yaml to use (env SUBMARINE_BROKER_CONFIG); default: the packaged default "
    "(one local cluster on 127.0.0.1:8080, data in the user's data directory).",
)
data_dir_option = click.option("--data-dir", default=None, help="Overrides data_dir from broker.yaml.")


@click.group(invoke_without_command=True)
@config_option
@click.option("--host", default=None, help="Address to listen on (default from broker.yaml).")
@click.option("--port", type=int, default=None, help="Port to listen on (default from broker.yaml).")
@data_dir_option
@click.pass_context
def serve(
    ctx: click.Context, config_path: str | None, host: str | None, port: int | None, data_dir: str | None
) -> None:
    """Run the broker: REST API, scheduler loops and cluster adapters. With a command: served
    model versions (``serve create NAME --model M --version V``, ``list``, ``predict`` ...)."""
    if ctx.invoked_subcommand is not None:
        return  # a model-serving command (broker.cli.serve), against a running broker
    from broker.server import run

    config = _load(config_path, data_dir)
    path, packaged = choose_config(config_path)
    click.echo(
        f"config: {path}"
        + (" (the packaged default; `submarine-broker init` writes an editable copy)" if packaged else ""),
        err=True,
    )
    click.echo(f"data: {config.data_dir}", err=True)
    updates: dict[str, object] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    try:
        run(config.model_copy(update=updates))
    except ConfigError as exc:
        raise click.ClickException(exc.report()) from None


@click.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@config_option
@data_dir_option
def db_upgrade(config_path: str | None, data_dir: str | None) -> None:
    """Apply every pending migration to the configured database."""
    from broker.storage import open_storage
    from broker.store.migrate import current_revision

    config = _load(config_path, data_dir)
    try:
        db, _ = open_storage(config)
    except ConfigError as exc:
        raise click.ClickException(exc.report()) from None
    try:
        click.echo(f"database at revision {current_revision(db.engine)}")
    finally:
        db.dispose()


@db.command("reset-secret-key")
@config_option
@data_dir_option
def db_reset_secret_key(config_path: str | None, data_dir: str | None) -> None:
    """Adopt this broker's secret key when the one the database was written with is lost.

    The notebook tokens encrypted with the lost key are cleared: those notebooks cannot be opened
    until they are stopped and started again (which gives them new tokens)."""
    from broker.storage import open_storage, reset_key

    config = _load(config_path, data_dir)
    try:
        db, box = open_storage(config, verify_key=False)
    except ConfigError as exc:
        raise click.ClickException(exc.report()) from None
    try:
        cleared = db.call(lambda session: reset_key(session, box))
    finally:
        db.dispose()
    click.echo(
        f"secret key {box.source} adopted; {cleared} notebook token(s) cleared"
        + (": stop and start those notebooks to open them again" if cleared else "")
    )
