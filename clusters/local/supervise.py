"""The per-replica supervisor of the ``local`` cluster kind.

Run as ``python -m clusters.local.supervise --dir D --replica NAME -- argv...`` by the adapter,
in a new session so that it leads the replica's process group. It records itself in
``D/NAME.pid`` ({pid, create_time}), runs ``argv`` as its child (stdout and stderr inherited: the
adapter points them at ``D/NAME.log``), forwards SIGTERM and SIGINT to the child, and once the
child has ended stops whatever the child left behind in the group and records the outcome in
``D/NAME.exit`` ({code, error?}; a negative code is the signal that ended the child). Both files
are written atomically, so the adapter can re-attach after a broker restart from the files alone.

If ``D/cancelled`` exists once the pid file is written, the replica is not started at all: the
adapter writes that marker before it signals, so a cancel racing a launch never misses it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from clusters.local.processes import (
    PYTHONPATH_RESTORE_VAR,
    group_members,
    pid_record,
    write_json_atomic,
)

#: Seconds the child's leftovers get between SIGTERM and SIGKILL once the child has ended.
LEFTOVER_GRACE = 2.0

_FORWARDED = (signal.SIGTERM, signal.SIGINT)


class _Supervisor:
    """State shared between the main flow and the signal handler."""

    def __init__(self, directory: Path, replica: str, argv: list[str]) -> None:
        self.directory = directory
        self.replica = replica
        self.argv = argv
        self.child: subprocess.Popen[bytes] | None = None
        self.signal: int | None = None

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signal = signum
        child = self.child
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    def finish(self, code: int, error: str | None = None) -> None:
        data: dict[str, Any] = {"code": code}
        if error:
            data["error"] = error
        write_json_atomic(self.directory / f"{self.replica}.exit", data)

    def run(self) -> int:
        for signum in _FORWARDED:
            signal.signal(signum, self.on_signal)
        write_json_atomic(self.directory / f"{self.replica}.pid", pid_record())
        if (self.directory / "cancelled").exists() or self.signal is not None:
            self.finish(-int(self.signal or signal.SIGTERM), "cancelled before it started")
            return 0
        try:
            self.child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, env=_child_env())
        except FileNotFoundError:
            return self._refuse(127, "command not found")
        except PermissionError:
            return self._refuse(126, "permission denied")
        except OSError as exc:
            return self._refuse(126, f"cannot run ({exc.strerror or exc})")
        if self.signal is not None:  # arrived between the check above and the child's start
            self.on_signal(self.signal, None)
        code = self.child.wait()
        _stop_leftovers()
        self.finish(code)
        return 0

    def _refuse(self, code: int, reason: str) -> int:
        print(f"{reason}: {self.argv[0]}", file=sys.stderr, flush=True)
        self.finish(code, f"{reason}: {self.argv[0]!r}")
        return 0


def _child_env() -> dict[str, str]:
    """The replica's environment: ours, with the replica's own PYTHONPATH put back."""
    env = dict(os.environ)
    saved = env.pop(PYTHONPATH_RESTORE_VAR, None)
    if saved is not None:
        if saved.startswith("="):
            env["PYTHONPATH"] = saved[1:]
        else:
            env.pop("PYTHONPATH", None)
    return env


def _stop_leftovers() -> None:
    """Stop what the child left running in our process group (as a container's end would)."""
    me = os.getpid()
    if os.getpgid(0) != me:  # not a group leader (run by hand): the group is not ours to clean
        return
    leftovers = group_members(me, exclude=me)
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _gone, alive = psutil.wait_procs(leftovers, timeout=LEFTOVER_GRACE)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    """Parse ``--dir D --replica NAME -- argv...`` and supervise one replica."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args:
        print("usage: python -m clusters.local.supervise --dir D --replica NAME -- argv...", file=sys.stderr)
        return 2
    split = args.index("--")
    parser = argparse.ArgumentParser(prog="python -m clusters.local.supervise")
    parser.add_argument("--dir", required=True, type=Path, help="the attempt folder")
    parser.add_argument("--replica", required=True, help="the replica name, e.g. worker-0")
    options = parser.parse_args(args[:split])
    command = args[split + 1 :]
    if not command:
        parser.error("no command after --")
    return _Supervisor(options.dir, options.replica, command).run()


if __name__ == "__main__":
    sys.exit(main())
