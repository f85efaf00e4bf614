"""The per-replica supervisor of the ``local`` cluster kind.

Started by the adapter as ``python -I -c <bootstrap> --dir D --replica NAME`` (see
:func:`command`), in a new session so that it leads the replica's process group, with a fixed
environment of its own and Python's isolated mode: nothing of the replica's environment
(``PATH``, ``LD_PRELOAD``, ``PYTHONPATH``) and nothing in its working directory can change what
it runs. It reads what to start from ``D/NAME.launch`` (argv, environment, working directory and
the user to run as; written by the adapter, readable by the broker's user alone), records itself
in ``D/NAME.pid`` ({pid, create_time}), starts the replica as its child (stdout and stderr
inherited: the adapter points them at ``D/NAME.log``), switching to the run-as user, its primary
group and no other group, with umask 077, forwards SIGTERM and SIGINT to the child, and once the
child has ended stops whatever the child left behind in the group and records the outcome in
``D/NAME.exit`` ({code, error?}; a negative code is the signal that ended the child). Both files
are written atomically and belong to the broker's user (the supervisor keeps running as it), so
a replica running as another user can neither forge them nor read its siblings' launch files.

A launch file with an ``environment`` (a build of :mod:`runtimes.venv_build`) has the supervisor
prepare that environment before it starts the replica (``D/environment.json``, ``.log``): the
first replica of the attempt builds it (or waits for another attempt building the same hash), the
others read the outcome. A failed build ends the replica with code 1 and the installer's error
line, a cancel meanwhile as a cancel before the start.

If ``D/cancelled`` exists once the pid file is written, the replica is not started at all: the
adapter writes that marker before it signals, so a cancel racing a launch never misses it.

While the child runs, every :data:`~runtimes.tensorboard_sync.INTERVAL` seconds, and once more
after it has ended (before the exit record, while the run token still works), the supervisor
uploads the replica's TensorBoard folder (:mod:`runtimes.tensorboard_sync`, with the token of
the launch environment; only files the run-as user owns). An upload failure is a line in the
replica's log, never the supervisor's end.
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
from typing import TYPE_CHECKING, Any

import psutil

from clusters.local.processes import group_members, pid_record, read_json, write_json_atomic

if TYPE_CHECKING:
    from runtimes.tensorboard_sync import TensorBoardSync

#: Seconds the child's leftovers get between SIGTERM and SIGKILL once the child has ended.
LEFTOVER_GRACE = 2.0
#: The umask of a replica that runs as another user: what it creates is its own alone.
REPLICA_UMASK = 0o077

_FORWARDED = (signal.SIGTERM, signal.SIGINT)


def command(python: str, root: str, directory: Path, replica: str) -> list[str]:
    """The supervisor's command line: ``python`` in isolated mode (no PYTHON* variables, no
    user site, no script or working folder on the path), importing this package from ``root``."""
    bootstrap = (
        f"import sys; sys.path.insert(0, {root!r}); "
        "from clusters.local.supervise import main; sys.exit(main())"
    )
    return [python, "-I", "-c", bootstrap, "--dir", str(directory), "--replica", replica]


class _Supervisor:
    """State shared between the main flow and the signal handler."""

    def __init__(self, directory: Path, replica: str) -> None:
        self.directory = directory
        self.replica = replica
        self.argv: list[str] = []
        self.child: subprocess.Popen[bytes] | None = None
        self.signal: int | None = None
        self.tensorboard: TensorBoardSync | None = None

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
        launch = read_json(self.directory / f"{self.replica}.launch")
        if launch is None or not launch.get("argv"):
            return self._refuse(126, "cannot read its launch file", show=f"{self.replica}.launch")
        self.argv = [str(a) for a in launch["argv"]]
        cwd = str(launch.get("cwd") or self.directory)
        if launch.get("environment"):
            failed = self._prepare_environment(launch)
            if failed is not None:
                return failed
        options: dict[str, Any] = {}
        user = launch.get("user")
        if user:
            options = {
                "user": int(user["uid"]),
                "group": int(user["gid"]),
                "extra_groups": [],
                "umask": REPLICA_UMASK,
            }
        try:
            self.child = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                env={str(k): str(v) for k, v in (launch.get("env") or {}).items()},
                cwd=cwd,
                **options,
            )
        except FileNotFoundError as exc:
            if exc.filename == cwd:
                return self._refuse(126, "cannot enter its working directory", show=cwd)
            return self._refuse(127, "command not found")
        except PermissionError:
            return self._refuse(126, "permission denied")
        except OSError as exc:
            return self._refuse(126, f"cannot run ({exc.strerror or exc})")
        if self.signal is not None:  # arrived between the check above and the child's start
            self.on_signal(self.signal, None)
        self.tensorboard = _tensorboard(launch, self.replica, cwd)
        code = self._wait(self.child)
        _stop_leftovers()
        self._upload(final=True)
        self.finish(code)
        return 0

    def _prepare_environment(self, launch: dict[str, Any]) -> int | None:
        """Build or reuse the launch's environment; the supervisor's return value when the
        replica must not start (the build failed, or a cancel came meanwhile)."""
        from runtimes import venv_build

        build = launch["environment"]
        root = Path(str(launch.get("environment_root") or self.directory / venv_build.ROOT))
        try:
            venv_build.prepare(self.directory, root, build, should_stop=self._stopping)
        except venv_build.Cancelled:
            self.finish(-int(self.signal or signal.SIGTERM), "cancelled while its environment was prepared")
            return 0
        except venv_build.BuildError as exc:
            line = f"environment {build.get('describe')} could not be built: {exc.args[0]}"
            print(line, file=sys.stderr, flush=True)
            self.finish(1, line)
            return 0
        except OSError as exc:
            return self._refuse(
                126, f"cannot prepare its environment ({exc.strerror or exc})", show=str(root)
            )
        if self.signal is not None:
            self.finish(-int(self.signal), "cancelled before it started")
            return 0
        return None

    def _stopping(self) -> bool:
        return self.signal is not None or (self.directory / "cancelled").exists()

    def _wait(self, child: subprocess.Popen[bytes]) -> int:
        """The child's exit code, uploading its TensorBoard files meanwhile."""
        if self.tensorboard is None:
            return child.wait()
        interval = _sync_interval()
        while True:
            try:
                return child.wait(timeout=interval)
            except subprocess.TimeoutExpired:
                self._upload(final=False)

    def _upload(self, *, final: bool) -> None:
        if self.tensorboard is None:
            return
        try:
            from runtimes.tensorboard_sync import FINAL_BUDGET

            self.tensorboard.sync(FINAL_BUDGET if final else None)
        except Exception as exc:  # noqa: BLE001 - the exit record matters more than the upload
            print(f"submarine-broker: tensorboard upload failed: {exc!r}", file=sys.stderr, flush=True)

    def _refuse(self, code: int, reason: str, *, show: str | None = None) -> int:
        what = show if show is not None else self.argv[0]
        print(f"{reason}: {what}", file=sys.stderr, flush=True)
        self.finish(code, f"{reason}: {what!r}")
        return 0


