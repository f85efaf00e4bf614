"""Upload a replica's TensorBoard folder to the broker's artifact store (standard library only).

Every experiment replica gets ``SUBMARINE_TENSORBOARD_LOG_DIR`` (see
:mod:`broker.tracking.handout`): ``tensorboard/<replica>``, relative to its working directory
until a launcher that knows that directory makes it absolute (:func:`absolute_env`). Where our
own code runs beside the replica (the local kind's supervisor, the Slurm task, the Ray actor), a
:class:`TensorBoardSync` uploads the files of that folder that are new or changed since its last
pass (by size and modification time) to ``<experiment>/<run>/tensorboard/<replica>/...`` through
the broker's artifact proxy, with the replica's own run token (``MLFLOW_TRACKING_URI``,
``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_EXPERIMENT_ID``, ``MLFLOW_RUN_ID``). A pass never raises:
what fails is said on stderr and tried again at the next pass; the replica never fails for it.

The folder is walked through descriptors opened without following links, and with ``owner``
only files that user owns are read: a replica running as another user cannot make a
privileged uploader send a file it could not read itself. This file runs as it is (copied beside
``slurm_task.py`` into a Slurm job's folder), so it imports nothing outside the standard library.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Protocol
from urllib.parse import quote

#: The variable naming the folder a replica writes TensorBoard event files to.
LOG_DIR_ENV = "SUBMARINE_TENSORBOARD_LOG_DIR"
#: The run's artifact folder those files reach (``<experiment>/<run>/tensorboard/<replica>/``).
ARTIFACT_FOLDER = "tensorboard"
#: Seconds between two passes while a replica runs (where the caller syncs periodically).
INTERVAL = 30.0
#: Seconds one request may wait on the broker.
TIMEOUT = 30.0
#: Seconds the last pass (at the replica's end) may take in all.
FINAL_BUDGET = 120.0
#: At most this many files and this much folder depth are looked at per pass.
MAX_FILES = 10_000
MAX_DEPTH = 8
_CHUNK = 1 << 20
_NEEDED = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_TOKEN", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


class Writer(Protocol):
    """Where failures are said: a text stream (stderr by default)."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


def absolute_env(env: Mapping[str, str], cwd: str) -> dict[str, str]:
    """``env`` with a relative :data:`LOG_DIR_ENV` resolved against ``cwd``, the replica's
    working directory (unchanged when absent or already absolute)."""
    out = dict(env)
    folder = out.get(LOG_DIR_ENV)
    if folder and not os.path.isabs(folder):
        out[LOG_DIR_ENV] = os.path.normpath(os.path.join(cwd, folder))
    return out


