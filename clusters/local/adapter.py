"""The ``local`` cluster adapter: each replica is a supervised process group on this host.

An attempt lives in ``<work_dir>/<uid>/``: ``plan.json``, and per replica ``NAME.launch``
(created exclusively before the replica is spawned, so it is never spawned twice), ``NAME.pid``
and ``NAME.exit`` (written by :mod:`clusters.local.supervise`) and ``NAME.log``. Everything the
adapter reports is read back from these files and the process table, so a fresh adapter (after a
broker restart) re-attaches from the handle alone; a pid only counts as ours while its start time
matches the recorded one.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from clusters.base import (
    Capability,
    ClusterAdapter,
    Handle,
    Health,
    Observation,
    Phase,
    ReplicaLog,
    summarise,
)
from clusters.errors import SubmitRejected, WorkloadNotFound
from clusters.local.config import LocalClusterConfig
from clusters.local.processes import (
    PYTHONPATH_RESTORE_VAR,
    is_ours,
    live_records,
    read_json,
    read_lines,
    replica_status,
    signal_group,
    write_json_atomic,
)
from runtimes.plan import ZERO, LaunchPlan, ReplicaPlan, Resources, StaticAddressing

#: The directory holding the ``clusters`` package; the supervisor needs it on PYTHONPATH.
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
_WORKDIR_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (bound to port 0, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalAdapter(ClusterAdapter):
    """Runs every replica of a plan as a subprocess group on the broker's host."""

    kind = "local"
    config_model = LocalClusterConfig
    capabilities = Capability.ENDPOINTS
    runs_on_broker_host = True

    #: Seconds ``cancel`` waits after SIGTERM before it SIGKILLs a replica's group.
    cancel_grace: float = 5.0

    def __init__(self, config: LocalClusterConfig, *, data_dir: str) -> None:
        super().__init__(config, data_dir=data_dir)
        self.config: LocalClusterConfig = config
        # Absolute: the supervisor runs in the attempt folder and is given its path.
        self.work_dir = Path(config.work_dir or Path(data_dir) / "clusters" / config.name).absolute()
        self._active: dict[str, Path] = {}  # uid -> attempt dir, submitted or seen live here
        self._plans: dict[str, LaunchPlan] = {}
        self._children: list[subprocess.Popen[bytes]] = []

    # -- verbs -------------------------------------------------------------------------------

    async def health(self) -> Health:
        """Host CPU and memory (or the configured capacity) and what live attempts hold of it."""
        return await asyncio.to_thread(self._health)

    def addressing(self, uid: str) -> StaticAddressing:
        """Every replica shares 127.0.0.1 and gets a port that was free when asked for."""
        return StaticAddressing(lambda _role, _index: "127.0.0.1", free_port)

    async def submit(self, plan: LaunchPlan) -> Handle:
        """Start each replica not started yet under ``plan.uid``; see :class:`ClusterAdapter`."""
        return await asyncio.to_thread(self._submit, plan)

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Observation]:
        """Observe every handle from its attempt folder and the process table."""
        return await asyncio.to_thread(lambda: {h.uid: self._observe(h) for h in handles})

    async def cancel(self, handle: Handle) -> None:
        """SIGTERM each replica's group, SIGKILL what is left after ``cancel_grace`` seconds."""
        attempt = self._attempt_dir(handle)
        if not attempt.is_dir():
            return
        # The marker first: a supervisor that writes its pid file after we looked will see it.
        (attempt / "cancelled").touch()
        names = self._replica_names(handle, attempt)
        for record in live_records(attempt, names):
            signal_group(record, signal.SIGTERM)
        deadline = time.monotonic() + self.cancel_grace
        while time.monotonic() < deadline and any(
            replica_status(attempt, name).phase in (Phase.RUNNING, Phase.PENDING) for name in names
        ):
            self._reap()
            await asyncio.sleep(0.05)
        killed = [r for r in live_records(attempt, names) if signal_group(r, signal.SIGKILL)]
        deadline = time.monotonic() + 2.0
        while any(is_ours(r) for r in killed) and time.monotonic() < deadline:
            self._reap()
            await asyncio.sleep(0.02)
        self._reap()

    async def endpoint(self, handle: Handle) -> str | None:
        """``http://host:port`` of the attempt's first replica that was given a port, while it runs."""
        attempt = self._attempt_dir(handle)
        plan = await asyncio.to_thread(self._plan, handle.uid, attempt)
        if plan is None:
            return None
        serving = next((r for r in plan.replicas if r.port), None)
        if serving is None or replica_status(attempt, serving.name).phase is not Phase.RUNNING:
            return None
        return f"http://{serving.host}:{serving.port}"

    async def release(self, workdir: str) -> bool:
        """Remove ``<work_dir>/.workdirs/<key>`` (a deleted notebook's files)."""
        if not _WORKDIR_KEY.match(workdir):
            return False
        path = self.work_dir / ".workdirs" / workdir
        await asyncio.to_thread(shutil.rmtree, path, True)
        return not path.exists()

    async def owned(self) -> list[Handle]:
        """Attempts in this cluster's work directory that still have a live replica.

        The work directory is the local kind's origin label: only this cluster's attempts are there.
        """
        return await asyncio.to_thread(self._owned)

    def _owned(self) -> list[Handle]:
        found = []
        if not self.work_dir.is_dir():
            return found
        for attempt in sorted(p for p in self.work_dir.iterdir() if p.is_dir()):
            plan = self._plan(attempt.name, attempt)
            if plan is None:
                continue
            names = [r.name for r in plan.replicas]
            if any(replica_status(attempt, n).phase in (Phase.RUNNING, Phase.PENDING) for n in names):
                state = {"dir": str(attempt), "replicas": names, "success_roles": list(plan.success_roles)}
                found.append(Handle(plan.uid, state))
        return found

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        """Each replica's ``NAME.log`` in plan order (the primary first)."""
        return await asyncio.to_thread(self._logs, handle, replica, tail)

    # -- submit --------------------------------------------------------------------------------

    def _submit(self, plan: LaunchPlan) -> Handle:
        attempt = self.work_dir / plan.uid
        try:
            attempt.mkdir(parents=True, exist_ok=True)
            if not (attempt / "plan.json").exists():
                # The env may hold secrets: readable by the broker's user only.
                write_json_atomic(attempt / "plan.json", plan.model_dump(mode="json"), mode=0o600)
        except OSError as exc:
            raise SubmitRejected(
                f"cannot create the attempt folder {attempt} on cluster '{self.name}': {exc.strerror or exc}"
            ) from None
        self._plans[plan.uid] = plan
        self._active[plan.uid] = attempt
        cwd = self._workdir(plan) or attempt
        for replica in plan.replicas:
            self._spawn(attempt, replica, cwd)
        return Handle(
            plan.uid,
            {
                "dir": str(attempt),
                "replicas": [r.name for r in plan.replicas],
                "success_roles": list(plan.success_roles),
            },
        )

    def _workdir(self, plan: LaunchPlan) -> Path | None:
        """``<work_dir>/.workdirs/<key>`` for a plan with a ``workdir`` key (kept across attempts)."""
        if plan.workdir is None:
            return None
        if not _WORKDIR_KEY.match(plan.workdir):
            raise SubmitRejected(f"cluster '{self.name}': unusable working directory key '{plan.workdir}'")
        path = self.work_dir / ".workdirs" / plan.workdir
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = exc.strerror or exc
            raise SubmitRejected(f"cannot create the working directory {path}: {why}") from None
        return path

    def _spawn(self, attempt: Path, replica: ReplicaPlan, cwd: Path) -> None:
        """Start one replica's supervisor unless its launch file says it was started already."""
        name = replica.name
        try:
            os.close(os.open(attempt / f"{name}.launch", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return
        except OSError as exc:
            raise SubmitRejected(
                f"cannot launch replica {name} in {attempt}: {exc.strerror or exc}"
            ) from None
        env = {**os.environ, **replica.env}
        original = env.get("PYTHONPATH")
        env[PYTHONPATH_RESTORE_VAR] = "" if original is None else "=" + original
        env["PYTHONPATH"] = _PROJECT_ROOT + (os.pathsep + original if original else "")
        command = [sys.executable, "-m", "clusters.local.supervise", "--dir", str(attempt), "--replica", name]
        try:
            with open(attempt / f"{name}.log", "ab") as log:
                child = subprocess.Popen(
                    [*command, "--", *replica.argv],
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            # Launched once already by the file above: record the failure rather than retry.
            write_json_atomic(
                attempt / f"{name}.exit", {"code": 126, "error": f"cannot start the supervisor: {exc}"}
            )
            return
        self._children.append(child)

    def _reap(self) -> None:
        """Collect supervisors of ours that have ended, so they do not linger as zombies."""
        self._children = [c for c in self._children if c.poll() is None]

    # -- observe -------------------------------------------------------------------------------

    def _attempt_dir(self, handle: Handle) -> Path:
        return Path(handle.state.get("dir") or self.work_dir / handle.uid)

    def _plan(self, uid: str, attempt: Path) -> LaunchPlan | None:
        if uid not in self._plans:
            data = read_json(attempt / "plan.json")
            if data is None:
                return None
            try:
                self._plans[uid] = LaunchPlan.model_validate(data)
            except ValueError:  # a damaged plan.json: the handle's own state must do
                return None
        return self._plans[uid]

    def _forget(self, uid: str) -> None:
        """Stop counting an attempt that has no live replica left."""
        self._active.pop(uid, None)
        self._plans.pop(uid, None)

    def _replica_names(self, handle: Handle, attempt: Path) -> list[str]:
        names = handle.state.get("replicas")
        if names:
            return [str(n) for n in names]
        plan = self._plan(handle.uid, attempt)
        return [r.name for r in plan.replicas] if plan else []

    def _observe(self, handle: Handle) -> Observation:
        attempt = self._attempt_dir(handle)
        if not attempt.is_dir():
            self._forget(handle.uid)
            return Observation(handle.uid, Phase.NOT_FOUND, f"no attempt folder {attempt}")
        self._reap()
        names = self._replica_names(handle, attempt)
        if not names:
            return Observation(handle.uid, Phase.NOT_FOUND, f"no plan in the attempt folder {attempt}")
        replicas = [replica_status(attempt, name) for name in names]
        roles = handle.state.get("success_roles")
        if roles is None:
            plan = self._plan(handle.uid, attempt)
            roles = plan.success_roles if plan else []
        if any(r.phase in (Phase.RUNNING, Phase.PENDING) for r in replicas):
            self._active[handle.uid] = attempt
        else:
            self._forget(handle.uid)
        return summarise(handle.uid, roles, replicas)

    def _health(self) -> Health:
        capacity = self.config.capacity
        total = Resources(
            cpu=capacity.cpu if capacity.cpu is not None else float(os.cpu_count() or 1),
            memory=capacity.memory if capacity.memory is not None else psutil.virtual_memory().total,
            gpu=capacity.gpu if capacity.gpu is not None else 0,
        )
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            message = f"cannot create the work directory {self.work_dir}: {exc.strerror or exc}"
            return Health(reachable=False, total=total, free=ZERO, message=message)
        self._reap()
        used, running = ZERO, 0
        for uid, attempt in list(self._active.items()):
            plan = self._plan(uid, attempt)
            live = plan is not None and any(
                replica_status(attempt, r.name).phase in (Phase.RUNNING, Phase.PENDING) for r in plan.replicas
            )
            if not live or plan is None:
                self._forget(uid)
                continue
            used, running = used + plan.total_resources, running + 1
        free = Resources(
            cpu=max(0.0, total.cpu - used.cpu),
            memory=max(0, total.memory - used.memory),
            gpu=max(0, total.gpu - used.gpu),
        )
        return Health(reachable=True, total=total, free=free, running=running)

    def _logs(self, handle: Handle, replica: str | None, tail: int | None) -> list[ReplicaLog]:
        attempt = self._attempt_dir(handle)
        if not attempt.is_dir():
            raise WorkloadNotFound(f"attempt {handle.uid} has nothing on cluster '{self.name}'")
        names = self._replica_names(handle, attempt)
        if replica is not None:
            if replica not in names:
                raise WorkloadNotFound(
                    f"attempt {handle.uid} has no replica '{replica}'; its replicas are {', '.join(names)}"
                )
            names = [replica]
        return [ReplicaLog(name, read_lines(attempt / f"{name}.log", tail)) for name in names]
