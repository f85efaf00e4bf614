"""Alembic migrations, applied programmatically (at server start and by ``submarine-broker db upgrade``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

if TYPE_CHECKING:
    from broker.secret_key import SecretBox

_HERE = Path(__file__).parent


def alembic_config(engine: Engine | None, secrets: SecretBox | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations and at ``engine``; ``secrets`` is the
    broker's key for migrations that encrypt stored values (0006)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    cfg.attributes["engine"] = engine
    cfg.attributes["secret_box"] = secrets
    return cfg


def upgrade(engine: Engine, revision: str = "head", *, secrets: SecretBox | None = None) -> None:
    """Bring the database to ``revision`` (the newest by default). ``secrets`` (the broker's key) is
    needed only when stored values must be encrypted on the way (see migration 0006)."""
    command.upgrade(alembic_config(engine, secrets), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision the packaged migrations bring a database to."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(None)).get_current_head()
    assert head is not None
    return head
