"""The registry's own copies of version files: content-addressed blobs in the artifact store.

A file is streamed once to learn its SHA-256 and size; its bytes are copied to
``_registry/blobs/<sha[:2]>/<sha>`` only when no blob of that content is there yet, and that
copy is hashed again on the way, so a source file that changed in between is never stored under
the wrong name (the store keeps nothing of an upload that raises). Nothing is held whole in
memory. The artifact API's gate refuses ``_registry/...`` paths (not an experiment id), so the
blobs are reached only through a version (:meth:`ModelRegistry.open_file`).

Removing blobs: after a version or model is deleted, each blob of its files that no version
still references is deleted. A version created at the same moment that reuses such a blob
re-checks its blobs after its commit and copies a missing one again from its source; the window
left (its check running between the collector's reference query and its delete) is one file
system call wide. A version copied from another version (``models:/<name>/<version>``) has no
source to copy from again: that race (the other version deleted at the same moment) can leave it
a missing blob, which reads as 404.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from broker.artifacts.store import ArtifactBlob, ArtifactNotFound, ArtifactStore, FileInfo

BLOBS = "_registry/blobs"
#: The most files one version may hold (a guard against registering a whole experiment).
MAX_FILES = 20000


class SourceChanged(Exception):
    """A file's bytes changed between hashing and copying."""


class TooManyFiles(Exception):
    """The source holds more than :data:`MAX_FILES` files."""


@dataclass(frozen=True)
class StoredFile:
    """One file of a version: its path inside the version, and its blob's hash and size."""

    path: str
    sha256: str
    size: int


def blob_path(sha256: str) -> str:
    return f"{BLOBS}/{sha256[:2]}/{sha256}"


@dataclass(frozen=True)
class Found:
    """The files of a source: paths relative to its root, or (``single``) the root is one file,
    registered under its name."""

    paths: list[str]
    single: bool = False

    def source(self, root: str, relative: str) -> str:
        return root if self.single else f"{root}/{relative}"


async def walk(store: ArtifactStore, root: str) -> Found:
    """The files under the folder ``root`` (none when nothing is there)."""
    found: list[str] = []
    pending = [""]
    while pending:
        relative = pending.pop()
        entries = await store.list(f"{root}/{relative}" if relative else root)
        for entry in entries:
            child = f"{relative}/{entry.path}" if relative else entry.path
            if entry.is_dir:
                pending.append(child)
            else:
                found.append(child)
            if len(found) > MAX_FILES:
                raise TooManyFiles(f"more than {MAX_FILES} files under '{root}'")
    if found or not root:
        return Found(sorted(found))
    try:
        blob = await store.open(root)
    except ArtifactNotFound:
        return Found([])
    await _drain(blob)  # a file: let the backend release it
    return Found([root.rsplit("/", 1)[-1]], single=True)


async def _drain(blob: ArtifactBlob) -> None:
    async for _ in blob.chunks:
        break
    await blob.aclose()


async def copy_in(store: ArtifactStore, root: str, found: Found) -> tuple[list[StoredFile], set[str]]:
    """Hash every file of ``found`` under ``root`` and store the blobs not there yet. Returns the
    version's files and the hashes of the blobs this call wrote (to remove if no version is made)."""
    stored: list[StoredFile] = []
    written: set[str] = set()
    for relative in found.paths:
        source = found.source(root, relative)
        sha, size = await _hash(store, source)
        if sha not in written and not await has_blob(store, sha):
            await _copy(store, source, sha)
            written.add(sha)
        stored.append(StoredFile(relative, sha, size))
    return stored, written


async def restore_missing(store: ArtifactStore, root: str, found: Found, files: Iterable[StoredFile]) -> None:
    """Copy again the blobs of ``files`` that a concurrent collection removed (see the module)."""
    for file in files:
        if not await has_blob(store, file.sha256):
            await _copy(store, found.source(root, file.path), file.sha256)


async def has_blob(store: ArtifactStore, sha256: str) -> bool:
    entries = await store.list(f"{BLOBS}/{sha256[:2]}")
    return any(e.path == sha256 and not e.is_dir for e in entries)


async def _hash(store: ArtifactStore, path: str) -> tuple[str, int]:
    blob = await store.open(path)
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in blob.chunks:
            digest.update(chunk)
            size += len(chunk)
    finally:
        await blob.aclose()
    return digest.hexdigest(), size


async def _copy(store: ArtifactStore, source: str, sha256: str) -> None:
    async def checked() -> AsyncIterator[bytes]:
        # Opened here, so a put that fails before reading leaves no download open.
        blob = await store.open(source)
        digest = hashlib.sha256()
        try:
            async for chunk in blob.chunks:
                digest.update(chunk)
                yield chunk
        finally:
            await blob.aclose()
        if digest.hexdigest() != sha256:
            raise SourceChanged(f"'{source}' changed while it was being registered")

    await store.put(blob_path(sha256), checked())


async def open_blob(store: ArtifactStore, sha256: str) -> ArtifactBlob:
    return await store.open(blob_path(sha256))


async def remove_blobs(store: ArtifactStore, shas: Iterable[str]) -> None:
    for sha in sorted(set(shas)):
        await store.delete(blob_path(sha))


def listing(files: Iterable[tuple[str, int]], path: str) -> list[FileInfo]:
    """The entries directly under folder ``path`` of a version whose files are ``(path, size)``:
    MLflow's rule, empty for a file or a missing folder."""
    prefix = f"{path}/" if path else ""
    entries: dict[str, FileInfo] = {}
    for name, size in files:
        if not name.startswith(prefix):
            continue
        head, slash, _ = name[len(prefix) :].partition("/")
        if slash:
            entries.setdefault(head, FileInfo(head, True))
        else:
            entries[head] = FileInfo(head, False, size)
    return sorted(entries.values(), key=lambda f: f.path)
