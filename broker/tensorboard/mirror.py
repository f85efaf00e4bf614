"""A local copy of event files from the artifact store, kept current by appending.

TensorBoard reads an event file as it grows and keeps reading the file it opened: a copy that
grew in the store is extended in place (only its new bytes are fetched), never replaced, so
TensorBoard sees the new points. A copy longer than the stored file (rewritten) is written anew.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path

from broker.artifacts.store import ArtifactError, ArtifactStore

log = logging.getLogger(__name__)

#: The most files and folder depth one source is mirrored with.
MAX_FILES = 10_000
MAX_DEPTH = 8


def _plain(name: str) -> bool:
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name and "\0" not in name


async def mirror(store: ArtifactStore, sources: Iterable[tuple[str, Path]]) -> int:
    """Copy every file under each artifact folder of ``sources`` to its local folder; the number
    of files that changed. A source that cannot be read is logged and skipped."""
    changed = 0
    for folder, target in sources:
        try:
            changed += await _mirror_folder(store, folder, target)
        except (ArtifactError, OSError) as exc:
            log.warning("cannot mirror the event files of %s: %s", folder, exc)
    return changed


async def _mirror_folder(store: ArtifactStore, folder: str, target: Path) -> int:
    changed, seen = 0, 0
    todo: list[tuple[str, int]] = [("", 0)]
    while todo and seen < MAX_FILES:
        relative, depth = todo.pop(0)
        for entry in await store.list(f"{folder}/{relative}".rstrip("/")):
            if not _plain(entry.path):
                continue
            path = f"{relative}/{entry.path}".lstrip("/")
            if entry.is_dir:
                if depth < MAX_DEPTH:
                    todo.append((path, depth + 1))
                continue
            seen += 1
            if await _copy(store, f"{folder}/{path}", target / path, entry.file_size):
                changed += 1
    return changed


async def _copy(store: ArtifactStore, source: str, local: Path, size: int | None) -> bool:
    """Bring ``local`` up to the stored file ``source`` of ``size`` bytes; whether it changed."""
    have = local.stat().st_size if local.is_file() else -1
    if size is not None and have == size:
        return False
    blob = await store.open(source)
    skip = have if size is not None and 0 <= have < size else 0
    await asyncio.to_thread(local.parent.mkdir, parents=True, exist_ok=True)
    out = await asyncio.to_thread(open, local, "ab" if skip else "wb")
    try:
        async for chunk in blob.chunks:
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            await asyncio.to_thread(out.write, chunk[skip:])
            skip = 0
    finally:
        out.close()
        await blob.aclose()
    return True
