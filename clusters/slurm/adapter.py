"""The ``slurm`` cluster adapter: one attempt is one Slurm batch job with one task per replica.

The job's shape and script are :mod:`clusters.slurm.script`'s; each task runs one replica through
:mod:`runtimes.slurm_task`. The adapter talks to Slurm through :mod:`clusters.slurm.cli` (the
commands on the broker host) or :mod:`clusters.slurm.rest` (slurmrestd), per the cluster file's
``mode``, and reads the attempt's folder on the shared ``work_dir`` (:mod:`clusters.slurm.jobdir`)
for logs and for which replica failed with which code.

* submit: the job named ``sb-<uid>`` is looked up first (``squeue --name``, or the REST job
  list; then the ``job_id`` file its script left in the attempt's folder), so a repeated submit
  returns the existing job.
* poll: one ``squeue --jobs`` (one ``GET /jobs``) for every handle. A job Slurm has forgotten
  (``MinJobAge`` after its end) is read from its folder: ``job.exit`` and the replicas' exit files
  tell how it ended; only a job with no trace at all is NOT_FOUND. A controller that does not
  answer raises ClusterUnreachable: never a failure on its own.
* addressing: replicas learn their nodes only when the job starts, so plans carry placeholders
  (:mod:`runtimes.rendezvous`, as for Ray) and the tasks fill in hosts and ports at a rendezvous
  in the job's folder.
* owned: the broker's live jobs, by the ``submarine-broker cluster=<name>`` comment.
* health: reachable when ``sinfo`` (``GET /nodes``) answers; capacity from the usable nodes.
* environments: the job's tasks build a plan's environment (a venv per hash in
  ``<work_dir>/environments``, :mod:`runtimes.venv_build`) before the replicas start. While the
  job's ``environment.json`` is not ``ready`` a running job is reported PENDING, "building
  environment <name> (<n> packages) on <cluster>"; a job whose build failed fails with category
  ``environment`` and the installer's error line; ``environment.log`` is the attempt's log
  ``environment``. ``ENVIRONMENT_CACHE``: ``prepare_environment`` submits a build job
  (:mod:`clusters.slurm.prebuild`, on a compute node: the broker host's Python, libraries and
  architecture need not be the nodes') and waits for it; it and ``drop_environment`` need the
  broker to see ``work_dir``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clusters.base import Capability, Handle, Health, Observation, Phase, ReplicaLog, ReplicaStatus
from clusters.batch.base import BatchAdapter, NativeState, replica_names
from clusters.batch.base import job_id as handle_job_id
from clusters.errors import ClusterUnreachable, EnvironmentBuildFailed, SubmitRejected
from clusters.slurm import prebuild
from clusters.slurm.backend import JobRecord, SlurmBackend
from clusters.slurm.config import SlurmClusterConfig
from clusters.slurm.jobdir import JobDir
from clusters.slurm.script import MIB, comment_fields, environment_build, job_name, job_request
from clusters.slurm.states import TERMINAL, slurm_state
from runtimes import venv_build
from runtimes.environment import SHORT_HASH, EnvironmentPlan
from runtimes.plan import LaunchPlan, Resources
from runtimes.rendezvous import PlaceholderAddressing
from runtimes.slurm_task import TERMINATED

#: The name of a job's environment build in its logs (``<experiment>-environment``).
ENVIRONMENT_LOG = "environment"
#: Seconds between two looks at a build job, and the longest a build job may take.
PREBUILD_POLL = 1.0
PREBUILD_TIMEOUT = 3600.0


class SlurmAdapter(BatchAdapter):
    """Runs each attempt as one Slurm batch job."""

    kind = "slurm"
    config_model = SlurmClusterConfig
    capabilities = (
        Capability.GPU | Capability.MULTI_NODE | Capability.LISTS_WORK | Capability.ENVIRONMENT_CACHE
    )
    #: Seconds between two looks at a build job, and the longest it may take (then it is cancelled).
    prebuild_poll: float = PREBUILD_POLL
    prebuild_timeout: float = PREBUILD_TIMEOUT

    def __init__(self, config: SlurmClusterConfig, *, data_dir: str) -> None:
        super().__init__(config, data_dir=data_dir)
        self.config: SlurmClusterConfig = config
        self.work_dir = Path(config.work_dir or Path(data_dir) / "clusters" / config.name)
        self.backend: SlurmBackend
        if config.mode == "rest":
            from clusters.slurm.rest import SlurmRest

            self.backend = SlurmRest(config)
        else:
            from clusters.slurm.cli import SlurmCli

            self.backend = SlurmCli(config)

    def job_dir(self, handle_or_uid: Handle | str) -> JobDir:
        """The attempt's folder: the handle's record of it, else ``<work_dir>/<uid>``."""
        if isinstance(handle_or_uid, Handle):
            stored = handle_or_uid.state.get("job_dir")
            return JobDir(stored or self.work_dir / handle_or_uid.uid)
        return JobDir(self.work_dir / handle_or_uid)

    # -- hooks ---------------------------------------------------------------------------------

    def addressing(self, uid: str) -> PlaceholderAddressing:
        """Placeholders the tasks replace with their nodes and ports (see runtimes.slurm_task)."""
        return PlaceholderAddressing()

    def extra_state(self, plan: LaunchPlan, job_id: str) -> dict[str, Any]:
        state: dict[str, Any] = {"job_dir": str(self.work_dir / plan.uid)}
        if plan.environment is not None and plan.environment.installs:
            state["environment"] = plan.environment.describe()
        return state

    def environment_problem(self, env: EnvironmentPlan) -> str | None:
        """Conda packages: the tasks build venvs with pip only."""
        if env.conda:
            return (
                f"Slurm cluster '{self.name}' builds environments with pip only: condaDependencies "
                f"({', '.join(env.conda)}) cannot be installed there"
            )
        return None

    async def find_job(self, plan: LaunchPlan) -> str | None:
        """The job of ``plan.uid`` Slurm lists by name (a live one first), else its folder's record."""
        found = [
            r
            for r in await self.backend.named(job_name(plan.uid))
            if (comment_fields(r.comment) or {}).get("uid") == plan.uid
        ]
        if found:
            live = [r for r in found if r.state.upper() not in TERMINAL]
            return max(live or found, key=lambda r: int(r.job_id) if r.job_id.isdigit() else 0).job_id
        return await asyncio.to_thread(self.job_dir(plan.uid).job_id)

    async def submit_job(self, plan: LaunchPlan) -> str:
        try:
            request = job_request(
                plan,
                cluster=self.name,
                work_dir=str(self.work_dir),
                python=self.config.python,
                pip_args=self.config.pip_args,
                partition=self.config.partition,
                account=self.config.account,
                qos=self.config.qos,
                time_limit=self.config.time_limit,
                rendezvous_timeout=self.config.rendezvous_timeout,
            )
        except ValueError as exc:
            raise SubmitRejected(f"Slurm cluster '{self.name}': {exc}") from None
        if self.config.mode == "cli":
            # The broker host sees work_dir; the job's output file goes there before the script runs.
            try:
                self.work_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SubmitRejected(
                    f"Slurm cluster '{self.name}': cannot create work_dir {self.work_dir}: {exc.strerror}"
                ) from None
        return await self.backend.submit(request)

    async def query_jobs(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        return await self.backend.jobs(job_ids)

    def parse_job(self, handle: Handle, record: JobRecord) -> Observation:
        state = slurm_state(record.state)
        word = record.state.upper()
        if state.phase is Phase.PENDING:
            why = f" ({record.reason})" if record.reason else ""
            return Observation(handle.uid, Phase.PENDING, f"Slurm job {record.job_id}: {state.meaning}{why}")
        if word == "COMPLETING":
            # The batch script has ended; its recorded exit code tells the outcome before Slurm
            # has finished cleaning up (which can take long when the controller was away).
            code = self.job_dir(handle).job_exit()
            if code is not None:
                final = "COMPLETED" if code == 0 else "FAILED"
                return self._ended(handle, record.job_id, final, slurm_state(final), "")
        if state.phase is Phase.RUNNING:
            building = self._building(handle)
            if building is not None:
                return Observation(handle.uid, Phase.PENDING, building)
            names = replica_names(handle)
            message = "" if word == "RUNNING" else f"Slurm job {record.job_id}: {state.meaning}"
            replicas = tuple(ReplicaStatus(n, Phase.RUNNING) for n in names)
            return Observation(handle.uid, Phase.RUNNING, message, None, replicas)
        if state.phase is Phase.UNKNOWN:
            return Observation(handle.uid, Phase.UNKNOWN, f"Slurm job {record.job_id}: {state.meaning}")
        return self._ended(handle, record.job_id, word, state, record.reason)

    async def forgotten_job(self, handle: Handle) -> Observation | None:
        """The end of a job Slurm no longer lists, from the files it left; None if there are none."""
        return await asyncio.to_thread(self._forgotten, handle)

    def _forgotten(self, handle: Handle) -> Observation | None:
        folder = self.job_dir(handle)
        names = replica_names(handle)
        code = folder.job_exit()
        ends = folder.ends(names)
        jid = handle.state.get("job_id", "?")
        if code is not None:
            word = "COMPLETED" if code == 0 else "FAILED"
        elif any(e.failed for e in ends.values()):
            word = "FAILED"
        elif any(e.stopped == TERMINATED for e in ends.values()):
            word = "CANCELLED"  # scancel (or a time limit) before the batch script could record it
        elif names and len(ends) == len(names):
            word = "COMPLETED"
        else:
            return None  # no trace of an end: lost (or never started)
        return self._ended(handle, str(jid), word, slurm_state(word), "", folder)

    async def cancel_job(self, handle: Handle) -> None:
        await self.backend.cancel(handle_job_id(handle))

    async def read_logs(self, handle: Handle, names: Sequence[str]) -> dict[str, list[str]]:
        folder = self.job_dir(handle)
        return await asyncio.to_thread(lambda: {n: folder.log(n) for n in names})

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        """The replicas' output, after the environment build's (``environment``) when there is one."""
        if not handle.state.get("environment") or replica not in (None, ENVIRONMENT_LOG):
            return await super().logs(handle, replica, tail)
        folder = self.job_dir(handle)
        lines = await asyncio.to_thread(folder.log, ENVIRONMENT_LOG)  # environment.log
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        build = ReplicaLog(ENVIRONMENT_LOG, lines)
        return [build] if replica == ENVIRONMENT_LOG else [build, *await super().logs(handle, None, tail)]

    # -- environments ------------------------------------------------------------------------

    def _building(self, handle: Handle) -> str | None:
        """The status message of a job whose tasks still prepare its environment, else None."""
        described = handle.state.get("environment")
        if not described:
            return None
        if not self.work_dir.is_dir():
            return None  # the broker does not see the shared work_dir: no news of the build
        folder = self.job_dir(handle).path
        status = venv_build.read_status(folder) or {}
        if status.get("state") in (venv_build.READY, venv_build.FAILED):
            return None
        return f"building environment {described} on {self.name}"

    @property
    def environments(self) -> Path:
        """The shared cache of environment builds."""
        return self.work_dir / venv_build.ROOT

    async def prepare_environment(self, env: EnvironmentPlan) -> None:
        """Build ``env`` in ``<work_dir>/environments`` with a build job and wait for its end."""
        problem = self.environment_problem(env)
        if problem is not None:
            raise EnvironmentBuildFailed(problem)
        build = environment_build(env, self.config.pip_args)
        if build is None:
            return
        root = self.environments
        if not await asyncio.to_thread(self.work_dir.is_dir):
            raise EnvironmentBuildFailed(
                f"Slurm cluster '{self.name}': the broker does not see work_dir {self.work_dir}, where "
                "builds are kept; the first job of the environment builds it instead"
            )
        await asyncio.to_thread(root.mkdir, exist_ok=True)
        if await asyncio.to_thread(venv_build.is_built, root, env.short_hash):
            return
        request = prebuild.build_request(
            build,
            cluster=self.name,
            root=root,
            python=self.config.python,
            partition=self.config.partition,
            account=self.config.account,
            qos=self.config.qos,
            time_limit=self.config.time_limit,
        )
        try:
            job = await self.backend.submit(request)
        except SubmitRejected as exc:
            raise EnvironmentBuildFailed(f"Slurm refused the build job: {exc}") from None
        state = await self._wait_for_job(job)
        if await asyncio.to_thread(venv_build.is_built, root, env.short_hash):
            return
        why = await asyncio.to_thread(prebuild.failure, root, env.short_hash)
        raise EnvironmentBuildFailed(why or f"the build job {job} ended {state} without a build")

    async def _wait_for_job(self, job: str) -> str:
        """The final state of job ``job`` (cancelled after :attr:`prebuild_timeout` seconds)."""
        deadline = time.monotonic() + self.prebuild_timeout
        while True:
            record = (await self.backend.jobs([job])).get(job)
            if record is None:
                return "(no longer listed)"
            if record.state.upper() in TERMINAL:
                return record.state.upper()
            if time.monotonic() > deadline:
                await self.backend.cancel(job)
                raise EnvironmentBuildFailed(
                    f"the build job {job} did not end within {self.prebuild_timeout:g}s (cancelled)"
                )
            await asyncio.sleep(self.prebuild_poll)

    async def drop_environment(self, env_hash: str) -> bool:
        """Remove the build of ``env_hash`` from the shared cache (False when the broker does not
        see ``work_dir``)."""
        short = env_hash[:SHORT_HASH]
        if not short.isalnum() or not await asyncio.to_thread(self.work_dir.is_dir):
            return False
        return await asyncio.to_thread(venv_build.drop, self.environments, short)

    def _environment_failure(self, handle: Handle, folder: JobDir) -> str | None:
        """The installer's error line when the job's environment build failed, else None."""
        if not handle.state.get("environment"):
            return None
        status = venv_build.read_status(folder.path) or {}
        if status.get("state") != venv_build.FAILED:
            return None
        return f"environment {handle.state['environment']} could not be built: {status.get('message')}"

    # -- how a job ended ---------------------------------------------------------------------

    def _ended(
        self,
        handle: Handle,
        jid: str,
        word: str,
        state: NativeState,
        reason: str,
        folder: JobDir | None = None,
    ) -> Observation:
        """The observation of a finished job: its state word, with the replicas' own ends."""
        names = replica_names(handle)
        folder = folder or self.job_dir(handle)
        ends = folder.ends(names)
        succeeded = state.phase is Phase.SUCCEEDED
        replicas = []
        for name in names:
            end = ends.get(name)
            if end is None:
                phase = Phase.SUCCEEDED if succeeded else Phase.FAILED
                replicas.append(ReplicaStatus(name, phase, None, "" if succeeded else "did not finish"))
            elif end.failed:
                replicas.append(ReplicaStatus(name, Phase.FAILED, end.code, end.describe()))
            elif end.stopped and not succeeded:
                replicas.append(ReplicaStatus(name, Phase.FAILED, end.code, f"stopped: {end.stopped}"))
            else:
                replicas.append(ReplicaStatus(name, Phase.SUCCEEDED, end.code))
        if succeeded:
            return Observation(handle.uid, Phase.SUCCEEDED, "all replicas finished", None, tuple(replicas))
        environment = self._environment_failure(handle, folder)
        if environment is not None:
            return Observation(handle.uid, Phase.FAILED, environment, "environment", tuple(replicas))
        failed = next((r for r in replicas if ends.get(r.name) and ends[r.name].failed), None)
        if word == "FAILED" and failed is not None:
            end = ends[failed.name]
            category = "killed" if end.code is not None and end.code < 0 else "exit_code"
            message = f"replica {failed.name} {end.describe()}"
            return Observation(handle.uid, Phase.FAILED, message, category, tuple(replicas))
        message = f"Slurm job {jid} {state.meaning}"
        if reason and reason not in ("None", word):
            message += f" ({reason})"
        if word == "FAILED" and (last := folder.batch_tail()):
            message += f": {last}"
        return Observation(handle.uid, Phase.FAILED, message, state.failure_category, tuple(replicas))

    # -- the rest of the protocol ------------------------------------------------------------

    async def health(self) -> Health:
        """Reachable when the controller lists the nodes; capacity from the usable ones."""
        try:
            nodes = await self.backend.nodes()
        except ClusterUnreachable as exc:
            return Health(reachable=False, message=str(exc))
        usable = [n for n in nodes if n.usable]
        cpu_total = sum(n.cpus for n in usable)
        mem_total = sum(n.memory_mb for n in usable) * MIB
        gpu_total = sum(n.gpus for n in usable)
        cpu_used = sum(min(n.alloc_cpus, n.cpus) for n in usable)
        mem_used = sum(min(n.alloc_memory_mb, n.memory_mb) for n in usable) * MIB
        gpu_used = sum(min(n.gpus_used, n.gpus) for n in usable)
        total = self.config.capacity.apply(Resources(cpu=float(cpu_total), memory=mem_total, gpu=gpu_total))
        free = total.minus(Resources(cpu=float(cpu_used), memory=mem_used, gpu=gpu_used))
        message = f"{len(usable)} of {len(nodes)} nodes usable" if len(usable) < len(nodes) else ""
        return Health(reachable=True, total=total, free=free, message=message)

    async def owned(self) -> list[Handle]:
        """The broker's pending and running jobs on this cluster, by their comment."""
        handles = []
        for record in await self.backend.active():
            fields = comment_fields(record.comment)
            if fields is None or fields.get("cluster") != self.name or not fields.get("uid"):
                continue
            if record.state.upper() in TERMINAL:
                continue
            uid = fields["uid"]
            folder = self.job_dir(uid)
            names = await asyncio.to_thread(folder.replica_names)
            state = {
                "job_id": record.job_id,
                "replicas": names,
                "success_roles": [],
                "job_dir": str(folder.path),
            }
            handles.append(Handle(uid, state))
        return handles

    async def close(self) -> None:
        await self.backend.close()
