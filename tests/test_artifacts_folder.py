"""The folder artifact backend: the store contract, atomic replacement, and paths kept inside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from broker.artifacts.folder import FolderStore
from broker.artifacts.store import ArtifactNotFound, InvalidArtifactPath, clean_path
from tests.artifact_contract import (
    BAD_PATHS,
    chunks_of,
    failed_upload_leaves_nothing,
    large_file_round_trip,
    missing_and_folders_are_not_files,
    names,
    put_open_list_delete,
    read_all,
    run,
)


@pytest.fixture
def store(tmp_path: Path) -> FolderStore:
    return FolderStore(tmp_path / "artifacts")


def test_put_open_list_delete(store: FolderStore) -> None:
    run(put_open_list_delete(store))


def test_missing_files_and_folders_are_not_found(store: FolderStore) -> None:
    run(missing_and_folders_are_not_files(store))


def test_a_failed_upload_leaves_no_file_and_no_temporary(store: FolderStore) -> None:
    run(failed_upload_leaves_nothing(store, 3 * 1024 * 1024))
    leftovers = [p.name for p in (store.root / "3" / "run").iterdir()]
    assert leftovers == ["kept.txt"]


def test_a_large_file_round_trips(store: FolderStore) -> None:
    run(large_file_round_trip(store, 20))


def test_files_are_private_to_the_broker(store: FolderStore) -> None:
    run(store.put("1/run/secret.txt", chunks_of(b"x")))
    assert (store.root / "1" / "run" / "secret.txt").stat().st_mode & 0o077 == 0
    assert (store.root / "1" / "run").stat().st_mode & 0o077 == 0


def test_clean_path_refuses_escapes_and_keeps_good_paths() -> None:
    for bad in BAD_PATHS:
        with pytest.raises(InvalidArtifactPath):
            clean_path(bad)
    assert clean_path("1/run/artifacts/a b/ü.txt") == "1/run/artifacts/a b/ü.txt"
    assert clean_path("1/run/dir/", folder=True) == "1/run/dir"
    with pytest.raises(InvalidArtifactPath):
        clean_path("1/run/dir/")
    assert clean_path("", folder=True) == ""
    assert clean_path("..a/b..c/.hidden") == "..a/b..c/.hidden"


def test_a_symbolic_link_out_of_the_root_is_refused(store: FolderStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    (store.root / "1").mkdir()
    os.symlink(outside, store.root / "1" / "link")
    os.symlink(outside / "secret.txt", store.root / "1" / "file-link")
    with pytest.raises(InvalidArtifactPath):
        run(store.open("1/link/secret.txt"))
    with pytest.raises(InvalidArtifactPath):
        run(store.open("1/file-link"))
    with pytest.raises(InvalidArtifactPath):
        run(store.put("1/link/new.txt", chunks_of(b"x")))
    with pytest.raises(InvalidArtifactPath):
        run(store.list("1/link"))
    with pytest.raises(InvalidArtifactPath):
        run(store.delete("1/link/secret.txt"))
    run(store.delete("1/link"))  # the link itself goes, not what it points at
    assert (outside / "secret.txt").read_text() == "not yours"
    assert not (outside / "new.txt").exists()


def test_files_and_folders_in_each_others_way_are_refused(store: FolderStore) -> None:
    run(store.put("1/run/a.txt", chunks_of(b"x")))
    with pytest.raises(InvalidArtifactPath):
        run(store.put("1/run/a.txt/b.txt", chunks_of(b"y")))
    with pytest.raises(InvalidArtifactPath):
        run(store.put("1/run", chunks_of(b"y")))
    assert run(read_all(store, "1/run/a.txt")) == (1, b"x")
    with pytest.raises(ArtifactNotFound):
        run(store.open("1/run/a.txt/b.txt"))


def test_an_upload_in_progress_is_not_listed(store: FolderStore) -> None:
    (store.root / "1").mkdir()
    (store.root / "1" / f".model.pkl.sb-upload-{'a' * 32}").write_bytes(b"partial")
    (store.root / "1" / ".hidden").write_bytes(b"kept")
    assert names(run(store.list("1"))) == [(".hidden", False, 4)]
