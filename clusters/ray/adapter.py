"""The ``ray`` cluster adapter: one attempt is one Ray job, gang-started by :mod:`runtimes.ray_launcher`.

The job's ``submission_id`` is ``sb-<uid>`` and its metadata carries the broker marker
(``submarine-broker: "1"``), the cluster name, the experiment and the uid, so a restarted broker
finds its jobs by id (handles) and by marker (:meth:`RayAdapter.owned`). Every call goes through
Ray's synchronous ``JobSubmissionClient`` in a worker thread; the client is created lazily (its
constructor asks the version) and reused. Health reads the dashboard's REST API with httpx, and
checks once per adapter (and after an outage) that ``entrypoint_python`` can import Ray, with a
probe job (:mod:`clusters.ray.probe`): a cluster that cannot is reachable but not usable.
A FAILED job's reason names its cause from the log lines Ray keeps in its message
(:func:`failure_message`).

Addressing: replicas learn their addresses only when their actors run, so plans bound to a Ray
cluster carry placeholders (hosts ``{{host:<replica>}}``, port 0) and the launcher rebuilds the
framework environment (TF_CONFIG, MASTER_ADDR, ...) from the nodes' real IPs and free ports.

Notebooks (``Capability.ENDPOINTS``): a notebook attempt is a Ray job like any other, whose one
replica (``notebook-0``, one actor) runs the Jupyter server and keeps the job RUNNING while it
serves. The launcher resolves the server's ``--ip={{host:notebook-0}} --port=0`` to the node's IP
and a port free on it, and prints one driver line ``submarine-broker: endpoint notebook-0
http://<ip>:<port>`` once the server process has started. :meth:`RayAdapter.endpoint` asks the job's
status and, while it is RUNNING, reads that line back from the job log (``get_job_logs``: the driver
line comes before any replica output and replica lines are always prefixed, so a notebook cannot
forge it); until then it returns None. The broker must be able to reach the node's IP (the address
Ray knows the node by), and the plan's interpreter (the broker's ``notebooks.python``, by default
the broker's own) must exist on the nodes with Jupyter and ipykernel installed. ``stop_job``
SIGTERMs the driver, which stops the server's process group and then kills what it left outside
the group (Jupyter's kernels run in sessions of their own). Ray SIGKILLs a stopped driver after
``RAY_JOB_STOP_WAIT_TIME_S`` (3 s by default, too short for Jupyter's kernel shutdown on top of
the launcher's own work), so every job's runtime_env sets it to :data:`STOP_WAIT_S`: the job's
supervisor actor, which applies it, runs with that runtime_env.

The notebook's files: the plan's ``workdir`` key (the notebook id) becomes the replica's working
directory ``<workdir_base>/<key>`` on its node (config ``workdir_base``, default
``<system temp dir>/submarine-broker-workdirs``). Nothing moves files between nodes: a stopped
notebook finds them again only when it starts on the same node (always on a single-node cluster),
unless the admin points ``workdir_base`` at a filesystem shared by every node.

Secrets: the whole plan rides in the job's entrypoint, and Ray shows every job's entrypoint,
metadata and runtime_env to anyone who can read its job API (``list_jobs``, the dashboard) and the
entrypoint's command line to anyone who can list processes on the node that runs the driver. That
includes the environment variables, and so a notebook's ``JUPYTER_TOKEN``. Ray's job API offers no
private channel to a job (no secret store; runtime_env and metadata are listed the same way), and
the broker does not connect to the cluster's GCS, so this is accepted: whoever can read the job API
can also submit jobs there, that is run any code on the cluster's nodes, which reaches the notebook
server anyway. Protect the Ray dashboard (Ray's token auth, ``headers``) as the cluster's root
credential, and keep the nodes' process lists to trusted users.

Served models (``workload_kind="serve"``): a Ray Serve application per attempt, deployed by the
attempt's job and read back from Serve's status API; see :mod:`clusters.ray.serving`.

The broker never calls ``ray.init()``: the adapter speaks HTTP only.
"""

from __future__ import annotations

import asyncio
import math
import re
import shlex
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import httpx

