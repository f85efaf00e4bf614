"""The model registry through :class:`ModelRegistry` on SQLite and PostgreSQL: models, versions
from every kind of source, stages, aliases, tags, history, permissions, search and paging."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.store.database import Database
from tests.registry_support import World, open_database, run


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from open_database(request, tmp_path)


@pytest.fixture
def world(db: Database, tmp_path: Path) -> World:
    return World(db, tmp_path)


MODEL_FILES = {"model/MLmodel": b"flavors: {}\n", "model/model.pkl": b"\x00weights", "notes.txt": b"n"}


def test_versions_from_a_run_are_numbered_and_keep_their_lineage(world: World) -> None:
    alice = world.caller("alice")
    run_id = world.run_with("vision", MODEL_FILES, tags={"submarine.cluster": "gpu-east"})
    created = run(world.models.create_model(alice, "cats", description="finds cats"))
    assert (created.name, created.namespace, created.user_id) == ("cats", "vision", "alice")
    first = run(world.models.create_version(alice, "cats", source=f"runs:/{run_id}/model"))
    second = run(
        world.models.create_version(alice, "cats", source=f"runs:/{run_id}/model", description="again")
    )
    assert (first.version, second.version) == (1, 2)
    assert first.current_stage == "None" and first.status == "READY"
    assert first.lineage.run_id == run_id
    assert first.lineage.cluster == "gpu-east"
    assert first.lineage.tracking_experiment_id == str(world.experiment("vision"))
    assert first.download_uri == f"mlflow-artifacts:/registry/{created.model_key}/1"
    files = run(world.models.list_files(alice, created.model_key, 1, ""))
    assert [(f.path, f.is_dir, f.file_size) for f in files] == [
        ("MLmodel", False, 12),
        ("model.pkl", False, 8),
    ]
    assert world.read(alice, created.model_key, 1, "model.pkl") == b"\x00weights"
    listed = run(world.models.list_versions(alice, "cats"))
    assert [v.version for v in listed] == [1, 2]
    got = run(world.models.get_model(alice, "cats"))
    assert [v.version for v in got.latest_versions] == [2]