def _sync_interval() -> float:
    from runtimes.tensorboard_sync import INTERVAL

    return INTERVAL


def _tensorboard(launch: dict[str, Any], replica: str, cwd: str) -> TensorBoardSync | None:
    """The uploader of the replica's TensorBoard folder, or None (no tracking environment, or
    the module cannot be loaded: the replica runs as it would without it)."""
    try:
        from runtimes.tensorboard_sync import TensorBoardSync

        env = {str(k): str(v) for k, v in (launch.get("env") or {}).items()}
        user = launch.get("user")
        sync = TensorBoardSync(env, replica, cwd, owner=int(user["uid"]) if user else None)
        return sync if sync.enabled else None
    except Exception as exc:  # noqa: BLE001 - never a reason not to supervise
        print(f"submarine-broker: no tensorboard upload: {exc!r}", file=sys.stderr, flush=True)
        return None


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
    """Parse ``--dir D --replica NAME`` and supervise one replica."""
    parser = argparse.ArgumentParser(prog="clusters.local.supervise")
    parser.add_argument("--dir", required=True, type=Path, help="the attempt folder")
    parser.add_argument("--replica", required=True, help="the replica name, e.g. worker-0")
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return _Supervisor(options.dir, options.replica).run()


if __name__ == "__main__":
    sys.exit(main())