import runtimes
from clusters.base import (
    Capability,
    ClusterAdapter,
    Handle,
    Health,
    Observation,
    Phase,
    ReplicaLog,
    ReplicaStatus,
)
from clusters.errors import ClusterUnreachable, SubmitRejected, WorkloadNotFound
from clusters.ray.config import RayClusterConfig
from clusters.ray.probe import EntrypointProbe
from clusters.ray.serve_apps import ServeDashboard, job_status, still_served
from clusters.ray.serving import app_endpoint, applications, delete_submission_id, observe_app
from clusters.ray.states import TERMINAL, entrypoint_failure, last_error_line, ray_state
from runtimes.environment import EnvironmentPlan
from runtimes.plan import LaunchPlan, Resources
from runtimes.ray_launcher import (
    MARKER,
    STOP_GRACE,
    WORKDIR_BASE_ENV,
    WORKDIR_KEY,
    decode_plan,
    encode_plan,
    find_endpoint,
    serving_replica,
)
from runtimes.ray_serve import app_name
from runtimes.rendezvous import PlaceholderAddressing
from runtimes.serving import KIND as SERVE_KIND
from runtimes.venv_build import installer_error

T = TypeVar("T")

#: The metadata key every job of this broker carries (the origin label of the orphan sweep).
BROKER_MARK = "submarine-broker"
#: The folder of the ``runtimes`` package, shipped with every job as a ``py_modules`` entry.
RUNTIMES_DIR = str(Path(runtimes.__file__).resolve().parent)
_FAILED_LINE = re.compile(re.escape(MARKER) + r" replica (\S+) failed with exit code (-?\d+)")
_PREFIX = re.compile(r"^\[([a-z0-9]+-\d+)\] ?(.*)$")
#: Seconds Ray gives a stopped job's driver before SIGKILL: the launcher's replica grace and margin.
STOP_WAIT_S = int(STOP_GRACE) + 8


def submission_id(uid: str) -> str:
    """The Ray job id of attempt ``uid``."""
    return f"sb-{uid}"


def split_logs(text: str, names: Sequence[str]) -> dict[str, list[str]]:
    """The job log split per replica on the launcher's ``[<replica>] `` prefix.

    Lines without a known replica's prefix (Ray's and the launcher's own) are left out.
    """
    out: dict[str, list[str]] = {name: [] for name in names}
    for line in text.splitlines():
        match = _PREFIX.match(line)
        if match and match.group(1) in out:
            out[match.group(1)].append(match.group(2))
    return out


def failure_message(message: str | None) -> str:
    """A short reason from a FAILED job's message, naming the cause found in its log lines.

    When the launcher failed the job for a replica: ``replica worker-0 exited with code 1:
    ValueError: boom`` (that replica's last exception line, else its last line). When the
    entrypoint itself failed (an ``entrypoint_python`` without Ray, a crash of the launcher): Ray's
    header and the log's last exception line, ``Job entrypoint command failed with exit code 1:
    ModuleNotFoundError: No module named 'ray'``. Otherwise Ray's first line.
    """
    text = message or ""
    found = _FAILED_LINE.findall(text)
    if found:
        name, code = found[-1]
        cause = last_error_line(split_logs(text, [name])[name])
        return f"replica {name} exited with code {code}" + (f": {cause}" if cause else "")
    entrypoint = entrypoint_failure(text)
    if entrypoint is not None:
        return entrypoint
    first = text.strip().splitlines()[0] if text.strip() else "the Ray job failed"
    return first[:500]


def _setup_failed(job: Any) -> bool:
    """The job failed because Ray could not set up its runtime_env (pip or conda)."""
    kind = str(getattr(job, "error_type", "") or "")
    return kind == "RUNTIME_ENV_SETUP_FAILURE" or (job.message or "").startswith("runtime_env setup failed")


def _tail(lines: list[str], tail: int | None) -> list[str]:
    """The last ``tail`` lines (all when None)."""
    if tail is None:
        return lines
    return lines[-tail:] if tail > 0 else []


def _serves(handle: Handle) -> bool:
    """The handle is a served model's (a Ray Serve application)."""
    return bool(handle.state.get("serve_app"))


def _status_code(exc: BaseException) -> int | None:
    match = re.search(r"status code (\d{3})", str(exc))
    return int(match.group(1)) if match else None


