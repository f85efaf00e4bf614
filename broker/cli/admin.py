"""``submarine-broker user ...`` and ``token ...``: accounts.

``user add`` and ``token create`` act on the broker's database directly (named by ``--config``,
like ``db upgrade``), so the first admin can be made before any token exists; ``user list`` and
``user whoami`` ask a running broker over REST. ``token list`` and ``token revoke`` ask a running
broker (as the caller: their own tokens, an admin's anyone's), or with ``--offline`` act on the
database like ``token create`` (a leaked admin token can be revoked without another one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from broker.cli import render
from broker.cli.client import BrokerClient
from broker.cli.experiment import json_option, pass_client
from broker.cli.server_commands import _load, config_option, data_dir_option
from broker.config import ConfigError

T = TypeVar("T")


def _with_database(config_path: str | None, data_dir: str | None, fn: Callable[..., T]) -> T:
    """Open the configured database, migrate it, seed the default policy if it is new, then run
    ``fn(session)`` in one transaction. Refusals become ``Error: <message>`` and exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from broker.accounts import AccountError
    from broker.policy_store import seed_default_policy
    from broker.storage import open_storage

    config = _load(config_path, data_dir)
    db = None
    try:
        db, _ = open_storage(config)
        seed_default_policy(db, config.default_policy)
        return db.call(fn)
    except (AccountError, ConfigError) as exc:
        raise click.ClickException(exc.report() if isinstance(exc, ConfigError) else str(exc)) from None
    except SQLAlchemyError as exc:
        detail = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise click.ClickException(f"database error: {detail}") from None
    finally:
        if db is not None:
            db.dispose()


@click.group()
def user() -> None:
    """Add and list users."""


@user.command("add")
@click.argument("name")
@click.option(
    "--team",
    "teams",
    multiple=True,
    help="A team the user joins (repeat for several; required unless --admin).",
)
@click.option("--admin", is_flag=True, help="Also make the user an admin of the whole broker.")
@config_option
@data_dir_option
def user_add(
    name: str, teams: tuple[str, ...], admin: bool, config_path: str | None, data_dir: str | None
) -> None:
    """Create user NAME in the broker's database, with its team memberships (policy 'g' lines)."""
    from broker.accounts import add_user

    if not teams and not admin:
        raise click.UsageError("give at least one --team (or --admin for a broker-wide admin)")
    unique = list(dict.fromkeys(teams))
    added = _with_database(
        config_path,
        data_dir,
        lambda session: add_user(session, name, teams=unique, admin=admin, author="cli"),
    )
    click.echo(f"user {name} added")
    for line in added:
        click.echo(f"  policy + {line}")
    click.echo(f"next: submarine-broker token create {name}")


@user.command("list")
@json_option
@pass_client
def user_list(client: BrokerClient, as_json: bool) -> None:
    """List the users a running broker knows, with their teams."""
    items = client.list_users()
    if as_json:
        render.print_json(items)
        return
    console = render.make_console()
    if not items:
        console.print("No users.", markup=False)
    else:
        console.print(render.users_table(items))


@user.command("whoami")
@json_option
@pass_client
def user_whoami(client: BrokerClient, as_json: bool) -> None:
    """Who the broker takes this caller (--token) to be: name, teams, admin."""
    me = client.whoami()
    if as_json:
        render.print_json(me)
    else:
        render.make_console().print(render.whoami_details(me))


@click.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.argument("name")
@config_option
@data_dir_option
def token_create(name: str, config_path: str | None, data_dir: str | None) -> None:
    """Create an API token for user NAME; the token is the last line of stdout, shown only once."""
    from broker.accounts import create_token

    made = _with_database(config_path, data_dir, lambda session: create_token(session, name))
    click.echo(
        f"token {made.token_id} created for user {made.user}. It is shown only once and cannot be "
        "recovered: store it now (send it as 'Authorization: Bearer <token>' or SUBMARINE_BROKER_TOKEN).",
        err=True,
    )
    click.echo(made.token)


offline_option = click.option(
    "--offline",
    is_flag=True,
    help="Act on the database named by --config (like 'token create'), not through a broker: "
    "every user's tokens, no token needed.",
)


@token.command("list")
@click.option("--user", "user_name", default=None, help="This user's tokens (admins; --offline).")
@click.option("--all", "everyone", is_flag=True, help="Every user's tokens (admins; --offline).")
@click.option("--revoked", is_flag=True, help="Show revoked tokens too.")
@offline_option
@config_option
@data_dir_option
@json_option
@click.pass_context
def token_list(
    ctx: click.Context,
    user_name: str | None,
    everyone: bool,
    revoked: bool,
    offline: bool,
    config_path: str | None,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """List API tokens: id, what the token starts with, user, created, last used; never a secret.

    Without options, the caller's own (--token); with --offline, every user's unless --user."""
    if everyone and user_name:
        raise click.UsageError("give --user or --all, not both")
    if offline:
        from broker.accounts import list_tokens
        from broker.api.tokens import token_json

        user = None if everyone else user_name
        items = _with_database(
            config_path,
            data_dir,
            lambda session: [token_json(r) for r in list_tokens(session, user=user, revoked=revoked)],
        )
    else:
        client = ctx.ensure_object(BrokerClient)
        items = client.list_tokens(user_name, everyone, revoked)
    if as_json:
        render.print_json(items)
        return
    console = render.make_console()
    if not items:
        console.print("No tokens.", markup=False)
    else:
        console.print(render.tokens_table(items))


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@offline_option
@config_option
@data_dir_option
@click.pass_context
def token_revoke(
    ctx: click.Context, token_id: str, offline: bool, config_path: str | None, data_dir: str | None
) -> None:
    """Revoke API token ID (as 'token list' shows it, or the whole token) at once, on every broker.

    Anyone may revoke their own tokens, admins anyone's; --offline revokes any token in the database."""
    from broker.accounts import token_id_of

    wanted = token_id_of(token_id.strip())
    if offline:
        from broker.accounts import AccountError, find_token, revoke_token

        def revoke(session: Any) -> tuple[str, bool]:
            row = find_token(session, wanted)
            if row is None:
                raise AccountError(f"no token {wanted}")
            return row.user, revoke_token(session, row)

        user, changed = _with_database(config_path, data_dir, revoke)
    else:
        client = ctx.ensure_object(BrokerClient)
        found, changed = client.revoke_token(wanted)
        user = str(found.get("user") or "-")
    state = "revoked" if changed else "was revoked already"
    click.echo(f"token {wanted} of user {user} {state}")
