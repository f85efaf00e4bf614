"""Migration 0009: the environment tables, the workload's pinned environment columns, and the
default policy's environment lines given to an existing default policy (and to nobody else)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, select, text

from broker.policy_store import PolicyStore, seed_default_policy, snapshot
from broker.store.database import Database
from broker.store.migrate import alembic_config, current_revision, upgrade
from broker.store.models import PolicyRevision
from tests.registry_support import DEFAULT_POLICY, run

ENVIRONMENT_LINES = {"p, *, *, environment/*, read, allow", "p, *, *, environment/*, edit, allow"}
TABLES = {"environment", "environment_revision", "environment_build"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _at_0008(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'old.db'}" if kind == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    upgrade(database.engine, "0008")
    return database


def _old_default(tmp_path: Path) -> Path:
    lines = [line for line in DEFAULT_POLICY.read_text().splitlines() if ", environment/" not in line]
    path = tmp_path / "old-policy.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _lines(db: Database) -> set[str]:
    return {line.csv() for line in db.call(snapshot).lines}


def test_migration_0009_extends_a_default_policy_and_goes_back(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _at_0008(kind, request, tmp_path)
    try:
        seed_default_policy(db, _old_default(tmp_path))
        before = _lines(db)
        assert not before & ENVIRONMENT_LINES
        upgrade(db.engine, "0009")
        assert current_revision(db.engine) == "0009"
        assert set(inspect(db.engine).get_table_names()) >= TABLES
        columns = {c["name"] for c in inspect(db.engine).get_columns("experiment")}
        assert {"environment", "environment_hash"} <= columns
        assert _lines(db) == before | ENVIRONMENT_LINES
        # Submarine's notebook environment is there, installing nothing.
        seeded = db.call(lambda s: s.execute(text("SELECT name, revision, owner FROM environment")).all())
        assert [tuple(r) for r in seeded] == [("notebook-env", 1, "broker")]
        newest = db.call(
            lambda s: s.scalars(select(PolicyRevision).order_by(PolicyRevision.revision.desc())).first()
        )
        assert (newest.author, set(newest.added), newest.removed) == ("broker", ENVIRONMENT_LINES, [])
        assert "0009" in newest.message
        upgrade(db.engine, "0009")  # again: nothing changes
        assert db.call(lambda s: s.scalars(select(PolicyRevision.revision)).all())[-1] == newest.revision
        command.downgrade(alembic_config(db.engine), "0008")
        assert _lines(db) == before
        assert not TABLES & set(inspect(db.engine).get_table_names())
        assert "environment_hash" not in {c["name"] for c in inspect(db.engine).get_columns("experiment")}
    finally:
        db.dispose()


def test_migration_0009_leaves_an_edited_policy_alone(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _at_0008(kind, request, tmp_path)
    try:
        seed_default_policy(db, _old_default(tmp_path))
        run(PolicyStore(db).remove("root", ["p, *, *, cluster/*, read, allow"]))
        edited = _lines(db)
        upgrade(db.engine, "0009")
        assert _lines(db) == edited
    finally:
        db.dispose()


def test_migration_0009_on_a_database_never_seeded(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _at_0008(kind, request, tmp_path)
    try:
        upgrade(db.engine, "0009")
        assert _lines(db) == set()
        seed_default_policy(db, DEFAULT_POLICY)
        assert _lines(db) >= ENVIRONMENT_LINES
    finally:
        db.dispose()
