"""Migration 0010: the template table, the experiment's template column, and the default
policy's template lines given to the members of an existing default policy (and nobody else)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, select

from broker.policy_store import PolicyStore, seed_default_policy, snapshot
from broker.store.database import Database
from broker.store.migrate import alembic_config, current_revision, upgrade
from broker.store.models import PolicyRevision
from tests.registry_support import DEFAULT_POLICY, run

TEMPLATE_LINES = {f"p, member, *, template/*, {act}, allow" for act in ("read", "edit", "delete")}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _at_0009(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'old.db'}" if kind == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    upgrade(database.engine, "0009")
    return database


def _old_default(tmp_path: Path) -> Path:
    lines = [line for line in DEFAULT_POLICY.read_text().splitlines() if ", template/" not in line]
    path = tmp_path / "old-policy.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _lines(db: Database) -> set[str]:
    return {line.csv() for line in db.call(snapshot).lines}


def test_migration_0010_extends_a_default_policy_and_goes_back(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _at_0009(kind, request, tmp_path)
    try:
        seed_default_policy(db, _old_default(tmp_path))
        before = _lines(db)
        assert not before & TEMPLATE_LINES
        upgrade(db.engine, "0010")
        assert current_revision(db.engine) == "0010"
        assert "experiment_template" in inspect(db.engine).get_table_names()
        assert "template" in {c["name"] for c in inspect(db.engine).get_columns("experiment")}
        assert _lines(db) == before | TEMPLATE_LINES
        newest = db.call(
            lambda s: s.scalars(select(PolicyRevision).order_by(PolicyRevision.revision.desc())).first()
        )
        assert (newest.author, set(newest.added), newest.removed) == ("broker", TEMPLATE_LINES, [])
        assert "0010" in newest.message
        upgrade(db.engine, "0010")  # again: nothing changes
        assert db.call(lambda s: s.scalars(select(PolicyRevision.revision)).all())[-1] == newest.revision
        command.downgrade(alembic_config(db.engine), "0009")
        assert _lines(db) == before
        assert "experiment_template" not in inspect(db.engine).get_table_names()
        assert "template" not in {c["name"] for c in inspect(db.engine).get_columns("experiment")}
    finally:
        db.dispose()


def test_migration_0010_leaves_an_edited_policy_alone(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _at_0009(kind, request, tmp_path)
    try:
        seed_default_policy(db, _old_default(tmp_path))
        run(PolicyStore(db).remove("root", ["p, member, *, tracking/*, write, allow"]))
        edited = _lines(db)
        upgrade(db.engine, "0010")
        assert _lines(db) == edited
    finally:
        db.dispose()


def test_migration_0010_on_a_database_never_seeded(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _at_0009(kind, request, tmp_path)
    try:
        upgrade(db.engine, "0010")
        assert _lines(db) == set()
        seed_default_policy(db, DEFAULT_POLICY)
        assert _lines(db) >= TEMPLATE_LINES
    finally:
        db.dispose()
