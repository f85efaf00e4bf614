"""Permissions on registered models: the ``model`` object kind and the ``promote`` action in
policy lines, a deny line named in the 403, read without edit, and migration 0008 giving the
members of an existing default policy the new model lines (and nobody else)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, select

from broker.accounts import add_user
from broker.artifacts.folder import FolderStore
from broker.guard import Forbidden, Guard
from broker.model_registry.service import Caller, ModelRegistry
from broker.policy_runtime import PolicyRuntime
from broker.policy_store import PolicyStore, seed_default_policy, snapshot
from broker.store.database import Database
from broker.store.migrate import alembic_config, current_revision, upgrade
from broker.store.models import PolicyRevision
from broker.tracking import experiments, runs
from policies.lines import PolicyLineError, parse_line
from tests.artifact_contract import chunks_of
from tests.registry_support import DEFAULT_POLICY, World, open_database, run

MODEL_LINES = [f"p, member, *, model/*, {act}, allow" for act in ("read", "edit", "promote", "delete")]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database(kind, request, tmp_path)


@pytest.fixture
def world(db: Database, tmp_path: Path) -> World:
    return World(db, tmp_path)


def test_policy_lines_know_models_and_promote() -> None:
    for good in (
        "p, lead, vision, model/*, promote, allow",
        "p, *, *, model/fraud-*, delete, deny",
        "p, alice, vision, model/cats, edit, allow",
        "p, admin, *, model, read, allow",
    ):
        assert parse_line(good).csv() == good
    for bad, reason in (
        ("p, a, v, model/cats/1, read, allow", "model objects are model/<name>"),
        ("p, a, v, models/*, read, allow", "unknown object kind 'models'"),
        ("p, a, v, model/*, promot, allow", "'promot': unknown action"),
    ):
        with pytest.raises(PolicyLineError, match=reason):
            parse_line(bad)


def test_a_deny_line_on_promote_is_named_in_the_403(world: World) -> None:
    alice = world.caller("alice")
    run_id = world.run_with("vision", {"model/MLmodel": b"m"})
    run(world.models.create_model(alice, "cats"))
    run(world.models.create_version(alice, "cats", source=f"runs:/{run_id}/model"))
    world.policy("p, amy, vision, model/*, promote, deny")
    amy = world.caller("amy")
    with pytest.raises(Forbidden) as refused:
        run(world.models.update_version(amy, "cats", 1, stage="Production"))
    assert "amy may not promote model/cats in namespace vision" in refused.value.message
    assert "denied by policy line 'p, amy, vision, model/*, promote, deny'" in refused.value.message
    assert refused.value.code == 403
    # She still reads, edits and tags; alice still promotes; and nothing moved.
    run(world.models.update_version(amy, "cats", 1, description="checked"))
    run(world.models.set_alias(amy, "cats", "candidate", 1))
    assert run(world.models.get_version(amy, "cats", 1)).current_stage == "None"
    assert (
        run(world.models.update_version(alice, "cats", 1, stage="Production")).current_stage == "Production"
    )
    assert [e.action for e in run(world.models.history(alice, "cats", 1))] == [
        "version_created",
        "description_changed",
        "alias_set",
        "stage_changed",
    ]


def test_read_without_edit_is_403_and_says_no_line_allows_it(world: World) -> None:
    alice = world.caller("alice")
    run(world.models.create_model(alice, "cats"))
    world.policy("g, bob, viewer, vision", "p, viewer, vision, model/*, read, allow")
    bob = world.caller("bob")
    assert run(world.models.get_model(bob, "cats")).name == "cats"
    for attempt in (
        world.models.update_model(bob, "cats", description="x"),
        world.models.set_model_tag(bob, "cats", "k", "v"),
        world.models.delete_model(bob, "cats"),
    ):
        with pytest.raises(Forbidden, match="no policy line allows it"):
            run(attempt)
    with pytest.raises(Forbidden, match="bob may not edit model/owls in namespace vision"):
        run(world.models.create_model(bob, "owls", namespace="vision"))
    # Only leads promote: a deny for members, an allow for the lead role.
    world.policy(
        "p, member, vision, model/*, promote, deny",
        "g, amy, lead, vision",
        "p, lead, vision, model/*, promote, allow",
    )
    run_id = world.run_with("vision", {"model/MLmodel": b"m"})
    run(world.models.create_version(alice, "cats", source=f"runs:/{run_id}/model"))
    with pytest.raises(Forbidden, match="'p, member, vision, model/\\*, promote, deny'"):
        run(world.models.update_version(world.caller("alice"), "cats", 1, stage="Production"))
    with pytest.raises(Forbidden, match="'p, member, vision, model/\\*, promote, deny'"):
        run(world.models.update_version(world.caller("amy"), "cats", 1, stage="Production"))


def _old_default(tmp_path: Path) -> Path:
    """The default policy file as it was before the registry (no model lines)."""
    lines = [line for line in DEFAULT_POLICY.read_text().splitlines() if ", model/" not in line]
    path = tmp_path / "old-policy.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _at_0007(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'old.db'}" if kind == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    upgrade(database.engine, "0007")
    return database


def _lines(db: Database) -> set[str]:
    return {line.csv() for line in db.call(snapshot).lines}


def test_migration_0008_extends_a_default_policy_and_keeps_the_data(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _at_0007(kind, request, tmp_path)
    try:
        seed_default_policy(db, _old_default(tmp_path))
        db.call(lambda s: add_user(s, "alice", teams=["vision"], admin=False, author="test"))
        experiment_id = db.call(lambda s: experiments.create(s, "old", "vision", "alice", []))
        run_id = db.call(
            lambda s: runs.create(
                s,
                experiment_id=experiment_id,
                namespace="vision",
                user_id="alice",
                run_name="before",
                start_time=None,
                tags=[],
            )
        )
        before = _lines(db)
        assert not before & set(MODEL_LINES)
        upgrade(db.engine, "0008")
        assert current_revision(db.engine) == "0008"
        assert _lines(db) == before | set(MODEL_LINES)
        newest = db.call(
            lambda s: s.scalars(select(PolicyRevision).order_by(PolicyRevision.revision.desc())).first()
        )
        assert (newest.author, sorted(newest.added), newest.removed) == ("broker", sorted(MODEL_LINES), [])
        assert "0008" in newest.message
        upgrade(db.engine, "0008")  # again: nothing changes
        assert db.call(lambda s: s.scalars(select(PolicyRevision.revision)).all())[-1] == newest.revision
        # The run from before is a source, and a member may register it.
        store = FolderStore(tmp_path / "artifacts")
        run(store.put(f"{experiment_id}/{run_id}/artifacts/model/MLmodel", chunks_of(b"m")))
        alice = Caller(Guard("alice", PolicyRuntime(db).authorizer), None, "vision")
        registry = ModelRegistry(db, store)
        made = run(registry.create_version(alice, "cats", source=f"runs:/{run_id}/model", create_model=True))
        assert (made.version, made.lineage.run_id, made.namespace) == (1, run_id, "vision")
        # Going back to 0007 takes the model lines and tables out; forward again restores them.
        command.downgrade(alembic_config(db.engine), "0007")
        assert _lines(db) == before
        assert "registry_model" not in inspect(db.engine).get_table_names()
        upgrade(db.engine)
        assert _lines(db) == before | set(MODEL_LINES)
    finally:
        db.dispose()


def test_migration_0008_leaves_an_edited_policy_alone(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _at_0007(kind, request, tmp_path)
    try:
        seed_default_policy(db, _old_default(tmp_path))
        run(PolicyStore(db).remove("root", ["p, member, *, tracking/*, write, allow"]))
        edited = _lines(db)
        upgrade(db.engine)
        assert _lines(db) == edited
    finally:
        db.dispose()


def test_migration_0008_on_a_database_never_seeded(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = _at_0007(kind, request, tmp_path)
    try:
        upgrade(db.engine)
        assert _lines(db) == set()  # the first start seeds the new default instead
        seed_default_policy(db, DEFAULT_POLICY)
        assert set(MODEL_LINES) <= _lines(db)
    finally:
        db.dispose()
