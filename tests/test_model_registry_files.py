"""A version's files: copied once per content into the registry's area, readable after the source
run's artifacts are gone, removed when no version needs them, and served read-only by the
artifact API's ``registry/<model_key>/<version>`` view."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from broker.artifacts.folder import FolderStore
from broker.model_registry import files
from broker.model_registry.service import Caller
from broker.store.database import Database
from tests.artifact_contract import chunks_of, read_all
from tests.inprocess import InProcessBroker
from tests.registry_support import World, open_database, run

API = "http://broker/api/2.0/mlflow-artifacts/artifacts"


@pytest.fixture
def db(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    # The files do not depend on the database (the store tests run on both).
    yield from open_database("sqlite", request, tmp_path)


@pytest.fixture
def world(db: Database, tmp_path: Path) -> World:
    return World(db, tmp_path)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_identical_files_are_stored_once(world: World) -> None:
    alice = world.caller("alice")
    shared = b"the same weights" * 1000
    first = world.run_with("vision", {"model/w.bin": shared, "model/MLmodel": b"a"})
    second = world.run_with(
        "vision", {"model/w.bin": shared, "model/MLmodel": b"b", "model/sub/w.bin": shared}
    )
    run(world.models.create_model(alice, "cats"))
    run(world.models.create_version(alice, "cats", source=f"runs:/{first}/model"))
    run(world.models.create_version(alice, "cats", source=f"runs:/{first}/model"))
    run(world.models.create_version(alice, "cats", source=f"runs:/{second}/model"))
    assert world.blobs() == sorted({sha(shared), sha(b"a"), sha(b"b")})
    stored = world.root / "_registry" / "blobs" / sha(shared)[:2] / sha(shared)
    assert stored.read_bytes() == shared


def test_versions_survive_the_loss_of_their_source(world: World) -> None:
    alice = world.caller("alice")
    run_id = world.run_with("vision", {"model/MLmodel": b"flavors", "model/data/w.bin": b"w" * 3_000_000})
    made = run(world.models.create_model(alice, "cats"))
    run(world.models.create_version(alice, "cats", source=f"runs:/{run_id}/model"))
    shutil.rmtree(world.root / world.artifacts_of(run_id))
    assert world.read(alice, made.model_key, 1, "MLmodel") == b"flavors"
    assert world.read(alice, made.model_key, 1, "data/w.bin") == b"w" * 3_000_000
    # A version copied from that version needs no source files either.
    copied = run(world.models.create_version(alice, "cats", source="models:/cats/1"))
    assert world.read(alice, made.model_key, copied.version, "data/w.bin") == b"w" * 3_000_000


def test_deleting_versions_and_models_removes_only_unshared_blobs(world: World) -> None:
    alice = world.caller("alice")
    a = world.run_with("vision", {"model/shared": b"shared", "model/only-a": b"a"})
    b = world.run_with("vision", {"model/shared": b"shared", "model/only-b": b"b"})
    run(world.models.create_model(alice, "cats"))
    run(world.models.create_model(alice, "dogs"))
    run(world.models.create_version(alice, "cats", source=f"runs:/{a}/model"))
    run(world.models.create_version(alice, "cats", source="models:/cats/1"))
    run(world.models.create_version(alice, "dogs", source=f"runs:/{b}/model"))
    everything = sorted({sha(b"shared"), sha(b"a"), sha(b"b")})
    assert world.blobs() == everything
    run(world.models.delete_version(alice, "cats", 1))
    assert world.blobs() == everything  # version 2 still holds those files
    run(world.models.delete_model(alice, "cats"))
    assert world.blobs() == sorted({sha(b"shared"), sha(b"b")})
    run(world.models.delete_model(alice, "dogs"))
    assert world.blobs() == []


def test_listing_follows_mlflow_rules(world: World) -> None:
    alice = world.caller("alice")
    run_id = world.run_with("vision", {"m/MLmodel": b"1", "m/data/a.bin": b"22", "m/data/deep/b.bin": b"333"})
    made = run(world.models.create_model(alice, "cats"))
    run(world.models.create_version(alice, "cats", source=f"runs:/{run_id}/m"))

    def listing(path: str) -> list[tuple[str, bool, int | None]]:
        return [
            (f.path, f.is_dir, f.file_size)
            for f in run(world.models.list_files(alice, made.model_key, 1, path))
        ]

    assert listing("") == [("MLmodel", False, 1), ("data", True, None)]
    assert listing("data") == listing("data/") == [("a.bin", False, 2), ("deep", True, None)]
    assert listing("data/deep") == [("b.bin", False, 3)]
    assert listing("MLmodel") == listing("nothing") == []
    from broker.errors import BadRequest, NotFound

    with pytest.raises(NotFound, match="no file 'data'"):
        world.read(alice, made.model_key, 1, "data")
    with pytest.raises(BadRequest):
        world.read(alice, made.model_key, 1, "../escape")
    with pytest.raises(NotFound):
        run(world.models.list_files(alice, made.model_key, 9, ""))


def test_a_file_that_changes_while_copied_is_not_stored(tmp_path: Path) -> None:
    store = FolderStore(tmp_path)
    run(store.put("1/r/f", chunks_of(b"new bytes")))
    with pytest.raises(files.SourceChanged):
        run(files._copy(store, "1/r/f", sha(b"old bytes")))
    assert not run(files.has_blob(store, sha(b"old bytes")))
    assert run(store.list(f"_registry/blobs/{sha(b'old bytes')[:2]}")) == []
    found = run(files.walk(store, "1/r/f"))
    assert found == files.Found(["f"], single=True)
    stored, written = run(files.copy_in(store, "1/r/f", found))
    assert stored == [files.StoredFile("f", sha(b"new bytes"), 9)] and written == {sha(b"new bytes")}
    assert run(read_all(store, files.blob_path(sha(b"new bytes")))) == (9, b"new bytes")


def test_the_artifact_api_serves_versions_read_only(tmp_path: Path) -> None:
    broker = InProcessBroker(tmp_path)
    try:
        context = broker.context
        from broker.guard import Guard
        from broker.tracking import experiments, runs

        admin = Caller(Guard("admin", context.policy.authorizer, unrestricted=True))
        experiment_id = context.db.call(lambda s: experiments.create(s, "e", "default", "admin", []))
        run_id = context.db.call(
            lambda s: runs.create(
                s,
                experiment_id=experiment_id,
                namespace="default",
                user_id="admin",
                run_name=None,
                start_time=None,
                tags=[],
            )
        )
        base = f"{experiment_id}/{run_id}/artifacts/model"
        broker.run(context.artifacts.put(f"{base}/MLmodel", chunks_of(b"flavors")))
        broker.run(context.artifacts.put(f"{base}/data/w.bin", chunks_of(b"weights")))
        broker.run(context.models.create_model(admin, "cats"))
        made = broker.run(context.models.create_version(admin, "cats", source=f"runs:/{run_id}/model"))
        root = made.download_uri.removeprefix("mlflow-artifacts:/")
        assert root == f"registry/{made.model_key}/1"
        listed = broker.get(f"{API}", params={"path": root})
        assert listed.json() == {
            "files": [{"path": "MLmodel", "is_dir": False, "file_size": 7}, {"path": "data", "is_dir": True}]
        }
        assert broker.get(f"{API}", params={"path": f"{root}/data"}).json()["files"][0]["path"] == "w.bin"
        assert broker.get(f"{API}", params={"path": f"{root}/MLmodel"}).json() == {}
        got = broker.get(f"{API}/{root}/data/w.bin")
        assert (got.status_code, got.content) == (200, b"weights")
        for method in ("PUT", "DELETE"):
            refused = broker.request(method, f"{API}/{root}/MLmodel", content=b"x")
            assert refused.status_code == 403, refused.text
            assert refused.json()["error_code"] == "PERMISSION_DENIED"
            assert "immutable" in refused.json()["message"]
        for missing in (f"{root}/nope", f"registry/{made.model_key}/7/MLmodel", "registry/x/1/MLmodel"):
            answer = broker.get(f"{API}/{missing}")
            assert (answer.status_code, answer.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST"), (
                missing
            )
        assert broker.get(f"{API}/_registry/blobs").status_code == 404  # blobs only through a version
        assert broker.get(f"{API}/{root}/data/w.bin").content == b"weights"  # nothing was changed
    finally:
        broker.close()


def test_the_copies_work_on_s3_too(tmp_path: Path) -> None:
    """The same walk, copy-once, read and removal on the S3 backend (moto's server)."""
    import uuid

    from broker.artifacts.s3 import S3Store
    from tests.moto_s3 import moto_server, s3_client

    (tmp_path / "moto").mkdir()
    with moto_server(tmp_path / "moto") as url:
        client = s3_client(url)
        bucket = f"registry-{uuid.uuid4().hex[:12]}"
        client.create_bucket(Bucket=bucket)
        store = S3Store(bucket, prefix="broker", client=client)
        for path, data in {
            "1/r/m/MLmodel": b"m",
            "1/r/m/a/w.bin": b"w" * 2_000_000,
            "1/r/m/b/w.bin": b"w" * 2_000_000,
        }.items():
            run(store.put(path, chunks_of(data)))
        found = run(files.walk(store, "1/r/m"))
        assert found == files.Found(["MLmodel", "a/w.bin", "b/w.bin"])
        stored, written = run(files.copy_in(store, "1/r/m", found))
        assert written == {sha(b"m"), sha(b"w" * 2_000_000)}
        again, rewritten = run(files.copy_in(store, "1/r/m", found))
        assert again == stored and rewritten == set()
        run(store.delete("1/r"))
        assert run(read_all(store, files.blob_path(sha(b"m")))) == (1, b"m")
        run(files.remove_blobs(store, written))
        assert not run(files.has_blob(store, sha(b"m")))
        assert run(files.walk(store, "1/r/m/MLmodel")) == files.Found([])
