"""Process and file helpers of the ``local`` kind, shared by the adapter and the supervisor.

Besides the atomic JSON files and process-group helpers, :func:`replica_status` reads one
replica's state back from its files and the process table: that is how a fresh adapter
re-attaches after a broker restart. Nothing heavier than psutil and :mod:`clusters.base` (which
``python -m clusters.local.supervise`` imports anyway with the package), so it stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from clusters.base import Phase, ReplicaStatus

#: Tolerance when comparing a recorded process start time with the live one (seconds).
CREATE_TIME_TOLERANCE = 0.01

#: A launched replica without a pid file is PENDING this long, then counted as vanished.
LAUNCH_GRACE = 10.0

VANISHED = "vanished without an exit status (killed)"


def write_json_atomic(path: Path, data: dict[str, Any], *, mode: int = 0o600) -> None:
    """Write ``data`` as JSON to ``path`` so that readers see the old file or the whole new one.

    Readable by the broker's user alone by default: these files are the records it trusts."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)


def create_json_exclusive(path: Path, data: dict[str, Any], *, mode: int = 0o600) -> bool:
    """Create ``path`` holding ``data`` as JSON, whole, unless it exists; False when it did.

    The content is written to a temporary file first and linked into place, so the file is
    never seen half written and two callers never both create it.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return True


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or not (yet) a valid object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_record() -> dict[str, Any]:
    """What a supervisor records about itself: its pid and start time."""
    me = psutil.Process()
    return {"pid": me.pid, "create_time": me.create_time()}


def is_ours(record: dict[str, Any] | None) -> bool:
    """True when the process in ``record`` still runs and is the one recorded (not a recycled pid).

    A zombie (ended, not yet reaped) counts as ended.
    """
    if not record:
        return False
    try:
        proc = psutil.Process(int(record["pid"]))
        if abs(proc.create_time() - float(record["create_time"])) > CREATE_TIME_TOLERANCE:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, KeyError, TypeError, ValueError):
        return False
    except psutil.AccessDenied:
        return True


def signal_group(record: dict[str, Any] | None, signum: int) -> bool:
    """Send ``signum`` to the process group led by the recorded process, if it is still ours.

    Returns True when a signal was sent.
    """
    if not is_ours(record):
        return False
    assert record is not None
    try:
        os.killpg(int(record["pid"]), signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_members(pgid: int, *, exclude: int | None = None) -> list[psutil.Process]:
    """Live processes of process group ``pgid`` (zombies left out), except pid ``exclude``."""
    members: list[psutil.Process] = []
    for proc in psutil.process_iter():
        if proc.pid == exclude:
            continue
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (OSError, psutil.Error):
            continue
    return members


def signal_name(code: int) -> str:
    """``SIGTERM`` for a return code of -15; ``signal 64`` when the number has no name."""
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def read_lines(path: Path, tail: int | None = None, *, block: int = 64 * 1024) -> list[str]:
    """Lines of a log file, split on "\\n" without a trailing empty line; the last ``tail`` only.

    With ``tail`` the file is read backwards in blocks, so a large log costs only its end.
    A missing file has no lines.
    """
    if tail is not None and tail <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            if tail is None:
                data = handle.read()
            else:
                end = handle.seek(0, os.SEEK_END)
                data = b""
                pos = end
                # One newline more than asked for (plus a possible trailing one) bounds the tail.
                while pos > 0 and data.count(b"\n") <= tail + 1:
                    step = min(block, pos)
                    pos -= step
                    handle.seek(pos)
                    data = handle.read(step) + data
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines if tail is None else lines[-tail:]


def live_records(attempt: Path, names: Sequence[str]) -> list[dict[str, Any]]:
    """The pid records of the replicas whose supervisor still runs."""
    records = [read_json(attempt / f"{name}.pid") for name in names]
    return [r for r in records if r is not None and is_ours(r)]


def replica_status(attempt: Path, name: str) -> ReplicaStatus:
    """One replica's state from its files and the process table."""
    ended = ended_status(attempt, name)
    if ended is not None:
        return ended
    record = read_json(attempt / f"{name}.pid")
    if is_ours(record):
        return ReplicaStatus(name, Phase.RUNNING)
    ended = ended_status(attempt, name)  # it may have finished between the two looks
    if ended is not None:
        return ended
    if record is None:
        try:
            launched = (attempt / f"{name}.launch").stat().st_mtime
        except FileNotFoundError:
            return ReplicaStatus(name, Phase.NOT_FOUND, message="was never launched")
        if time.time() - launched < LAUNCH_GRACE:
            return ReplicaStatus(name, Phase.PENDING)
    return ReplicaStatus(name, Phase.FAILED, None, VANISHED)


def ended_status(attempt: Path, name: str) -> ReplicaStatus | None:
    """The replica's outcome from its exit file, or None while it has none."""
    data = read_json(attempt / f"{name}.exit")
    if data is None:
        return None
    code = data.get("code")
    code = int(code) if isinstance(code, int) else None
    if code == 0:
        return ReplicaStatus(name, Phase.SUCCEEDED, 0)
    error = data.get("error")
    if error:
        message = f"failed: {error} (exit code {code})"
    elif code is not None and code < 0:
        message = f"was killed by {signal_name(code)} (exit code {code})"
    else:
        message = f"exited with code {code}"
    return ReplicaStatus(name, Phase.FAILED, code, message)
