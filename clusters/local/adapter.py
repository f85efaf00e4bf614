"""The ``local`` cluster adapter: each replica is a supervised process group on this host.

An attempt lives in ``<work_dir>/<uid>/`` (mode 0700, the broker's): ``plan.json``, and per
replica ``NAME.launch`` (what to start: argv, environment, working directory, user; created
exclusively before the replica is spawned, so it is never spawned twice), ``NAME.pid`` and
``NAME.exit`` (written by :mod:`clusters.local.supervise`) and ``NAME.log``, each readable by the
broker's user alone. Everything the adapter reports is read back from these files and the process
table, so a fresh adapter (after a broker restart) re-attaches from the handle alone; a pid only
counts as ours while its start time matches the recorded one.

With ``run_as`` a replica runs as its namespace's user (:mod:`clusters.local.users`) in a working
directory of that user's own, ``<work_dir>/.workdirs/<key>`` (mode 0700; the key is the notebook
id for a notebook, so its files outlive attempts, else the attempt uid), which is also its
``HOME``. ``<work_dir>`` and ``.workdirs`` are then 0711: the users pass through to their own
folder and list nothing. Without ``run_as`` replicas run as the broker's user in the attempt folder
(a notebook in ``.workdirs/<id>``), as they always did.

A serve plan's replicas (model servers, :mod:`runtimes.serving`) each run in a folder of their
own under that working directory, ``<cwd>/server-<i>``, where each downloads the model's files;
``endpoints`` lists the address of every one that runs (what the broker's proxy balances over).

A plan with an environment that installs packages (``plan.environment``) runs in a virtual
environment built once per environment hash in ``<work_dir>/environments/<short_hash>``
(:mod:`runtimes.venv_build`): the launch file names it, and each replica's supervisor prepares it
before it starts the replica (the first builds, under a lock; the others, and later attempts of
any experiment with the same hash, reuse it), then runs the replica with the venv's ``bin`` first
on ``PATH``, so ``python`` is the venv's (a serve's model servers also get, first on
``PYTHONPATH``, a folder holding only the broker's ``runtimes`` package). The build runs in the
supervisors, not in ``submit``: it takes minutes, and a supervisor outlives a broker restart.
Meanwhile ``poll`` reports the attempt PENDING, "building environment <name> (<n> packages) on
<cluster>"; a failed build fails it with category ``environment`` and the installer's error
line; the build's output is the attempt's log ``environment``. An environment's image is not
applied here (the kind runs no containers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import stat
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
    ReplicaStatus,
    summarise,
)
from clusters.config import ClusterConfig
from clusters.errors import EnvironmentBuildFailed, SubmitRejected, WorkloadNotFound
from clusters.local import interpreters, supervise, users
from clusters.local.config import BROKER_USER, LocalClusterConfig
from clusters.local.environment import (
    replica_environment,
    runtimes_folder,
    supervisor_environment,
    with_runtimes,
)
from clusters.local.processes import (
    create_json_exclusive,
    is_ours,
    live_records,
    read_json,
    read_lines,
    replica_status,
    signal_group,
    write_json_atomic,
)
from clusters.local.users import Account, NoSuchUser
from runtimes import venv_build
from runtimes.environment import SHORT_HASH, EnvironmentPlan
from runtimes.plan import ZERO, LaunchPlan, ReplicaPlan, Resources, StaticAddressing
from runtimes.serving import KIND as SERVE
from runtimes.tensorboard_sync import absolute_env

#: The directory holding the ``clusters`` package, from which the supervisor imports it.
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
_WORKDIR_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: Mode of the folders run-as users pass through to their own (traverse, never list).
_PASS_THROUGH = 0o711
_PRIVATE = 0o700
#: The name of an attempt's environment build in its logs (``<experiment>-environment``).
ENVIRONMENT_LOG = "environment"


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (bound to port 0, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalAdapter(ClusterAdapter):
    """Runs every replica of a plan as a subprocess group on the broker's host."""

    kind = "local"
    config_model = LocalClusterConfig
    endpoint_per_replica = True
    capabilities = (
        Capability.ENDPOINTS
        | Capability.LISTS_WORK
        | Capability.RELEASES_WORKDIRS
        | Capability.BROKER_HOST
        | Capability.ENVIRONMENT_CACHE
    )

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
        self.environments = self.work_dir / venv_build.ROOT

    @classmethod
    def host_user_problem(cls, config: ClusterConfig, *, multi_user: bool) -> tuple[str, str] | None:
        """See :func:`clusters.local.users.host_user_problem`."""
        if not isinstance(config, LocalClusterConfig):
            return None
        return users.host_user_problem(config, multi_user=multi_user)

    def refuses_namespace(self, namespace: str) -> str | None:
        """A namespace the ``run_as`` map does not cover (and no ``"*"``) cannot run here."""
        if self.config.run_as_for(namespace) is None:
            return users.namespace_refusal(namespace)
        return None

    @property
    def switches_users(self) -> bool:
        """Whether some work here runs as a user other than the broker's."""
        me = users.broker_user()
        return any(u not in (BROKER_USER, me) for u in self.config.run_as_users())

    # -- environments ------------------------------------------------------------------------

    def environment_problem(self, env: EnvironmentPlan) -> str | None:
        """Conda packages without conda or mamba on PATH, or a Python version this host lacks."""
        if env.conda and venv_build.conda_executable() is None:
            return (
                f"cluster '{self.name}' has no conda or mamba on PATH to install condaDependencies "
                f"({', '.join(env.conda)}); use pipDependencies, or install conda on the host"
            )
        if env.installs:
            problem = self._interpreter(env.python)[1]
            if problem is not None:
                return f"cluster '{self.name}': {problem}"
        return None

    def _interpreter(self, version: str | None) -> tuple[str | None, str | None]:
        """The Python to build a venv of ``version`` from, or why there is none (see
        :mod:`clusters.local.interpreters`)."""
        me = users.broker_user()
        accounts = []
        for name in self.config.run_as_users():
            if name not in (BROKER_USER, me):
                with contextlib.suppress(NoSuchUser):
                    accounts.append(users.account(name))
        configured = str(self.config.environment_python) if self.config.environment_python else None
        return interpreters.choose(version, configured, tuple(accounts))

    def build_spec(self, env: EnvironmentPlan) -> dict[str, object]:
        """What a supervisor (or ``prepare_environment``) builds for ``env``."""
        return venv_build.spec(
            env,
            interpreter=self._interpreter(env.python)[0],
            pip_args=self.config.pip_args,
            uv=shutil.which("uv") or "",  # the broker's PATH: supervisors have the system's only
        )

    async def prepare_environment(self, env: EnvironmentPlan) -> None:
        """Build ``env`` in ``<work_dir>/environments`` now (in a thread), its output in
        ``<short_hash>.log`` beside it; a build there is reused, one under way waited for."""
        problem = self.environment_problem(env)
        if problem is not None:
            raise EnvironmentBuildFailed(problem)
        if not env.installs:
            return
        log_path = self.environments / f"{env.short_hash}.log"

        def build() -> None:
            self._prepare_work_dir()
            self.environments.mkdir(exist_ok=True)

            def log(line: str) -> None:
                with log_path.open("a", encoding="utf-8") as out:
                    out.write(line + "\n")

            venv_build.ensure(self.environments, self.build_spec(env), log)

        try:
            await asyncio.to_thread(build)
        except venv_build.BuildError as exc:
            raise EnvironmentBuildFailed(str(exc.args[0])) from None
        except OSError as exc:
            raise EnvironmentBuildFailed(
                f"cannot build in {self.environments} on cluster '{self.name}': {exc.strerror or exc}"
            ) from None

    async def drop_environment(self, env_hash: str) -> bool:
        """Remove the venv of ``env_hash`` (under its lock: a build under way is waited for)."""
        short = env_hash[:SHORT_HASH]
        if not re.fullmatch(r"[0-9a-f]+", short):
            return False

        def drop() -> bool:
            gone = venv_build.drop(self.environments, short)
            with contextlib.suppress(OSError):
                (self.environments / f"{short}.log").unlink()
            return gone

        return await asyncio.to_thread(drop)

    def environment_of(self, plan: LaunchPlan | None) -> EnvironmentPlan | None:
        """The plan's environment when it installs something (else replicas run as they are)."""
        env = plan.environment if plan is not None else None
        return env if env is not None and env.installs else None

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
        """``http://host:port`` of the attempt's first running replica that was given a port."""
        found = await self.endpoints(handle)
        return next(iter(found.values()), None)

    async def endpoints(self, handle: Handle) -> dict[str, str]:
        """``http://host:port`` by replica name of each replica given a port that runs now, in
        plan order (a served model's replicas; a notebook's one server)."""
        attempt = self._attempt_dir(handle)
        plan = await asyncio.to_thread(self._plan, handle.uid, attempt)
        if plan is None:
            return {}
        return {
            r.name: f"http://{r.host}:{r.port}"
            for r in plan.replicas
            if r.port and replica_status(attempt, r.name).phase is Phase.RUNNING
        }

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
        found: list[Handle] = []
        if not self.work_dir.is_dir():
            return found
        for attempt in sorted(p for p in self.work_dir.iterdir() if p.is_dir()):
            plan = self._plan(attempt.name, attempt)
            if plan is None:
                continue
            names = [r.name for r in plan.replicas]
            if any(replica_status(attempt, n).phase in (Phase.RUNNING, Phase.PENDING) for n in names):
                found.append(Handle.for_plan(plan, dir=str(attempt)))
        return found

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        """Each replica's ``NAME.log`` in plan order (the primary first)."""
        return await asyncio.to_thread(self._logs, handle, replica, tail)

    # -- submit --------------------------------------------------------------------------------

    def _submit(self, plan: LaunchPlan) -> Handle:
        try:
            user = users.account_for(self.config, plan.namespace)
        except LookupError as exc:  # NoSuchUser too: the host lost a user the file names
            raise SubmitRejected(f"cluster '{self.name}' {exc.args[0]}") from None
        attempt = self.work_dir / plan.uid
        try:
            self._prepare_work_dir()
            attempt.mkdir(mode=_PRIVATE, exist_ok=True)
            attempt.chmod(_PRIVATE)
            if not (attempt / "plan.json").exists():
                # The env may hold secrets: readable by the broker's user only.
                write_json_atomic(attempt / "plan.json", plan.model_dump(mode="json"))
        except OSError as exc:
            raise SubmitRejected(
                f"cannot create the attempt folder {attempt} on cluster '{self.name}': {exc.strerror or exc}"
            ) from None
        self._plans[plan.uid] = plan
        self._active[plan.uid] = attempt
        cwd = self._workdir(plan, user) or attempt
        env = self.environment_of(plan)
        build = self.build_spec(env) if env is not None else None
        if build is not None:
            try:
                self.environments.mkdir(exist_ok=True)
            except OSError as exc:
                raise SubmitRejected(
                    f"cannot create {self.environments} on cluster '{self.name}': {exc.strerror or exc}"
                ) from None
        runtimes_path: Path | None = None
        if build is not None and plan.workload_kind == SERVE:
            # The model server imports runtimes; the built venv has none of the broker's packages.
            try:
                runtimes_path = runtimes_folder(self.environments)
            except OSError as exc:
                raise SubmitRejected(
                    f"cannot link the runtimes package in {self.environments} on cluster "
                    f"'{self.name}': {exc.strerror or exc}"
                ) from None
        for replica in plan.replicas:
            here = self._replica_dir(cwd, replica, user) if plan.workload_kind == SERVE else cwd
            self._spawn(attempt, replica, here, user, build, runtimes_path)
        return Handle.for_plan(plan, dir=str(attempt))

    def _replica_dir(self, cwd: Path, replica: ReplicaPlan, user: Account | None) -> Path:
        """``<cwd>/<replica>``: each model server of a serve downloads its files apart (two
        writing one ``./model`` would race)."""
        path = cwd / replica.name
        try:
            path.mkdir(mode=_PRIVATE, exist_ok=True)
            if user is not None:
                os.chown(path, user.uid, user.gid)
        except OSError as exc:
            raise SubmitRejected(
                f"cannot create the working directory {path}: {exc.strerror or exc}"
            ) from None
        return path

    def _prepare_work_dir(self) -> None:
        """Create the work directory; when users are switched, one they pass through (0711)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.switches_users:
            self.work_dir.chmod(_PASS_THROUGH)
            workdirs = self.work_dir / ".workdirs"
            workdirs.mkdir(exist_ok=True)
            workdirs.chmod(_PASS_THROUGH)

    def _workdir(self, plan: LaunchPlan, user: Account | None) -> Path | None:
        """The replicas' working directory when not the attempt folder: ``<work_dir>/.workdirs/<key>``
        for a plan with a ``workdir`` key (kept across attempts), or for any plan run as another
        user (key: the attempt uid); that user's own, mode 0700."""
        key = plan.workdir if plan.workdir is not None else (plan.uid if user is not None else None)
        if key is None:
            return None
        if not _WORKDIR_KEY.match(key):
            raise SubmitRejected(f"cluster '{self.name}': unusable working directory key '{key}'")
        path = self.work_dir / ".workdirs" / key
        try:
            path.mkdir(mode=_PRIVATE, parents=True, exist_ok=True)
            if user is not None:
                _give(path, user)
            path.chmod(_PRIVATE)
        except OSError as exc:
            why = exc.strerror or exc
            raise SubmitRejected(f"cannot create the working directory {path}: {why}") from None
        return path

    def _spawn(
        self,
        attempt: Path,
        replica: ReplicaPlan,
        cwd: Path,
        user: Account | None,
        build: dict[str, object] | None = None,
        runtimes_path: Path | None = None,
    ) -> None:
        """Start one replica's supervisor unless its launch file says it was started already;
        ``runtimes_path`` goes first on its ``PYTHONPATH`` (a model server in a built venv)."""
        name = replica.name
        env = replica_environment(
            replica.env, passthrough=self.config.env_passthrough, user=user, home=cwd if user else None
        )
        env = absolute_env(env, str(cwd))  # SUBMARINE_TENSORBOARD_LOG_DIR in the replica's folder
        launch: dict[str, object] = {
            "argv": list(replica.argv),
            "env": env,
            "cwd": str(cwd),
            "user": user.to_json() if user is not None else None,
        }
        if build is not None:
            venv = venv_build.venv_dir(self.environments, str(build["short_hash"]))
            active = venv_build.activate(env, venv)
            launch["env"] = with_runtimes(active, runtimes_path) if runtimes_path is not None else active
            launch["environment"] = build
            launch["environment_root"] = str(self.environments)
        try:
            if not create_json_exclusive(attempt / f"{name}.launch", launch):
                return
        except OSError as exc:
            raise SubmitRejected(
                f"cannot launch replica {name} in {attempt}: {exc.strerror or exc}"
            ) from None
        try:
            fd = os.open(attempt / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "ab") as log:
                child = subprocess.Popen(
                    supervise.command(sys.executable, _PROJECT_ROOT, attempt, name),
                    cwd=attempt,
                    env=supervisor_environment(),
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
        live = any(r.phase in (Phase.RUNNING, Phase.PENDING) for r in replicas)
        env = self.environment_of(self._plan(handle.uid, attempt))
        if live:
            self._active[handle.uid] = attempt
        else:
            self._forget(handle.uid)
        if env is not None:
            status = venv_build.read_status(attempt) or {}
            if status.get("state") == venv_build.FAILED:
                message = f"environment {env.describe()} could not be built: {status.get('message')}"
                return Observation(handle.uid, Phase.FAILED, message, "environment", tuple(replicas))
            if status.get("state") != venv_build.READY and live:
                message = f"building environment {env.describe()} on {self.name}"
                pending = tuple(
                    ReplicaStatus(r.name, Phase.PENDING) if r.phase is Phase.RUNNING else r for r in replicas
                )
                return Observation(handle.uid, Phase.PENDING, message, None, pending)
        plan = self._plan(handle.uid, attempt)
        if plan is not None and plan.workload_kind == SERVE:
            degraded = _serving_on(handle.uid, replicas)
            if degraded is not None:
                return degraded
        return summarise(handle.uid, roles, replicas)

    def _health(self) -> Health:
        host = Resources(cpu=float(os.cpu_count() or 1), memory=psutil.virtual_memory().total, gpu=0)
        total = self.config.capacity.apply(host)
        try:
            self._prepare_work_dir()
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
        free = total.minus(used)
        problem = self._run_as_problem()
        return Health(
            reachable=True,
            total=total,
            free=free,
            running=running,
            usable=problem is None,
            message=problem or "",
        )

    def _run_as_problem(self) -> str | None:
        """Why work cannot start as the run-as users: one is gone, or cannot reach the work directory."""
        me = users.broker_user()
        if self.switches_users and not users.can_switch_users():
            return f"run_as switches users, which needs a broker running as root (it runs as {me})"
        for name in self.config.run_as_users():
            if name in (BROKER_USER, me):
                continue
            try:
                account = users.account(name)
            except NoSuchUser as exc:
                return str(exc)
            blocked = users.unreachable_folder(account, self.work_dir)
            if blocked is not None:
                return (
                    f"run-as user {name} cannot reach the work directory {self.work_dir}: it may not "
                    f"enter {blocked}; set work_dir to a folder others may pass through (e.g. "
                    f"/srv/submarine-broker/{self.name}), outside the broker's private data directory"
                )
        return None

    def _logs(self, handle: Handle, replica: str | None, tail: int | None) -> list[ReplicaLog]:
        attempt = self._attempt_dir(handle)
        if not attempt.is_dir():
            raise WorkloadNotFound(f"attempt {handle.uid} has nothing on cluster '{self.name}'")
        names = self._replica_names(handle, attempt)
        building = self.environment_of(self._plan(handle.uid, attempt)) is not None
        if replica == ENVIRONMENT_LOG and building:
            return [ReplicaLog(ENVIRONMENT_LOG, read_lines(attempt / venv_build.LOG, tail))]
        if replica is not None:
            if replica not in names:
                raise WorkloadNotFound(
                    f"attempt {handle.uid} has no replica '{replica}'; its replicas are {', '.join(names)}"
                )
            names = [replica]
        out = [ReplicaLog(name, read_lines(attempt / f"{name}.log", tail)) for name in names]
        if building and replica is None:
            out.insert(0, ReplicaLog(ENVIRONMENT_LOG, read_lines(attempt / venv_build.LOG, tail)))
        return out


def _serving_on(uid: str, replicas: Sequence[ReplicaStatus]) -> Observation | None:
    """A serve whose replicas partly ended while others still serve: RUNNING, saying which ended
    (the proxy sends requests to the others; a gang rule would stop them all). None otherwise."""
    serving = [r for r in replicas if r.phase is Phase.RUNNING]
    ended = [r for r in replicas if r.phase in (Phase.FAILED, Phase.SUCCEEDED)]
    if not serving or not ended:
        return None
    gone = ", ".join(f"{r.name} ({_how_it_ended(r)})" for r in ended)
    message = f"{len(serving)} of {len(replicas)} replicas serve; ended: {gone}"
    return Observation(uid, Phase.RUNNING, message, None, tuple(replicas))


def _how_it_ended(replica: ReplicaStatus) -> str:
    if replica.message:
        return replica.message
    return f"exit code {replica.exit_code}" if replica.exit_code is not None else "ended"


def _give(path: Path, user: Account) -> None:
    """Make ``path`` (a working directory) ``user``'s, with what its previous owner had in it.

    Only entries of the previous owner move, each changed through a descriptor opened without
    following links (a link itself is changed, never its target), and never a file with other
    hard links: what a previous owner left inside cannot steer the change to anything else.
    """
    info = path.stat()
    if (info.st_uid, info.st_gid) == (user.uid, user.gid):
        return
    previous = info.st_uid
    for _root, dirs, files, dir_fd in os.fwalk(path, follow_symlinks=False):
        for entry in (*dirs, *files):
            _give_entry(entry, dir_fd, previous, user)
    os.chown(path, user.uid, user.gid)


def _give_entry(name: str, dir_fd: int, previous: int, user: Account) -> None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dir_fd)
    except OSError:  # a link (ELOOP), a socket, or gone: a link is changed in place, the rest left
        with contextlib.suppress(OSError):
            if os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_uid == previous:
                os.chown(name, user.uid, user.gid, dir_fd=dir_fd, follow_symlinks=False)
        return
    try:
        info = os.fstat(fd)
        if info.st_uid == previous and (stat.S_ISDIR(info.st_mode) or info.st_nlink == 1):
            os.fchown(fd, user.uid, user.gid)
    finally:
        os.close(fd)
