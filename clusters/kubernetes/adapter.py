"""The ``kubernetes`` cluster adapter: Kubeflow training jobs, or Indexed Jobs and a headless Service;
notebooks as a Kubeflow Notebook, or a StatefulSet and a Service (:mod:`clusters.kubernetes.notebooks`);
served models as a KServe InferenceService, or a Deployment and a Service
(:mod:`clusters.kubernetes.serving`).

The adapter holds one API object, :class:`~clusters.kubernetes.objects.KubeApi` (the official
client, its errors and discovery from :mod:`~clusters.kubernetes.client`, the object verbs by kind
from :mod:`~clusters.kubernetes.objects`), and hands it to the verbs' modules:
:mod:`~clusters.kubernetes.submit` (addressing, submit) and :mod:`~clusters.kubernetes.observe`
(poll, cancel, logs, the orphan sweep, a notebook's files and endpoint), each run in a worker
thread. This module adds health and capacity. Bodies are plain dicts (see
:mod:`clusters.kubernetes.manifests` and ``notebooks``).

Errors: a 403 whose message names an admission webhook, and 400/404/409/422 answers to a
create, are refusals (:class:`SubmitRejected`); other 401/403 answers are "credentials refused"
(:class:`ClusterUnreachable`, and an unreachable :class:`Health`); connection errors, timeouts
and 5xx are unreachable. The token is never logged or put in a message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from clusters.base import Capability, ClusterAdapter, Handle, Health, Observation, ReplicaLog
from clusters.errors import ClusterUnreachable
from clusters.kubernetes import environment as environments
from clusters.kubernetes import manifests as m
from clusters.kubernetes import observe
from clusters.kubernetes import serving as sv
from clusters.kubernetes import submit as submitting
from clusters.kubernetes.client import JOB, NOTEBOOK, Refused, quantity
from clusters.kubernetes.config import KubernetesClusterConfig
from clusters.kubernetes.objects import KubeApi
from runtimes.environment import EnvironmentPlan
from runtimes.plan import LaunchPlan, Resources, StaticAddressing

log = logging.getLogger(__name__)


class KubernetesAdapter(ClusterAdapter):
    """One attempt = one Kubeflow job, or one Indexed Job per role plus a headless Service; a
    notebook's attempt = a Kubeflow Notebook or a StatefulSet + Service, with its token Secret."""

    kind = "kubernetes"
    config_model = KubernetesClusterConfig
    capabilities = (
        Capability.GPU
        | Capability.MULTI_NODE
        | Capability.IMAGES
        | Capability.ENDPOINTS
        | Capability.LISTS_WORK
        | Capability.RELEASES_WORKDIRS
    )

    #: Extra seconds the broker waits beyond the client's own request timeout.
    grace: float = 5.0

    def __init__(self, config: KubernetesClusterConfig, *, data_dir: str) -> None:
        super().__init__(config, data_dir=data_dir)
        self.config: KubernetesClusterConfig = config
        self.api = KubeApi(config, grace=self.grace)

    # -- verbs ---------------------------------------------------------------------------------

    def addressing(self, uid: str) -> StaticAddressing:
        """Kubeflow's per-replica Services, or pod DNS names under the attempt's headless Service;
        a notebook's server is its Service ``sb-<uid12>``, on Jupyter's port (see
        :func:`clusters.kubernetes.submit.addressing`)."""
        return submitting.addressing(self.api, uid)

    def environment_problem(self, env: EnvironmentPlan) -> str | None:
        """conda dependencies, and pip dependencies with ``allow_installs: false``, are refused
        (see :mod:`clusters.kubernetes.environment`)."""
        return environments.problem(env, self.config)

    async def submit(self, plan: LaunchPlan) -> Handle:
        """Create the attempt's objects (the environment's install and the registries' pull Secrets
        with them); a 409 adopts an object only when its uid label is the plan's."""
        return await self.api.thread(submitting.submit, self.api, plan)

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Observation]:
        """One label-selected list per kind in use (never a GET per attempt)."""
        if not handles:
            return {}
        return await self.api.thread(observe.poll, self.api, list(handles))

    async def cancel(self, handle: Handle) -> None:
        """Delete the attempt's objects with foreground propagation (their pods go first)."""
        await self.api.thread(observe.cancel, self.api, handle)

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        """Each replica's pod log (the newest pod of the replica), in plan order: primary first."""
        return await self.api.thread(observe.logs, self.api, handle, replica, tail)

    async def owned(self) -> list[Handle]:
        """Every attempt with objects carrying this broker's origin label."""
        return await self.api.thread(observe.owned, self.api)

    async def endpoint(self, handle: Handle) -> str | None:
        """A notebook's server URL (from ``notebook_endpoint``) once its pod is ready; a served
        model's (the InferenceService's URL, or ``serve_endpoint``) once a replica is ready; else None."""
        if handle.state.get("shape") == sv.SERVE:
            return await self.api.thread(observe.served_endpoint, self.api, handle)
        if handle.state.get("shape") != NOTEBOOK:
            return None
        return await self.api.thread(observe.endpoint, self.api, handle)

    async def release(self, workdir: str) -> bool:
        """Delete the notebook's claim ``sb-ws-<workdir>`` if it is ours (origin label)."""
        return await self.api.thread(observe.release, self.api, workdir)

    # -- health --------------------------------------------------------------------------------

    async def health(self) -> Health:
        """``/version``, an authorised list in the namespace, discovery, then capacity."""
        try:
            return await self.api.thread(self._health)
        except ClusterUnreachable as exc:
            return Health(reachable=False, message=str(exc))

    def _health(self) -> Health:
        from kubernetes import client

        api = self.api
        core, batch, _custom = api.apis()
        try:
            api.json(client.VersionApi(api.client()).get_code)
            api.json(batch.list_namespaced_job, api.namespace, limit=1)
        except Refused as exc:
            return Health(reachable=False, message=f"{api.where()} answered {exc.status}: {exc.message}")
        try:
            if self.config.workload_api != JOB:
                api.discover()
        except Refused:
            api.served = set()
        return self._capacity(core)

    def _capacity(self, core: Any) -> Health:
        api = self.api
        try:
            nodes = api.json(core.list_node).get("items") or []
        except (Refused, ClusterUnreachable) as exc:  # a namespaced role may not list nodes
            nodes = []
            log.info("cluster %s: cannot list nodes: %s", self.name, exc)
        cpu = mem = gpu = Decimal(0)
        for node in nodes:
            spec = node.get("spec") or {}
            if spec.get("unschedulable"):
                continue
            alloc = (node.get("status") or {}).get("allocatable") or {}
            cpu += quantity(alloc.get("cpu"))
            mem += quantity(alloc.get("memory"))
            gpu += quantity(alloc.get(m.GPU_RESOURCE))
        used_cpu = used_mem = used_gpu = Decimal(0)
        running = 0
        try:
            pods = api.json(core.list_pod_for_all_namespaces).get("items") or []
        except (Refused, ClusterUnreachable):
            try:
                pods = api.json(core.list_namespaced_pod, api.namespace).get("items") or []
            except Refused:
                pods = []
        for pod in pods:
            if (pod.get("status") or {}).get("phase") not in ("Pending", "Running"):
                continue
            if ((pod.get("metadata") or {}).get("labels") or {}).get(m.LABEL_ORIGIN) == api.origin:
                running += 1
            for container in (pod.get("spec") or {}).get("containers") or []:
                requests = (container.get("resources") or {}).get("requests") or {}
                used_cpu += quantity(requests.get("cpu"))
                used_mem += quantity(requests.get("memory"))
                used_gpu += quantity(requests.get(m.GPU_RESOURCE))
        total = self.config.capacity.apply(Resources(cpu=float(cpu), memory=int(mem), gpu=int(gpu)))
        used = Resources(cpu=float(used_cpu), memory=int(used_mem), gpu=int(used_gpu))
        return Health(reachable=True, total=total, free=total.minus(used), running=running)

    async def close(self) -> None:
        await self.api.close()
