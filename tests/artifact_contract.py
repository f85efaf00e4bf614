"""What every artifact backend must do, checked the same way on each (folder, S3 on moto)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable

import pytest

from broker.artifacts.store import ArtifactNotFound, ArtifactStore, FileInfo


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read_all(store: ArtifactStore, path: str) -> tuple[int | None, bytes]:
    blob = await store.open(path)
    data = b"".join([chunk async for chunk in blob.chunks])
    return blob.size, data


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def names(files: Iterable[FileInfo]) -> list[tuple[str, bool, int | None]]:
    return [(f.path, f.is_dir, f.file_size) for f in files]


async def put_open_list_delete(store: ArtifactStore) -> None:
    assert await store.put("1/run/artifacts/notes.txt", chunks_of(b"hello ", b"world")) == 11
    assert await store.put("1/run/artifacts/model/MLmodel", chunks_of(b"flavors: {}\n")) == 12
    assert (
        await store.put("1/run/artifacts/model/data/weights.bin", chunks_of(bytes(range(256)) * 10)) == 2560
    )
    assert await store.put("1/run/artifacts/empty.txt", chunks_of()) == 0

    assert await read_all(store, "1/run/artifacts/notes.txt") == (11, b"hello world")
    assert await read_all(store, "1/run/artifacts/empty.txt") == (0, b"")
    assert names(await store.list("1/run/artifacts")) == [
        ("empty.txt", False, 0),
        ("model", True, None),
        ("notes.txt", False, 11),
    ]
    assert names(await store.list("1/run/artifacts/model")) == [("MLmodel", False, 12), ("data", True, None)]
    assert names(await store.list("1")) == [("run", True, None)]
    # MLflow's rule: a missing folder and a file both list as nothing.
    assert await store.list("1/run/artifacts/notes.txt") == []
    assert await store.list("1/nothing/here") == []

    # Replacing a file replaces it whole.
    await store.put("1/run/artifacts/notes.txt", chunks_of(b"again"))
    assert await read_all(store, "1/run/artifacts/notes.txt") == (5, b"again")

    # A file, then a whole folder.
    await store.delete("1/run/artifacts/notes.txt")
    with pytest.raises(ArtifactNotFound):
        await store.open("1/run/artifacts/notes.txt")
    await store.delete("1/run/artifacts/model")
    assert names(await store.list("1/run/artifacts")) == [("empty.txt", False, 0)]
    with pytest.raises(ArtifactNotFound):
        await store.open("1/run/artifacts/model/data/weights.bin")
    await store.delete("1/run/artifacts/model")  # nothing there: no error


async def missing_and_folders_are_not_files(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFound):
        await store.open("2/missing.txt")
    await store.put("2/dir/file.txt", chunks_of(b"x"))
    with pytest.raises(ArtifactNotFound):
        await store.open("2/dir")


async def failed_upload_leaves_nothing(store: ArtifactStore, size: int) -> None:
    """A client gone mid-upload: no file appears, and an earlier file stays as it was."""

    async def broken() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            yield b"z" * 1024 * 1024
            sent += 1024 * 1024
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put("3/run/big.bin", broken())
    with pytest.raises(ArtifactNotFound):
        await store.open("3/run/big.bin")
    assert await store.list("3/run") == []

    await store.put("3/run/kept.txt", chunks_of(b"old"))
    with pytest.raises(ConnectionResetError):
        await store.put("3/run/kept.txt", broken())
    assert await read_all(store, "3/run/kept.txt") == (3, b"old")
    assert names(await store.list("3/run")) == [("kept.txt", False, 3)]


async def large_file_round_trip(store: ArtifactStore, megabytes: int) -> None:
    """Several parts' worth, in odd-sized chunks; the bytes come back identical."""
    block = hashlib.sha256(b"seed").digest() * 4099  # 131,168 bytes: not a divisor of a part
    total = megabytes * 1024 * 1024
    digest = hashlib.sha256()

    async def source() -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            part = block[: total - sent]
            digest.update(part)
            sent += len(part)
            yield part

    assert await store.put("4/run/large.bin", source()) == total
    blob = await store.open("4/run/large.bin")
    assert blob.size == total
    back = hashlib.sha256()
    async for chunk in blob.chunks:
        assert len(chunk) <= 1024 * 1024
        back.update(chunk)
    assert back.hexdigest() == digest.hexdigest()


BAD_PATHS = [
    "",
    "/etc/passwd",
    "../outside",
    "1/../../outside",
    "1/./x",
    "1//x",
    "1/x\0y",
    "C:/windows",
    "1\\..\\x",
    "a" * 901,
]
