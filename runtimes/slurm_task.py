"""The task entry of a broker's Slurm job: run one replica of a launch plan as one Slurm task.

The ``slurm`` cluster kind submits one batch job per attempt; its script writes this file and
``tasks.json`` into the attempt's folder on the shared ``work_dir`` and starts one task per
replica with ``srun --kill-on-bad-exit=1``. Each task runs ``python3 slurm_task.py <job dir>``:

1. ``SLURM_PROCID`` picks the replica (plan order: task 0 is the primary);
2. rendezvous: the task publishes its node (``SLURMD_NODENAME``) and a port free on that node in
   ``<replica>.addr`` and waits until every peer has done the same;
3. the replica's environment in ``tasks.json`` was rendered by the adapter with placeholders in
   place of addresses (``{{host:<replica>}}``, ``{{port:<replica>}}``: TF_CONFIG, MASTER_ADDR/PORT,
   ..., see :mod:`runtimes.rendezvous`); the task replaces them with the published endpoints and
   starts the replica's argv with that environment over its own, output (stdout and stderr) to
   ``<replica>.log``;
4. while the replica runs (every :data:`~runtimes.tensorboard_sync.INTERVAL` seconds) and once it
   has ended, the task uploads its TensorBoard folder (``SUBMARINE_TENSORBOARD_LOG_DIR``, made
   absolute in the job's folder) to the broker with the replica's run token
   (:mod:`runtimes.tensorboard_sync`; a failure is a line in the replica's log);
5. it writes the replica's end to ``<replica>.exit`` (JSON: ``code``, and ``stopped`` when the
   task stopped the replica itself) and exits with the replica's code, so ``srun`` ends the
   step (and the job fails) when a replica fails. A replica that does not decide the run
   (``decides`` in ``tasks.json``, from :meth:`LaunchPlan.deciders`: TensorFlow parameter servers,
   evaluators) is stopped once every replica that decides exited 0; every replica is stopped when
   a peer failed or on SIGTERM (``scancel``, a time limit, or srun ending the step after a failure).

Before step 2, a plan with an environment (``environment`` in ``tasks.json``) has the task
prepare it (:mod:`runtimes.venv_build`): a venv per environment hash in ``<work_dir>/environments``
on the shared file system, built by the first task of the first job that needs it under an
``flock`` and reused by every later job; its output is the job's ``environment.log``, its outcome
``environment.json``. The replica then runs with the venv's ``bin`` first on ``PATH``. A failed
build ends the task with code 1 (and so the job), the installer's error line in its log.

Only the standard library is used: this file, :mod:`runtimes.rendezvous`,
:mod:`runtimes.venv_build` and :mod:`runtimes.tensorboard_sync` are copied to the job's
folder as they are and run by the Python the cluster config names (``python``), without this
project installed there.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__:
    from runtimes import rendezvous, tensorboard_sync, venv_build
else:  # pragma: no cover - run as a file in the job's folder, beside its copies of the others
    import rendezvous  # type: ignore[import-not-found, no-redef]
    import tensorboard_sync  # type: ignore[import-not-found, no-redef]
    import venv_build  # type: ignore[import-not-found, no-redef]

#: Seconds between looks at the peers' files and the replica.
POLL_INTERVAL = 0.25
#: Seconds a stopped replica gets between SIGTERM and SIGKILL.
STOP_GRACE = 3.0
#: Why a task stopped its replica (``stopped`` in ``<replica>.exit``): SIGTERM from Slurm
#: (scancel, a time limit, ``--kill-on-bad-exit``), the run's success, or a failed peer.
TERMINATED = "terminated by Slurm"
FINISHED = "the run finished"


def substitute(env: dict[str, str], endpoints: dict[str, tuple[str, int]]) -> dict[str, str]:
    """``env`` with every host and port placeholder replaced by the published endpoints."""
    return {key: rendezvous.substitute(value, endpoints) for key, value in env.items()}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` so that readers on other nodes never see half a file (rename is atomic)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is missing, half-written or not an object."""
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def free_port() -> int:
    """A port free on this node a moment ago (the replica binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


class _Appender:
    """A text stream appending each write to a file (the replica's log, which the replica's own
    output also appends to)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError), self.path.open("a") as log:
            log.write(text)
        return len(text)

    def flush(self) -> None:
        pass


class Stop(Exception):
    """SIGTERM: the job is being cancelled (or srun ends the step)."""


