"""The ``kubernetes`` cluster adapter: Kubeflow training jobs, or Indexed Jobs and a headless Service;
notebooks as a Kubeflow Notebook, or a StatefulSet and a Service (:mod:`clusters.kubernetes.notebooks`).

Built from mixins, one module each: :mod:`~clusters.kubernetes.client` (the official client, its
errors, discovery), :mod:`~clusters.kubernetes.objects` (create/read/delete/list by kind),
:mod:`~clusters.kubernetes.submit` (addressing, submit) and :mod:`~clusters.kubernetes.observe`
(poll, cancel, logs, the orphan sweep, notebook endpoints); this module adds health and
capacity. Bodies are plain dicts (see :mod:`clusters.kubernetes.manifests` and ``notebooks``).

Errors: a 403 whose message names an admission webhook, and 400/404/409/422 answers to a
create, are refusals (:class:`SubmitRejected`); other 401/403 answers are "credentials refused"
(:class:`ClusterUnreachable`, and an unreachable :class:`Health`); connection errors, timeouts
and 5xx are unreachable. The token is never logged or put in a message.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from decimal import Decimal
from typing import Any

from clusters.base import Capability, ClusterAdapter, Health
from clusters.errors import ClusterUnreachable
from clusters.kubernetes import manifests as m
from clusters.kubernetes.client import JOB, Refused, quantity
from clusters.kubernetes.config import KubernetesClusterConfig
from clusters.kubernetes.observe import Observing
from clusters.kubernetes.submit import Submitting
from runtimes.plan import Resources

log = logging.getLogger(__name__)


class KubernetesAdapter(Submitting, Observing, ClusterAdapter):
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
        self._api: Any = None
        self._lock = threading.Lock()
        self._served: set[str] | None = None  # Kubeflow kinds served; None = not asked yet

    async def health(self) -> Health:
        """``/version``, an authorised list in the namespace, discovery, then capacity."""
        try:
            return await self._thread(self._health)
        except ClusterUnreachable as exc:
            return Health(reachable=False, message=str(exc))

    def _health(self) -> Health:
        from kubernetes import client

        core, batch, _custom = self._apis()
        try:
            self._json(client.VersionApi(self._client()).get_code)
            self._json(batch.list_namespaced_job, self._ns, limit=1)
        except Refused as exc:
            return Health(reachable=False, message=f"{self._where()} answered {exc.status}: {exc.message}")
        try:
            if self.config.workload_api != JOB:
                self._discover()
        except Refused:
            self._served = set()
        return self._capacity(core)

    def _capacity(self, core: Any) -> Health:
        try:
            nodes = self._json(core.list_node).get("items") or []
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
            pods = self._json(core.list_pod_for_all_namespaces).get("items") or []
        except (Refused, ClusterUnreachable):
            try:
                pods = self._json(core.list_namespaced_pod, self._ns).get("items") or []
            except Refused:
                pods = []
        for pod in pods:
            if (pod.get("status") or {}).get("phase") not in ("Pending", "Running"):
                continue
            if ((pod.get("metadata") or {}).get("labels") or {}).get(m.LABEL_ORIGIN) == self._origin:
                running += 1
            for container in (pod.get("spec") or {}).get("containers") or []:
                requests = (container.get("resources") or {}).get("requests") or {}
                used_cpu += quantity(requests.get("cpu"))
                used_mem += quantity(requests.get("memory"))
                used_gpu += quantity(requests.get(m.GPU_RESOURCE))
        total = self.config.capacity.apply(Resources(cpu=float(cpu), memory=int(mem), gpu=int(gpu)))
        used = Resources(cpu=float(used_cpu), memory=int(used_mem), gpu=int(used_gpu))
        free = total.minus(used)
        return Health(reachable=True, total=total, free=free, running=running)

    async def close(self) -> None:
        with self._lock:
            api, self._api = self._api, None
        if api is not None:
            await asyncio.to_thread(api.close)
