"""Migration 0011: the default policy's serve lines given to the members of an existing default
policy (and nobody else), taken out again on downgrade."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select

from broker.policy_store import PolicyStore, seed_default_policy, snapshot
from broker.store.database import Database
from broker.store.migrate import alembic_config, current_revision, upgrade
from broker.store.models import PolicyRevision
from tests.registry_support import DEFAULT_POLICY, run

SERVE_LINES = {
    f"p, member, *, serve/*, {act}, allow" for act in ("submit", "read", "logs", "kill", "delete", "invoke")
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _at_0010(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'old.db'}" if kind == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    upgrade(database.engine, "0010")
    return database


def _old_default(tmp_path: Path) -> Path:
    lines = [line for line in DEFAULT_POLICY.read_text().splitlines() if ", serve/" not in line]
    path = tmp_path / "old-policy.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _lines(db: Database) -> set[str]:
    return {line.csv() for line in db.call(snapshot).lines}


def test_migration_0011_extends_a_default_policy_and_goes_back(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _at_0010(kind, request, tmp_path)
    try:
        seed_default_policy(db, _old_default(tmp_path))
        before = _lines(db)
        assert not before & SERVE_LINES
        upgrade(db.engine, "0011")
        assert current_revision(db.engine) == "0011"
        assert _lines(db) == before | SERVE_LINES
        newest = db.call(
            lambda s: s.scalars(select(PolicyRevision).order_by(PolicyRevision.revision.desc())).first()
        )
        assert (newest.author, set(newest.added), newest.removed) == ("broker", SERVE_LINES, [])
        assert "0011" in newest.message
        command.downgrade(alembic_config(db.engine), "0010")
        assert _lines(db) == before
    finally:
        db.dispose()


def test_migration_0011_leaves_an_edited_policy_alone(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _at_0010(kind, request, tmp_path)
    try:
        seed_default_policy(db, _old_default(tmp_path))
        run(PolicyStore(db).remove("root", ["p, member, *, notebook/*, submit, allow"]))
        edited = _lines(db)
        upgrade(db.engine, "0011")
        assert _lines(db) == edited
    finally:
        db.dispose()