def _on_term(signum: int, _frame: object) -> None:
    raise Stop(signum)


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: SIGKILL the replica if this task process dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class Task:
    """One replica of the plan, as task ``rank`` of the job step."""

    def __init__(self, job_dir: Path, rank: int) -> None:
        self.dir = job_dir
        self.tasks = json.loads((job_dir / "tasks.json").read_text())
        self.replicas: list[dict[str, Any]] = self.tasks["replicas"]
        self.me = self.replicas[rank]
        self.name: str = self.me["name"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.venv: Path | None = None
        self.tensorboard: tensorboard_sync.TensorBoardSync | None = None

    def path(self, name: str, suffix: str) -> Path:
        return self.dir / f"{name}.{suffix}"

    def say(self, text: str) -> None:
        print(f"[{self.name}] {text}", flush=True)

    # -- rendezvous ------------------------------------------------------------------------------

    def publish(self) -> None:
        host = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
        write_json(self.path(self.name, "addr"), {"host": host, "port": free_port()})

    def wait_for_peers(self) -> dict[str, tuple[str, int]]:
        """Every replica's published endpoint; raises TimeoutError after the plan's timeout."""
        deadline = time.monotonic() + float(self.tasks.get("rendezvous_timeout", 300))
        while True:
            found = {}
            for replica in self.replicas:
                data = read_json(self.path(replica["name"], "addr"))
                if data is not None:
                    found[replica["name"]] = (str(data["host"]), int(data["port"]))
            if len(found) == len(self.replicas):
                return found
            if time.monotonic() > deadline:
                missing = sorted({r["name"] for r in self.replicas} - set(found))
                raise TimeoutError(f"replicas {', '.join(missing)} did not start in time")
            time.sleep(POLL_INTERVAL)

    # -- the replica -----------------------------------------------------------------------------

    def start(self, endpoints: dict[str, tuple[str, int]]) -> int | None:
        """Start the replica; an exit code when it cannot be started at all."""
        env = substitute(self.me["env"], endpoints)
        host, port = endpoints[self.name]
        env["SUBMARINE_REPLICA_HOST"], env["SUBMARINE_REPLICA_PORT"] = host, str(port)
        env = tensorboard_sync.absolute_env(env, os.getcwd())  # the replica runs in the job's folder
        if self.venv is not None:
            env = venv_build.activate({"PATH": os.environ.get("PATH", ""), **env}, self.venv)
        argv = list(self.me["argv"])
        log = self.path(self.name, "log").open("ab")
        try:
            self.tensorboard = tensorboard_sync.TensorBoardSync(
                {**os.environ, **env}, self.name, os.getcwd(), stderr=_Appender(self.path(self.name, "log"))
            )
            self.proc = subprocess.Popen(
                argv,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
            )
        except OSError as exc:
            log.write(f"cannot start {argv[0]!r}: {exc.strerror or exc}\n".encode())
            return 127
        finally:
            log.close()
        return None

    def stop(self) -> int | None:
        """SIGTERM the replica, SIGKILL it after :data:`STOP_GRACE`; its exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.terminate()
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    proc.kill()
                proc.wait()
        return proc.returncode

    def verdict(self) -> str | None:
        """Why to stop this replica now: a peer failed, or the run succeeded without it."""
        deciders = [r["name"] for r in self.replicas if r.get("decides", True)]
        codes = {}
        with os.scandir(self.dir) as entries:  # one listing, then only the exit files there are
            ended = [e.name[: -len(".exit")] for e in entries if e.name.endswith(".exit")]
        for name in ended:
            data = read_json(self.path(name, "exit")) if name != self.name else None
            if data is not None:
                codes[name] = data
        for name, data in codes.items():
            if data.get("code") not in (0, None) and not data.get("stopped"):
                return f"peer {name} failed"
        if not self.me.get("decides", True) and all(codes.get(n, {}).get("code") == 0 for n in deciders):
            return FINISHED
        return None

    def upload(self, budget: float | None = None) -> None:
        """Upload the replica's new TensorBoard files (never raises)."""
        if self.tensorboard is not None:
            self.tensorboard.sync(budget)

    def finish(self, code: int | None, stopped: str | None = None) -> None:
        data: dict[str, Any] = {"code": code}
        if stopped:
            data["stopped"] = stopped
        write_json(self.path(self.name, "exit"), data)

    def prepare_environment(self) -> int | None:
        """Build or reuse the plan's environment; an exit code when the build failed."""
        build = self.tasks.get("environment")
        if not build:
            return None
        root = Path(str(self.tasks.get("environment_root") or self.dir.parent / venv_build.ROOT))
        try:
            self.venv = venv_build.prepare(self.dir, root, build)
        except (venv_build.BuildError, OSError) as exc:
            why = exc.args[0] if isinstance(exc, venv_build.BuildError) else str(exc)
            line = f"environment {build.get('describe')} could not be built: {why}"
            self.say(line)
            with self.path(self.name, "log").open("a") as log:  # where the user will look
                log.write(f"submarine-broker: {line}\n")
            return 1
        return None

    def run(self) -> int:
        try:
            failed = self.prepare_environment()
            if failed is not None:
                self.finish(failed)
                return failed
            self.publish()
            try:
                endpoints = self.wait_for_peers()
            except TimeoutError as exc:
                self.say(str(exc))
                with self.path(self.name, "log").open("a") as log:  # where the user will look
                    log.write(f"submarine-broker: {exc}\n")
                self.finish(1)
                return 1
            failed = self.start(endpoints)
            if failed is not None:
                self.finish(failed)
                return failed
            self.say("started on {}:{}".format(*endpoints[self.name]))
            assert self.proc is not None
            next_upload = time.monotonic() + tensorboard_sync.INTERVAL
            while True:
                code = self.proc.poll()
                if code is not None:
                    self.upload(tensorboard_sync.FINAL_BUDGET)
                    self.finish(code)
                    return code if code >= 0 else 128 - code
                why = self.verdict()
                if why is not None:
                    self.say(f"stopping: {why}")
                    stopped = self.stop()
                    self.upload(tensorboard_sync.FINAL_BUDGET)
                    self.finish(stopped, why)
                    return 0
                if time.monotonic() >= next_upload:
                    self.upload()
                    next_upload = time.monotonic() + tensorboard_sync.INTERVAL
                time.sleep(POLL_INTERVAL)
        except Stop:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the stop short
            self.say(f"stopping: {TERMINATED}")
            self.finish(self.stop(), TERMINATED)
            return 143


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python3 slurm_task.py <job dir>", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_term)
    return Task(Path(args[0]), int(os.environ.get("SLURM_PROCID", "0"))).run()


if __name__ == "__main__":
    sys.exit(main())