class RayAdapter(ClusterAdapter):
    """Runs each attempt as one Ray job whose driver gang-starts one actor per replica."""

    kind = "ray"
    config_model = RayClusterConfig
    capabilities = Capability.GPU | Capability.MULTI_NODE | Capability.ENDPOINTS | Capability.LISTS_WORK

    #: Seconds of one HTTP call to the dashboard (health).
    http_timeout: float = 5.0
    #: Seconds the broker waits for one SDK call (requests has no timeout of its own: a head that
    #: drops packets would otherwise hang the caller); past it the cluster counts as unreachable.
    call_timeout: float = 30.0
    #: httpx transport for health (tests swap in a MockTransport); None = the network.
    http_transport: httpx.AsyncBaseTransport | None = None

    def __init__(self, config: RayClusterConfig, *, data_dir: str) -> None:
        super().__init__(config, data_dir=data_dir)
        self.config: RayClusterConfig = config
        self._client: Any = None
        self._client_lock = threading.Lock()
        #: The entrypoint check of this config (health): ``entrypoint_python`` imports Ray.
        self.probe = EntrypointProbe(config.name, config.entrypoint_python, self._call)
        #: Serve's status and the replicas' logs of served models, from the dashboard.
        self.serve = ServeDashboard(self._dashboard, self._unreachable)

    # -- the SDK -------------------------------------------------------------------------------

    def _sdk(self) -> Any:
        """The reused ``JobSubmissionClient``; ClusterUnreachable when it cannot be made."""
        with self._client_lock:
            if self._client is None:
                try:
                    from ray.job_submission import JobSubmissionClient
                except ImportError:
                    raise ClusterUnreachable(
                        f"cluster '{self.name}': the ray package is not installed (pip install "
                        "'submarine-broker[ray]')"
                    ) from None
                try:
                    self._client = JobSubmissionClient(self.config.address, headers=self.config.headers)
                except Exception as exc:  # noqa: BLE001 - every failure here means "cannot ask"
                    raise ClusterUnreachable(self._unreachable(exc)) from None
            return self._client

    def _unreachable(self, exc: BaseException) -> str:
        """A message for a failed call; never the configured headers."""
        if type(exc).__name__ == "AuthenticationError" or _status_code(exc) in (401, 403):
            return f"Ray at {self.config.address} (cluster '{self.name}'): credentials refused"
        return f"Ray at {self.config.address} (cluster '{self.name}') did not answer: {type(exc).__name__}"

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One SDK call; connection and auth failures become ClusterUnreachable, RuntimeError stays."""
        client = self._sdk()
        try:
            return getattr(client, method)(*args, **kwargs)
        except RuntimeError as exc:
            code = _status_code(exc)
            if code in (401, 403) or code is not None and code >= 502:
                raise ClusterUnreachable(self._unreachable(exc)) from None
            raise
        except (OSError, ConnectionError) as exc:  # requests' errors are OSErrors
            raise ClusterUnreachable(self._unreachable(exc)) from None
        except Exception as exc:
            if type(exc).__name__ == "AuthenticationError":
                raise ClusterUnreachable(self._unreachable(exc)) from None
            raise

    async def _thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking SDK step in a worker thread, bounded by ``call_timeout``."""
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), self.call_timeout)
        except TimeoutError:
            raise ClusterUnreachable(
                f"Ray at {self.config.address} (cluster '{self.name}') did not answer "
                f"within {self.call_timeout:g}s"
            ) from None

    # -- verbs ---------------------------------------------------------------------------------

    def addressing(self, uid: str) -> PlaceholderAddressing:
        """Placeholders the launcher replaces with the nodes' real IPs and ports."""
        return PlaceholderAddressing()

    async def health(self) -> Health:
        """The job API's version answer, the cluster's totals from ``/api/cluster_status``, and
        whether ``entrypoint_python`` can run the launcher (:mod:`clusters.ray.probe`: a cluster
        whose interpreter lacks Ray is reachable but not usable, with the import error)."""
        health = await self._reachable_health()
        if not health.reachable:
            self.probe.invalidate()
            return health
        try:
            verdict = await self._thread(self.probe.check)
        except ClusterUnreachable as exc:
            self.probe.invalidate()
            return Health(reachable=False, message=str(exc))
        except RuntimeError as exc:  # the job API answered with an error: no verdict this time
            message = f"cannot check entrypoint_python {self.config.entrypoint_python}: {exc}"
            return replace(health, usable=False, message=message[:500])
        if verdict.ready:
            return health
        return replace(health, usable=False, message=verdict.message)

    async def _reachable_health(self) -> Health:
        headers = dict(self.config.headers or {})
        try:
            async with httpx.AsyncClient(
                base_url=self.config.address,
                headers=headers,
                timeout=self.http_timeout,
                transport=self.http_transport,
            ) as http:
                version = await http.get("/api/version")
                if version.status_code in (401, 403):
                    return Health(reachable=False, message=self._unreachable(RuntimeError("status code 401")))
                if version.status_code != 200:
                    return Health(
                        reachable=False,
                        message=f"Ray at {self.config.address} answered {version.status_code} to its version",
                    )
                status = await http.get("/api/cluster_status")
                status.raise_for_status()
                usage = status.json()["data"]["clusterStatus"]["loadMetricsReport"]["usage"]
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            return Health(reachable=False, message=self._unreachable(exc))
        return self._capacity(usage)

    def _capacity(self, usage: dict[str, Any]) -> Health:
        def pair(key: str) -> tuple[float, float]:
            used, total = (usage.get(key) or [0, 0])[:2]
            return float(used or 0), float(total or 0)

        cpu_used, cpu_total = pair("CPU")
        mem_used, mem_total = pair("memory")
        gpu_used, gpu_total = pair("GPU")
        reported = Resources(cpu=cpu_total, memory=int(mem_total), gpu=int(gpu_total))
        total = self.config.capacity.apply(reported)
        # Fractional GPUs in use (actors with num_gpus=0.5) take a whole GPU from what is free.
        free = total.minus(Resources(cpu=cpu_used, memory=int(mem_used), gpu=math.ceil(gpu_used)))
        return Health(reachable=True, total=total, free=free)

    async def submit(self, plan: LaunchPlan) -> Handle:
        """Submit the plan's job, or find the one an earlier call submitted under the same uid."""
        return await self._thread(self._submit, plan)

    def _handle(self, plan: LaunchPlan) -> Handle:
        if plan.workload_kind == SERVE_KIND:
            return Handle.for_plan(plan, submission_id=submission_id(plan.uid), serve_app=app_name(plan.uid))
        serving = serving_replica(plan)
        extra = {"serving": serving.name} if serving is not None else {}
        return Handle.for_plan(plan, submission_id=submission_id(plan.uid), **extra)

    def _exists(self, sid: str) -> bool:
        try:
            self._call("get_job_info", sid)
        except RuntimeError as exc:
            if _status_code(exc) == 404 or "does not exist" in str(exc):
                return False
            raise SubmitRejected(f"cluster '{self.name}': cannot look up Ray job {sid}: {exc}") from None
        return True

    def environment_problem(self, env: EnvironmentPlan) -> str | None:
        """pip and conda dependencies are refused with ``allow_installs: false``; an image is never
        a refusal (it is recorded, not run: see :meth:`runtime_env`)."""
        if env.installs and not self.config.allow_installs:
            return (
                f"cluster '{self.name}' (ray) does not install dependencies (allow_installs: false); "
                "the nodes' Python must have them"
            )
        return None

    def runtime_env(self, plan: LaunchPlan) -> dict[str, Any]:
        """The job's runtime_env: the launcher's package, the broker's variables, and the
        environment's pip or conda packages (Ray installs them per job on each node and caches them
        by content; Ray takes one of the two, so conda wins when both are given, with pip inside
        it). They come from the plan's environment, else its ``pip_packages``/``conda_packages``.

        The environment's image is not put in the runtime_env: Ray's ``image_uri`` cannot be
        combined with ``py_modules``, ``pip`` or ``conda`` (Ray's rule), and the launcher ships in
        ``py_modules``; the image stays recorded, unused, as on every kind without images."""
        env: dict[str, Any] = {
            "py_modules": [RUNTIMES_DIR],
            "excludes": ["__pycache__", "*.pyc"],
            "env_vars": {
                "PYTHONUNBUFFERED": "1",
                "SUBMARINE_BROKER_UID": plan.uid,
                # Read by the job's supervisor actor, which runs with this runtime_env: the
                # seconds between stop_job's SIGTERM and its SIGKILL of the driver (Ray's default
                # 3 s cuts the launcher off while it stops the replicas, e.g. Jupyter's kernels).
                "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_WAIT_S),
            },
        }
        if plan.workdir is not None and self.config.workdir_base:
            env["env_vars"][WORKDIR_BASE_ENV] = self.config.workdir_base
        wanted = plan.environment
        pip = list(wanted.pip) if wanted is not None else list(plan.pip_packages)
        conda = list(wanted.conda) if wanted is not None else list(plan.conda_packages)
        if conda:
            dependencies: list[Any] = list(conda)
            if wanted is not None and wanted.python:
                dependencies.insert(0, f"python={wanted.python}")
            if pip:
                dependencies += ["pip", {"pip": pip}]
            env["conda"] = {"dependencies": dependencies}
            if wanted is not None and wanted.channels:
                env["conda"]["channels"] = list(wanted.channels)
        elif pip:
            env["pip"] = pip
        return env

    @staticmethod
    def metadata(plan: LaunchPlan, cluster: str) -> dict[str, str]:
        """The job's metadata: the broker's mark, the attempt, and its environment's identity
        (``environment``, ``environment_revision``, ``environment_hash``)."""
        metadata = {
            BROKER_MARK: "1",
            "cluster": cluster,
            "experiment": plan.workload_id,
            "uid": plan.uid,
            "name": plan.name,
            "namespace": plan.namespace,
        }
        if plan.environment is not None:
            metadata["environment"] = plan.environment.name
            metadata["environment_revision"] = str(plan.environment.revision)
            metadata["environment_hash"] = plan.environment.hash
        return metadata

    def _submit(self, plan: LaunchPlan) -> Handle:
        sid = submission_id(plan.uid)
        if plan.workdir is not None and (not WORKDIR_KEY.match(plan.workdir) or plan.workdir in (".", "..")):
            raise SubmitRejected(f"cluster '{self.name}': unusable working directory key '{plan.workdir}'")
        handle = self._handle(plan)
        if self._exists(sid):
            return handle
        metadata = self.metadata(plan, self.name)
        entrypoint = f"{self.config.entrypoint_python} -m runtimes.ray_launcher {encode_plan(plan)}"
        if plan.workload_kind == SERVE_KIND:
            metadata["serve_app"] = app_name(plan.uid)
            http = f"--http-host {shlex.quote(self.config.serve_host)} --http-port {self.config.serve_port}"
            entrypoint = (
                f"{self.config.entrypoint_python} -m runtimes.ray_serve deploy {http} {encode_plan(plan)}"
            )
        try:
            self._call(
                "submit_job",
                entrypoint=entrypoint,
                submission_id=sid,
                metadata=metadata,
                runtime_env=self.runtime_env(plan),
            )
        except RuntimeError as exc:
            # A duplicate submission_id comes back as a 500: a concurrent submit won the race.
            if self._exists(sid):
                return handle
            raise SubmitRejected(
                f"cluster '{self.name}' refused Ray job {sid}: {str(exc).strip()[:500]}"
            ) from None
        except (TypeError, ValueError) as exc:  # the SDK's own validation (runtime_env, metadata)
            raise SubmitRejected(f"cluster '{self.name}': invalid Ray job {sid}: {exc}") from None
        return handle

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Observation]:
        """One ``list_jobs`` for every handle."""
        if not handles:
            return {}
        jobs = await self._thread(self._list)
        apps = applications(await self.serve.details()) if any(_serves(h) for h in handles) else {}
        out = {}
        for h in handles:
            job = jobs.get(h.state.get("submission_id") or submission_id(h.uid))
            out[h.uid] = self._observe_serve(h, job, apps) if _serves(h) else self._observe(h, job)
        return out

    def _dashboard(self) -> httpx.AsyncClient:
        """An HTTP client of the dashboard's REST API (Serve's status, the log API)."""
        return httpx.AsyncClient(
            base_url=self.config.address,
            headers=dict(self.config.headers or {}),
            timeout=self.http_timeout,
            transport=self.http_transport,
        )

    def _observe_serve(self, handle: Handle, job: Any, apps: dict[str, Any]) -> Observation:
        """A served model: its Serve application's status; before the application exists, its
        deploy job's (pending while it runs, failed with the job's reason)."""
        app = apps.get(str(handle.state["serve_app"]))
        if isinstance(app, dict):
            return observe_app(handle.uid, app)
        if job is not None:
            seen = self._observe(handle, job)
            if seen.phase in (Phase.PENDING, Phase.RUNNING):
                return Observation(handle.uid, Phase.PENDING, "deploying on Ray Serve")
            if seen.phase is Phase.FAILED and str(getattr(job.status, "value", job.status)) != "STOPPED":
                return seen
        return Observation(
            handle.uid, Phase.NOT_FOUND, f"no Ray Serve application {handle.state['serve_app']}"
        )

    def _list(self) -> dict[str, Any]:
        try:
            jobs = self._call("list_jobs")
        except RuntimeError as exc:
            raise ClusterUnreachable(self._unreachable(exc)) from None
        return {job.submission_id: job for job in jobs if job.submission_id}

    def _observe(self, handle: Handle, job: Any) -> Observation:
        if job is None:
            return Observation(handle.uid, Phase.NOT_FOUND, f"no Ray job {submission_id(handle.uid)}")
        state = ray_state(job.status)
        category = state.failure_category
        if state.phase is Phase.FAILED:
            if str(getattr(job.status, "value", job.status)) == "STOPPED":
                message = "the Ray job was stopped"
            elif _setup_failed(job):
                # Ray could not install the runtime_env: the environment's fault, with pip's line.
                error = installer_error((job.message or "").splitlines()) or "runtime_env setup failed"
                name = (job.metadata or {}).get("environment") or "of the job"
                message = f"environment {name} could not be installed on {self.name}: {error}"
                category = "environment"
            else:
                message = failure_message(job.message)
        else:
            message = (job.message or "").strip().splitlines()[0][:500] if job.message else ""
        names = handle.state.get("replicas") or []
        replicas: tuple[ReplicaStatus, ...] = ()
        if state.phase is Phase.SUCCEEDED:
            replicas = tuple(ReplicaStatus(n, Phase.SUCCEEDED, 0) for n in names)
        return Observation(handle.uid, state.phase, message, category, replicas)

    async def cancel(self, handle: Handle) -> None:
        """``stop_job``; a job that ended already, or never existed, is fine. A served model's
        application is then deleted by a job of its own (:meth:`_delete_app`)."""
        await self._thread(self._cancel, handle)
        if _serves(handle):
            await self._thread(self._delete_app, handle)

    def _delete_app(self, handle: Handle) -> None:
        """Submit ``sb-<uid>-delete`` (``serve.delete`` of the attempt's application); a finished
        earlier one is replaced, a running one is left to do the work."""
        sid = delete_submission_id(handle.uid)
        name = str(handle.state["serve_app"])
        if self._exists(sid):
            info = self._call("get_job_info", sid)
            if str(getattr(info.status, "value", info.status)) not in TERMINAL:
                return
            self._call("delete_job", sid)
        # No broker mark: the orphan sweep must not take this job for an attempt and stop it.
        metadata = {"cluster": self.name, "uid": handle.uid, "serve_app": name}
        runtime_env = {"py_modules": [RUNTIMES_DIR], "excludes": ["__pycache__", "*.pyc"]}
        try:
            self._call(
                "submit_job",
                entrypoint=f"{self.config.entrypoint_python} -m runtimes.ray_serve delete {name}",
                submission_id=sid,
                metadata=metadata,
                runtime_env=runtime_env,
            )
        except RuntimeError as exc:
            raise ClusterUnreachable(
                f"cluster '{self.name}': cannot delete Ray Serve application {name}: {str(exc)[:300]}"
            ) from None

    def _cancel(self, handle: Handle) -> None:
        sid = handle.state.get("submission_id") or submission_id(handle.uid)
        try:
            self._call("stop_job", sid)
        except RuntimeError as exc:
            if _status_code(exc) == 404 or "does not exist" in str(exc):
                return
            raise ClusterUnreachable(f"cluster '{self.name}': cannot stop Ray job {sid}: {exc}") from None

    async def endpoint(self, handle: Handle) -> str | None:
        """``http://ip:port`` of the attempt's serving replica while its job runs, else None.

        Read from the launcher's endpoint line in the job log (module docstring). A job that is not
        (or no longer) RUNNING, or whose line is not printed yet, gives None; an unreachable head
        raises ClusterUnreachable like every other verb.
        """
        if _serves(handle):
            details = await self.serve.details()
            return app_endpoint(details, str(handle.state["serve_app"]), handle.uid, self.config.address)
        return await self._thread(self._endpoint, handle)

    def _endpoint(self, handle: Handle) -> str | None:
        sid = handle.state.get("submission_id") or submission_id(handle.uid)
        try:
            info = self._call("get_job_info", sid)
            if ray_state(info.status).phase is not Phase.RUNNING:
                return None
            text = self._call("get_job_logs", sid)
        except RuntimeError as exc:
            if _status_code(exc) == 404 or "does not exist" in str(exc):
                return None
            raise ClusterUnreachable(f"cluster '{self.name}': cannot read the log of {sid}: {exc}") from None
        serving = handle.state.get("serving")
        return find_endpoint(text or "", [str(serving)] if serving else None)

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        """The job log split per replica (plan order, the primary first); a served model's
        replicas' Serve log files (:mod:`clusters.ray.serving`)."""
        names = self._log_names(handle, replica)
        if _serves(handle):
            app = applications(await self.serve.details()).get(str(handle.state["serve_app"]))
            if isinstance(app, dict):
                every = [str(n) for n in handle.state.get("replicas") or []] or names
                return await self.serve.logs(app, every, names, tail)
            # Not deployed (yet, or ever): the deploy job's log is the primary's.
            primary = [str(n) for n in handle.state.get("replicas") or []][:1]
            text = await self._thread(self._job_log, handle)
            return [ReplicaLog(n, _tail(text.splitlines(), tail) if n in primary else []) for n in names]
        text = await self._thread(self._job_log, handle)
        split = split_logs(text, names)
        return [ReplicaLog(name, _tail(split[name], tail)) for name in names]

    def _log_names(self, handle: Handle, replica: str | None) -> list[str]:
        """The replicas asked for: all (plan order), or ``replica``, which must be one of them."""
        names = [str(n) for n in handle.state.get("replicas") or []]
        if replica is None:
            return names
        if names and replica not in names:
            raise WorkloadNotFound(
                f"attempt {handle.uid} has no replica '{replica}'; its replicas are {', '.join(names)}"
            )
        return [replica]

    def _job_log(self, handle: Handle) -> str:
        """The whole log of the attempt's Ray job; WorkloadNotFound when Ray has no such job."""
        sid = handle.state.get("submission_id") or submission_id(handle.uid)
        try:
            text = self._call("get_job_logs", sid)
        except RuntimeError as exc:
            if _status_code(exc) == 404 or "does not exist" in str(exc):
                raise WorkloadNotFound(
                    f"attempt {handle.uid} has no Ray job on cluster '{self.name}'"
                ) from None
            raise ClusterUnreachable(f"cluster '{self.name}': cannot read the log of {sid}: {exc}") from None
        return str(text or "")

    async def owned(self) -> list[Handle]:
        """Live work of this broker on this cluster: its jobs that have not ended (by the metadata
        marker), and the Serve applications its served models' deploy jobs made.

        A served model's deploy job ends once its application runs, and the application lives on:
        it is listed while it exists, by the marked deploy job that names it, never by its name
        alone (another broker's, or one whose job Ray no longer keeps, is left alone). One being
        deleted already (Serve says DELETING, or its delete job has not ended) is not listed.
        Serve's status is asked only when such a job exists; without an answer only the deploy
        jobs still running are listed."""
        jobs = await self._thread(self._list)
        found = []
        serves = []
        for sid, job in jobs.items():
            meta = job.metadata or {}
            if meta.get(BROKER_MARK) != "1" or meta.get("cluster", self.name) != self.name:
                continue
            if meta.get("serve_app"):
                serves.append((sid, job))
            elif job_status(job) not in TERMINAL:
                found.append(self._owned_handle(sid, job))
        if serves:
            try:
                apps = applications(await self.serve.details())
            except ClusterUnreachable:
                # Serve's status is not to be had: list only the deploy jobs still running (the
                # sweep cancels only what is listed); the other jobs' listing stands.
                apps = {}
            found += [
                self._owned_handle(sid, job) for sid, job in serves if still_served(sid, job, jobs, apps)
            ]
        return found

    def _owned_handle(self, sid: str, job: Any) -> Handle:
        """The handle of a listed job: its uid, id and what its entrypoint's plan tells."""
        meta = job.metadata or {}
        uid = meta.get("uid") or sid.removeprefix("sb-")
        state: dict[str, Any] = {"submission_id": sid}
        if meta.get("serve_app"):
            state["serve_app"] = str(meta["serve_app"])
        try:  # the plan rides in the entrypoint: recover the replica names for logs
            plan = decode_plan((job.entrypoint or "").split()[-1])
            state.update(self._handle(plan).state)
        except Exception:  # noqa: BLE001 - not ours after all, or damaged: the id must do
            pass
        return Handle(uid, state)

    async def close(self) -> None:
        self._client = None
