"""One ``tensorboard`` process per experiment, started on first use and stopped when idle.

Each experiment gets a folder ``<root>/<experiment id>/``: ``logs/`` (the copy of its event files
TensorBoard reads, filled by the caller's ``fetch``) and ``tensorboard.log`` (the process's
output). The process listens on a free loopback port with ``--path_prefix /tensorboard/<id>``, so
the broker forwards paths unchanged, and answers only requests with the secret the broker gave it
(:mod:`broker.tensorboard.board`). It is stopped, by its pid, after :data:`IDLE_SECONDS`
without a request and when the broker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from broker.errors import ApiError
from broker.tensorboard.board import TOKEN_ENV

log = logging.getLogger(__name__)

#: Seconds without a request after which an experiment's TensorBoard is stopped.
IDLE_SECONDS = 600.0
#: Seconds between two refreshes of an experiment's event files (on request).
REFRESH_SECONDS = 5.0
#: Seconds a new TensorBoard gets to start listening.
START_TIMEOUT = 60.0
#: Seconds a stopped TensorBoard gets between SIGTERM and SIGKILL.
STOP_GRACE = 5.0
#: Where the path of an experiment's TensorBoard starts.
PREFIX = "/tensorboard"

Fetch = Callable[[Path], Awaitable[None]]


@dataclass
class _Board:
    """One experiment's TensorBoard: its process, port and when it was last used and refreshed."""

    folder: Path
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    used: float = 0.0
    refreshed: float = float("-inf")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _listening(port: int) -> bool:
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class TensorBoards:
    """The TensorBoard processes of one broker, under ``root`` (in ``data_dir``)."""

    def __init__(self, root: Path, *, python: str = sys.executable, idle: float = IDLE_SECONDS) -> None:
        self.root = root
        self.python = python
        self.idle = idle
        self._boards: dict[str, _Board] = {}
        self._reaper: asyncio.Task[None] | None = None

    def pids(self) -> list[int]:
        """The pids of the TensorBoard processes running now."""
        return [b.process.pid for b in self._boards.values() if b.process is not None and b.alive()]

    async def upstream(self, experiment_id: str, fetch: Fetch) -> tuple[str, str]:
        """``(http://127.0.0.1:<port>, secret)`` of the experiment's TensorBoard, started if need be, after
        ``fetch(<logs folder>)`` brought its event files up to date (at most every
        :data:`REFRESH_SECONDS`; a request meanwhile is answered from what is there)."""
        board = self._boards.get(experiment_id)
        if board is None:
            board = self._boards[experiment_id] = _Board(self.root / experiment_id)
        board.used = time.monotonic()
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap(), name="tensorboard-reaper")
        fresh = time.monotonic() - board.refreshed < REFRESH_SECONDS
        if board.alive() and (fresh or board.lock.locked()):
            return f"http://127.0.0.1:{board.port}", board.token
        async with board.lock:
            if time.monotonic() - board.refreshed >= REFRESH_SECONDS:
                logs = board.folder / "logs"
                await asyncio.to_thread(logs.mkdir, parents=True, exist_ok=True)
                await fetch(logs)
                board.refreshed = time.monotonic()
            if not board.alive():
                await self._start(experiment_id, board)
        return f"http://127.0.0.1:{board.port}", board.token

    async def _start(self, experiment_id: str, board: _Board) -> None:
        board.port = _free_port()
        argv = [
            self.python,
            "-m",
            "broker.tensorboard.board",
            "--logdir",
            str(board.folder / "logs"),
            "--host",
            "127.0.0.1",
            "--port",
            str(board.port),
            "--path_prefix",
            f"{PREFIX}/{experiment_id}",
            "--reload_interval",
            "5",
            "--load_fast",
            "false",
        ]
        output = board.folder / "tensorboard.log"
        with output.open("ab") as sink:
            board.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=board.folder,
                env={**os.environ, TOKEN_ENV: board.token},
                start_new_session=True,  # its own group: the broker's terminal signals are not its
            )
        log.info("TensorBoard of %s started (pid %d, port %d)", experiment_id, board.process.pid, board.port)
        deadline = time.monotonic() + START_TIMEOUT
        while not await _listening(board.port):
            if not board.alive() or time.monotonic() > deadline:
                await self._stop(experiment_id, board)
                raise ApiError(502, f"TensorBoard of {experiment_id} did not start; see {output}")
            await asyncio.sleep(0.2)

    async def _stop(self, experiment_id: str, board: _Board) -> None:
        process = board.process
        if process is None:
            return
        board.process = None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.to_thread(process.wait, STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await asyncio.to_thread(process.wait)
        log.info("TensorBoard of %s stopped (pid %d)", experiment_id, process.pid)

    async def forget(self, experiment_id: str) -> None:
        """Stop the experiment's TensorBoard and remove its copy of the event files (a purge)."""
        board = self._boards.pop(experiment_id, None)
        if board is not None:
            await self._stop(experiment_id, board)
        folder = self.root / experiment_id
        if folder.parent == self.root:  # an id is one path segment; never remove anything else
            await asyncio.to_thread(shutil.rmtree, folder, True)

    async def _reap(self) -> None:
        """Stop the TensorBoards nobody asked for in :attr:`idle` seconds."""
        while True:
            await asyncio.sleep(min(30.0, self.idle / 2))
            now = time.monotonic()
            for experiment_id, board in list(self._boards.items()):
                if board.process is not None and now - board.used > self.idle and not board.lock.locked():
                    await self._stop(experiment_id, board)

    async def aclose(self) -> None:
        """Stop every TensorBoard (the broker is stopping)."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for experiment_id, board in list(self._boards.items()):
            await self._stop(experiment_id, board)