class TensorBoardSync:
    """Uploads the changed files of one replica's TensorBoard folder; see the module docstring.

    ``env`` is the replica's environment, ``cwd`` its working directory (for a relative folder),
    ``owner`` the uid whose files alone are read (None: any). Without the tracking variables or
    the folder variable, :attr:`enabled` is False and :meth:`sync` does nothing."""

    def __init__(
        self,
        env: Mapping[str, str],
        replica: str,
        cwd: str,
        *,
        owner: int | None = None,
        timeout: float = TIMEOUT,
        stderr: Writer | None = None,
    ) -> None:
        self.enabled = all(env.get(name) for name in (*_NEEDED, LOG_DIR_ENV)) and bool(replica)
        self.folder = absolute_env(env, cwd).get(LOG_DIR_ENV, "")
        self.owner = owner
        self.timeout = timeout
        self._stderr = stderr
        self._token = env.get("MLFLOW_TRACKING_TOKEN", "")
        base = env.get("MLFLOW_TRACKING_URI", "").rstrip("/")
        run = f"{env.get('MLFLOW_EXPERIMENT_ID', '')}/{env.get('MLFLOW_RUN_ID', '')}"
        folder = f"{quote(run)}/{ARTIFACT_FOLDER}/{quote(replica)}"
        self._url = f"{base}/api/2.0/mlflow-artifacts/artifacts/{folder}"
        self._seen: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) uploaded

    def say(self, text: str) -> None:
        """One line on the replica's stderr (its log); never the token."""
        with contextlib.suppress(Exception):  # a closed stderr must not end a pass either
            out = self._stderr or sys.stderr
            print(f"submarine-broker: tensorboard upload: {text}", file=out, flush=True)

    def sync(self, budget: float | None = None) -> int:
        """Upload what is new or changed; the number of files uploaded. Never raises. Stops at the
        first transport failure (the broker is down: the next pass tries again) and after
        ``budget`` seconds."""
        if not self.enabled:
            return 0
        deadline = None if budget is None else time.monotonic() + budget
        uploaded = 0
        try:
            top = os.open(self.folder, _DIR_FLAGS)
        except OSError:
            return 0  # nothing written yet (or not a folder we may read): nothing to upload
        try:
            for rel, fd in _files(top, self.owner):
                try:
                    info = os.fstat(fd)
                    mark = (info.st_size, info.st_mtime_ns)
                    if self._seen.get(rel) == mark:
                        continue
                    if deadline is not None and time.monotonic() > deadline:
                        self.say("out of time; the rest is left for later")
                        break
                    outcome = self._put(rel, fd, info.st_size)
                finally:
                    os.close(fd)
                if outcome == "down":
                    break
                if outcome in ("ok", "refused"):  # refused: not again until the file changes
                    self._seen[rel] = mark
                    uploaded += outcome == "ok"
        except Exception as exc:  # noqa: BLE001 - whatever happens, the replica carries on
            self.say(f"pass failed: {type(exc).__name__}: {exc}")
        finally:
            os.close(top)
        return uploaded

    def _put(self, rel: str, fd: int, size: int) -> str:
        """PUT one file: "ok", "refused" (the broker said no) or "down" (no answer)."""
        request = urllib.request.Request(
            f"{self._url}/{quote(rel)}",
            data=_chunks(fd, size),
            method="PUT",
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Length": str(size),
                "Content-Type": "application/octet-stream",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                answer.read()
            return "ok"
        except urllib.error.HTTPError as exc:
            self.say(f"{rel}: the broker answered HTTP {exc.code}")
            return "refused" if 400 <= exc.code < 500 and exc.code not in (401, 408, 429) else "down"
        except (OSError, ValueError) as exc:  # URLError, timeouts, resets, a file shrunk mid-read
            reason = getattr(exc, "reason", None) or exc
            self.say(f"{rel}: not uploaded ({type(exc).__name__}: {reason}); trying again later")
            return "down"


def _chunks(fd: int, size: int) -> Iterator[bytes]:
    """``size`` bytes of ``fd`` from its start (a file that grew meanwhile: its first ``size``)."""
    os.lseek(fd, 0, os.SEEK_SET)
    left = size
    while left > 0:
        chunk = os.read(fd, min(_CHUNK, left))
        if not chunk:
            raise ValueError("the file shrank while it was read")
        left -= len(chunk)
        yield chunk


def _files(top: int, owner: int | None, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, int]]:
    """``(relative path, open descriptor)`` of the regular files under the folder ``top``, never
    through a link; the caller closes each descriptor."""
    count = 0
    with os.scandir(top) as listing:
        entries = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in listing)
    for name, is_dir in entries:
        if count >= MAX_FILES:
            return
        try:
            fd = os.open(name, _DIR_FLAGS if is_dir else _FILE_FLAGS, dir_fd=top)
        except OSError:
            continue  # a link, or gone
        info = os.fstat(fd)
        if owner is not None and info.st_uid != owner:
            os.close(fd)
            continue
        if stat.S_ISDIR(info.st_mode):
            try:
                if depth < MAX_DEPTH:
                    for found in _files(fd, owner, f"{prefix}{name}/", depth + 1):
                        count += 1
                        yield found
            finally:
                os.close(fd)
        elif stat.S_ISREG(info.st_mode):
            count += 1
            yield f"{prefix}{name}", fd
        else:
            os.close(fd)
