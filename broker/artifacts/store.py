"""What every artifact backend offers, and the one rule for artifact paths.

An artifact path is relative and ``/``-separated, as the MLflow client sends it after the
``mlflow-artifacts:/`` prefix (``1/<run_id>/artifacts/model/MLmodel``). :func:`clean_path` is
the only check: a path it accepts can be joined under any backend's root without escaping it.
Both directions stream: an upload is read from an async iterator of chunks and a download is
an async iterator, so no file sits whole in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

#: Bytes per chunk a download yields (the MLflow client reads 1 MB at a time too).
CHUNK_SIZE = 1024 * 1024
#: The longest artifact path accepted (S3 keys stop at 1024 bytes, prefix included).
MAX_PATH_BYTES = 900


class ArtifactError(Exception):
    """A refusal a user may see: the message names the path, never a credential."""


class InvalidArtifactPath(ArtifactError):
    """The path is not one the store accepts (``..``, absolute, empty segment, NUL, too long), or
    it collides with what is there (a file where a folder is needed, or the reverse)."""


class ArtifactNotFound(ArtifactError):
    """No file at that path."""


class ArtifactStoreUnavailable(ArtifactError):
    """The backend did not answer or refused the broker (object storage down, wrong bucket)."""


@dataclass(frozen=True)
class FileInfo:
    """One entry of a listing: its base name, whether it is a folder, and a file's size."""

    path: str
    is_dir: bool
    file_size: int | None = None

    def to_json(self) -> dict[str, object]:
        """MLflow's FileInfo; a folder has no ``file_size``."""
        answer: dict[str, object] = {"path": self.path, "is_dir": self.is_dir}
        if not self.is_dir and self.file_size is not None:
            answer["file_size"] = self.file_size
        return answer


@dataclass
class ArtifactBlob:
    """An opened file: its size (None when the backend does not say) and its bytes, in chunks.

    Iterate ``chunks`` once; it closes the file when done, and :meth:`aclose` closes it early."""

    size: int | None
    chunks: AsyncIterator[bytes]

    async def aclose(self) -> None:
        closer = getattr(self.chunks, "aclose", None)
        if closer is not None:
            await closer()


class ArtifactStore(Protocol):
    """Where artifact files live. Every ``path`` has passed :func:`clean_path`; ``""`` is the root."""

    async def put(self, path: str, chunks: AsyncIterator[bytes]) -> int:
        """Store the file ``path`` from ``chunks`` (replacing one already there); its size.

        Nothing is left at ``path`` when ``chunks`` raises (a client gone mid-upload): a reader
        sees the old file or the whole new one, never part of one."""
        ...

    async def open(self, path: str) -> ArtifactBlob:
        """The file ``path``; :class:`ArtifactNotFound` when there is no file there (a folder too)."""
        ...

    async def list(self, path: str) -> list[FileInfo]:
        """The entries directly under the folder ``path``, sorted by name; empty when ``path`` is
        missing or is a file (MLflow's rule)."""
        ...

    async def delete(self, path: str) -> None:
        """Remove the file ``path``, or the folder ``path`` with everything under it; nothing
        there is no error."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds (connections); called when the broker stops."""
        ...


def clean_path(raw: str, *, folder: bool = False) -> str:
    """``raw`` as a relative artifact path, or :class:`InvalidArtifactPath` saying what is wrong.

    A ``folder`` (what a listing names) may be ``""``, the root, and may end with one ``/``; a
    file's path may do neither."""
    path = raw[:-1] if folder and raw.endswith("/") and raw != "/" else raw
    if path == "":
        if folder:
            return ""
        raise InvalidArtifactPath("the artifact path is empty")
    shown = path if len(path) <= 200 else path[:200] + "…"
    if "\0" in path:
        raise InvalidArtifactPath("the artifact path holds a NUL character")
    if path.startswith("/") or "\\" in path or (len(path) > 1 and path[1] == ":"):
        raise InvalidArtifactPath(f"the artifact path must be relative: '{shown}'")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidArtifactPath(f"the artifact path is longer than {MAX_PATH_BYTES} bytes")
    for segment in path.split("/"):
        if segment == "":
            raise InvalidArtifactPath(f"the artifact path has an empty segment ('//'): '{shown}'")
        if segment in (".", ".."):
            raise InvalidArtifactPath(f"the artifact path may not hold '{segment}' segments: '{shown}'")
    return path
