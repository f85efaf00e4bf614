"""The embedded artifact backend: files in a folder (default ``<data_dir>/artifacts``).

An upload goes to a hidden temporary file in the destination's folder and is renamed over the
destination only when complete, so a reader never sees half a file. Every path is checked to
resolve inside the root, symbolic links included, before anything is read, written or removed.
File system calls run in worker threads; the event loop only moves chunks.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread

from broker.artifacts.store import (
    CHUNK_SIZE,
    ArtifactBlob,
    ArtifactNotFound,
    FileInfo,
    InvalidArtifactPath,
)

DIR_MODE = 0o700
FILE_MODE = 0o600
#: An upload in progress: ``.<name>.sb-upload-<32 hex>``, beside its destination, never listed.
_PARTIAL = re.compile(r"^\..*\.sb-upload-[0-9a-f]{32}$", re.DOTALL)


class FolderStore:
    """:class:`~broker.artifacts.store.ArtifactStore` on a local folder."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        self.root = Path(os.path.realpath(root))

    # paths ------------------------------------------------------------------------------------
    def _inside(self, real: str) -> bool:
        return real == str(self.root) or real.startswith(str(self.root) + os.sep)

    def _target(self, path: str) -> Path:
        """``path`` under the root, refused when it (through a link) resolves outside it."""
        target = self.root / path if path else self.root
        if not self._inside(os.path.realpath(target)):
            raise InvalidArtifactPath(f"the artifact path leaves the artifact store: '{path}'")
        return target

    # writing ----------------------------------------------------------------------------------
    def _prepare(self, path: str) -> tuple[Path, Path, BinaryIO]:
        """The destination, its temporary file and that file opened for writing."""
        target = self._target(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        except (FileExistsError, NotADirectoryError):
            raise InvalidArtifactPath(f"a file is in the way of the folder of '{path}'") from None
        self._target(path)  # again, now that the folders exist: none of them may be a link out
        if target.is_dir() and not target.is_symlink():
            raise InvalidArtifactPath(f"'{path}' is a folder; upload files into it")
        temporary = target.parent / f".{target.name}.sb-upload-{uuid.uuid4().hex}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        return target, temporary, os.fdopen(fd, "wb")

    async def put(self, path: str, chunks: AsyncIterator[bytes]) -> int:
        target, temporary, file = await anyio.to_thread.run_sync(self._prepare, path)
        size = 0
        pending: list[bytes] = []
        pending_size = 0
        done = False
        try:
            async for chunk in chunks:
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= CHUNK_SIZE:  # one thread hop per megabyte, not per chunk
                    await anyio.to_thread.run_sync(file.writelines, pending)
                    size += pending_size
                    pending, pending_size = [], 0
            if pending:
                await anyio.to_thread.run_sync(file.writelines, pending)
                size += pending_size
            await anyio.to_thread.run_sync(self._finish, file, temporary, target, path)
            done = True
        finally:
            if not done:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(_discard, file, temporary)
        return size

    def _finish(self, file: BinaryIO, temporary: Path, target: Path, path: str) -> None:
        file.flush()
        os.fsync(file.fileno())
        file.close()
        try:
            os.replace(temporary, target)
        except IsADirectoryError:
            raise InvalidArtifactPath(f"'{path}' is a folder; upload files into it") from None

    # reading ----------------------------------------------------------------------------------
    def _open(self, path: str) -> tuple[BinaryIO, int]:
        target = self._target(path)
        try:
            file = target.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ArtifactNotFound(f"no artifact at '{path}'") from None
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            file.close()
            raise ArtifactNotFound(f"no artifact file at '{path}'")
        return file, info.st_size

    async def open(self, path: str) -> ArtifactBlob:
        file, size = await anyio.to_thread.run_sync(self._open, path)
        return ArtifactBlob(size, _read_chunks(file))

    def _list(self, path: str) -> list[FileInfo]:
        target = self._target(path)
        try:
            entries = list(os.scandir(target))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for entry in entries:
            if _PARTIAL.match(entry.name):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    found.append(FileInfo(entry.name, True))
                elif entry.is_file(follow_symlinks=False):
                    found.append(FileInfo(entry.name, False, entry.stat(follow_symlinks=False).st_size))
            except FileNotFoundError:  # removed while listing
                continue
        return sorted(found, key=lambda f: f.path)

    async def list(self, path: str) -> list[FileInfo]:
        return await anyio.to_thread.run_sync(self._list, path)

    # removing ---------------------------------------------------------------------------------
    def _delete(self, path: str) -> None:
        target = self.root / path if path else self.root
        self._target(str(Path(path).parent) if "/" in path else "")  # its folder must be inside
        if target.is_symlink() or target.is_file():
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
        elif target.is_dir():
            if target == self.root:
                for entry in os.scandir(target):
                    self._delete(entry.name)
            else:
                shutil.rmtree(target, ignore_errors=True)

    async def delete(self, path: str) -> None:
        await anyio.to_thread.run_sync(self._delete, path)

    async def aclose(self) -> None:
        return None


def _discard(file: BinaryIO, temporary: Path) -> None:
    file.close()
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()


async def _read_chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(file.read, CHUNK_SIZE)
            if not chunk:
                return
            yield chunk
    finally:
        file.close()
