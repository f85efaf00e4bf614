"""The ``kubernetes`` cluster adapter: Kubeflow training jobs, or Indexed Jobs and a headless Service.

Everything goes through the official ``kubernetes`` client (``ApiClient`` from the kubeconfig or
the in-cluster service account; ``CoreV1Api``, ``BatchV1Api``, ``CustomObjectsApi``, ``ApisApi``,
``VersionApi``), each blocking call in a worker thread with ``_request_timeout`` and an outer
bound. Bodies are plain dicts (see :mod:`clusters.kubernetes.manifests`); reads ask for the raw
JSON (``_preload_content=False``) so unknown fields of a newer server never break a poll.

Which objects: ``workload_api: kubeflow`` → the training operator's kinds, ``job`` → Indexed
Jobs, ``auto`` → Kubeflow when discovery finds the kind served under ``kubeflow.org/v1`` (asked
once, cached). The plan's hosts say which shape it was built for (:meth:`addressing`), so a
resubmission after a restart builds the same shape. Framework ``python`` is always plain Jobs.

Errors: a 403 whose message names an admission webhook, and 400/404/409/422 answers to a
create, are refusals (:class:`SubmitRejected`); other 401/403 answers are "credentials refused"
(:class:`ClusterUnreachable`, and an unreachable :class:`Health`); connection errors, timeouts
and 5xx are unreachable. The token is never logged or put in a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

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
from clusters.errors import ClusterUnreachable, SubmitRejected, WorkloadNotFound
from clusters.kubernetes import manifests as m
from clusters.kubernetes.config import KubernetesClusterConfig
from clusters.kubernetes.states import job_state, kubeflow_state, parse_indexes
from runtimes.plan import LaunchPlan, Resources, StaticAddressing

log = logging.getLogger(__name__)

KUBEFLOW = "kubeflow"
JOB = "job"
_BY_KIND = {k.kind: k for k in m.KUBEFLOW_KINDS.values()}


class _Refused(Exception):
    """An API answer that is a refusal of the request (not of the credentials)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _status_message(exc: Any) -> str:
    """The ``message`` of a Kubernetes Status body, else the HTTP reason."""
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            data = json.loads(body)
            if isinstance(data, dict) and data.get("message"):
                return str(data["message"])[:1000]
        except ValueError:
            return str(body)[:300]
    return str(getattr(exc, "reason", "") or type(exc).__name__)


def _quantity(value: Any) -> Decimal:
    from kubernetes.utils import parse_quantity

    try:
        return parse_quantity(value) if value is not None else Decimal(0)
    except (ValueError, TypeError, ArithmeticError):
        return Decimal(0)


class KubernetesAdapter(ClusterAdapter):
    """One attempt = one Kubeflow job, or one Indexed Job per role plus a headless Service."""

    kind = "kubernetes"
    config_model = KubernetesClusterConfig
    capabilities = Capability.GPU | Capability.MULTI_NODE | Capability.IMAGES

    #: Extra seconds the broker waits beyond the client's own request timeout.
    grace: float = 5.0

    def __init__(self, config: KubernetesClusterConfig, *, data_dir: str) -> None:
        super().__init__(config, data_dir=data_dir)
        self.config: KubernetesClusterConfig = config
        self._api: Any = None
        self._lock = threading.Lock()
        self._served: set[str] | None = None  # Kubeflow kinds served; None = not asked yet

    # -- the client ----------------------------------------------------------------------------

    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                self._api = self._make_client()
            return self._api

    def _make_client(self) -> Any:
        try:
            from kubernetes import client, config
        except ImportError:
            raise ClusterUnreachable(
                f"cluster '{self.name}': the kubernetes package is not installed "
                "(pip install 'submarine-broker[kubernetes]')"
            ) from None
        try:
            if self.config.in_cluster:
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)
                api = client.ApiClient(configuration)
            else:
                api = config.new_client_from_config(
                    config_file=os.path.expanduser(self.config.kubeconfig or ""), context=self.config.context
                )
        except Exception as exc:  # noqa: BLE001 - a bad kubeconfig means "cannot ask"
            raise ClusterUnreachable(
                f"cluster '{self.name}': cannot load the Kubernetes configuration: {type(exc).__name__}"
            ) from None
        if self.config.token:
            api.configuration.api_key = {"BearerToken": f"Bearer {self.config.token}"}
            api.configuration.api_key_prefix = {}
            api.configuration.refresh_api_key_hook = None  # the kubeconfig's own token would come back
        return api

    def _apis(self) -> Any:
        from kubernetes import client

        api = self._client()
        return (
            client.CoreV1Api(api),
            client.BatchV1Api(api),
            client.CustomObjectsApi(api),
        )

    @property
    def _ns(self) -> str:
        return self.config.namespace

    @property
    def _origin(self) -> str:
        return m.label_value(self.config.origin_label)

    def _where(self) -> str:
        return f"Kubernetes cluster '{self.name}'"

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One client call; unreachable and refused-credential answers become ClusterUnreachable.

        Other API answers are raised as :class:`_Refused` for the verb to interpret.
        """
        from kubernetes.client.exceptions import ApiException

        kwargs.setdefault("_request_timeout", self.config.request_timeout)
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            status = int(exc.status or 0)
            message = _status_message(exc)
            if status == 403 and "admission webhook" in message:
                raise _Refused(status, message) from None
            if status in (401, 403):
                raise ClusterUnreachable(f"{self._where()}: credentials refused: {message}") from None
            if status == 0 or status >= 500 or status == 429:
                raise ClusterUnreachable(f"{self._where()} answered {status}: {message}") from None
            raise _Refused(status, message) from None
        except (OSError, ConnectionError) as exc:
            raise ClusterUnreachable(f"{self._where()} did not answer: {type(exc).__name__}") from None
        except Exception as exc:
            # urllib3's errors (MaxRetryError, ProtocolError, ...) are not OSErrors.
            if type(exc).__module__.startswith("urllib3"):
                raise ClusterUnreachable(f"{self._where()} did not answer: {type(exc).__name__}") from None
            raise

    def _json(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A read call answered as plain JSON."""
        response = self._call(fn, *args, _preload_content=False, **kwargs)
        return json.loads(response.data or b"{}")

    async def _thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(fn, *args), self.config.request_timeout * 2 + self.grace
            )
        except TimeoutError:
            raise ClusterUnreachable(
                f"{self._where()} did not answer within {self.config.request_timeout * 2 + self.grace:g}s"
            ) from None

    # -- discovery -----------------------------------------------------------------------------

    def _discover(self) -> set[str]:
        """The Kubeflow kinds the API server serves (asked once, then cached)."""
        if self._served is not None:
            return self._served
        from kubernetes import client

        groups = self._json(client.ApisApi(self._client()).get_api_versions)
        served: set[str] = set()
        for group in groups.get("groups") or []:
            if group.get("name") != m.KUBEFLOW_GROUP:
                continue
            if not any(v.get("version") == m.KUBEFLOW_VERSION for v in group.get("versions") or []):
                continue
            try:
                resources = self._json(
                    client.CustomObjectsApi(self._client()).get_api_resources,
                    m.KUBEFLOW_GROUP,
                    m.KUBEFLOW_VERSION,
                )
                plurals = {r.get("name") for r in resources.get("resources") or []}
            except _Refused:  # the group is listed but its resources are not: assume all
                plurals = {k.plural for k in m.KUBEFLOW_KINDS.values()}
            served = {k.kind for k in m.KUBEFLOW_KINDS.values() if k.plural in plurals}
        self._served = served
        return served

    def _shape(self) -> str:
        """``kubeflow`` or ``job``: what a plan addressed now will be created as."""
        if self.config.workload_api != "auto":
            return self.config.workload_api
        try:
            return KUBEFLOW if self._discover() else JOB
        except (ClusterUnreachable, _Refused):
            return JOB

    # -- verbs ---------------------------------------------------------------------------------

    def addressing(self, uid: str) -> StaticAddressing:
        """Kubeflow's per-replica Services, or pod DNS names under the attempt's headless Service.

        With ``workload_api: auto`` this needs discovery, normally done by :meth:`health` already.
        """
        host = m.kubeflow_host if self._shape() == KUBEFLOW else m.job_host
        return StaticAddressing(lambda role, index: host(uid, role, index), lambda: m.REPLICA_PORT)

    def _plan_shape(self, plan: LaunchPlan) -> str:
        if plan.framework not in m.KUBEFLOW_KINDS:
            return JOB
        service_suffix = "." + m.service_name(plan.uid)
        if any(r.host.endswith(service_suffix) for r in plan.replicas):
            return JOB
        if self.config.workload_api == JOB:
            return JOB
        return KUBEFLOW

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
        except _Refused as exc:
            return Health(reachable=False, message=f"{self._where()} answered {exc.status}: {exc.message}")
        try:
            if self.config.workload_api != JOB:
                self._discover()
        except _Refused:
            self._served = set()
        return self._capacity(core)

    def _capacity(self, core: Any) -> Health:
        override = self.config.capacity
        try:
            nodes = self._json(core.list_node).get("items") or []
        except (_Refused, ClusterUnreachable) as exc:  # a namespaced role may not list nodes
            nodes = []
            log.info("cluster %s: cannot list nodes: %s", self.name, exc)
        cpu = mem = gpu = Decimal(0)
        for node in nodes:
            spec = node.get("spec") or {}
            if spec.get("unschedulable"):
                continue
            alloc = (node.get("status") or {}).get("allocatable") or {}
            cpu += _quantity(alloc.get("cpu"))
            mem += _quantity(alloc.get("memory"))
            gpu += _quantity(alloc.get(m.GPU_RESOURCE))
        used_cpu = used_mem = used_gpu = Decimal(0)
        running = 0
        try:
            pods = self._json(core.list_pod_for_all_namespaces).get("items") or []
        except (_Refused, ClusterUnreachable):
            try:
                pods = self._json(core.list_namespaced_pod, self._ns).get("items") or []
            except _Refused:
                pods = []
        for pod in pods:
            if (pod.get("status") or {}).get("phase") not in ("Pending", "Running"):
                continue
            if ((pod.get("metadata") or {}).get("labels") or {}).get(m.LABEL_ORIGIN) == self._origin:
                running += 1
            for container in (pod.get("spec") or {}).get("containers") or []:
                requests = (container.get("resources") or {}).get("requests") or {}
                used_cpu += _quantity(requests.get("cpu"))
                used_mem += _quantity(requests.get("memory"))
                used_gpu += _quantity(requests.get(m.GPU_RESOURCE))
        total = Resources(
            cpu=override.cpu if override.cpu is not None else float(cpu),
            memory=override.memory if override.memory is not None else int(mem),
            gpu=override.gpu if override.gpu is not None else int(gpu),
        )
        free = Resources(
            cpu=max(0.0, total.cpu - float(used_cpu)),
            memory=max(0, total.memory - int(used_mem)),
            gpu=max(0, total.gpu - int(used_gpu)),
        )
        return Health(reachable=True, total=total, free=free, running=running)

    # -- submit --------------------------------------------------------------------------------

    def _handle(self, plan: LaunchPlan, shape: str) -> Handle:
        state: dict[str, Any] = {
            "shape": shape,
            "namespace": self._ns,
            "name": m.base_name(plan.uid),
            "replicas": [r.name for r in plan.replicas],
            "success_roles": list(plan.success_roles),
        }
        if shape == KUBEFLOW:
            kind = m.KUBEFLOW_KINDS[plan.framework]
            state.update(kind=kind.kind, plural=kind.plural)
        else:
            roles = list(dict.fromkeys(r.role for r in plan.replicas))
            state.update(
                jobs={r.lower(): m.job_name(plan.uid, r) for r in roles}, service=m.service_name(plan.uid)
            )
        return Handle(plan.uid, state)

    async def submit(self, plan: LaunchPlan) -> Handle:
        """Create the attempt's objects; a 409 adopts an object only when its uid label is the plan's."""
        return await self._thread(self._submit, plan)

    def _submit(self, plan: LaunchPlan) -> Handle:
        shape = self._plan_shape(plan)
        try:
            if shape == KUBEFLOW:
                if self.config.workload_api == "auto" and m.KUBEFLOW_KINDS[plan.framework].kind not in (
                    self._discover()
                ):
                    raise m.ManifestError(
                        f"the plan was addressed for the training operator, but {self._where()} does "
                        f"not serve {m.KUBEFLOW_KINDS[plan.framework].kind}"
                    )
                objects = [
                    (
                        "cr",
                        m.kubeflow_job(
                            plan, origin=self._origin, namespace=self._ns, image=self.config.image
                        ),
                    )
                ]
            else:
                objects = [("svc", m.headless_service(plan, origin=self._origin, namespace=self._ns))]
                objects += [
                    ("job", body)
                    for body in m.indexed_jobs(
                        plan, origin=self._origin, namespace=self._ns, image=self.config.image
                    )
                ]
        except m.ManifestError as exc:
            raise SubmitRejected(f"{self._where()} cannot run this plan: {exc}") from None
        created: list[tuple[str, dict[str, Any]]] = []
        try:
            for what, body in objects:
                if self._create(what, body, plan.uid):
                    created.append((what, body))
        except _Refused as exc:
            for what, body in reversed(created):  # leave nothing half-made behind a refusal
                with contextlib.suppress(_Refused, ClusterUnreachable):
                    self._delete(what, body)
            raise SubmitRejected(
                f"{self._where()} refused {body['kind']} {body['metadata']['name']}: {exc.message}"
            ) from None
        return self._handle(plan, shape)

    def _create(self, what: str, body: dict[str, Any], uid: str) -> bool:
        """Create one object; True when this call made it, False when it adopted ours."""
        core, batch, custom = self._apis()
        name = body["metadata"]["name"]
        try:
            if what == "cr":
                kind = _BY_KIND[body["kind"]]
                self._call(
                    custom.create_namespaced_custom_object,
                    m.KUBEFLOW_GROUP,
                    m.KUBEFLOW_VERSION,
                    self._ns,
                    kind.plural,
                    body,
                    _preload_content=False,
                )
            elif what == "svc":
                self._call(core.create_namespaced_service, self._ns, body, _preload_content=False)
            else:
                self._call(batch.create_namespaced_job, self._ns, body, _preload_content=False)
            return True
        except _Refused as exc:
            if exc.status != 409:
                raise
        existing = self._get(what, body)
        labels = (existing.get("metadata") or {}).get("labels") or {}
        if labels.get(m.LABEL_UID) == m.label_value(uid):
            return False
        raise _Refused(
            409,
            f"{body['kind']} {name} already exists in namespace {self._ns} and is not this attempt's "
            f"(its {m.LABEL_UID} label is {labels.get(m.LABEL_UID)!r})",
        )

    def _get(self, what: str, body: dict[str, Any]) -> dict[str, Any]:
        core, batch, custom = self._apis()
        name = body["metadata"]["name"]
        if what == "cr":
            kind = _BY_KIND[body["kind"]]
            return self._json(
                custom.get_namespaced_custom_object,
                m.KUBEFLOW_GROUP,
                m.KUBEFLOW_VERSION,
                self._ns,
                kind.plural,
                name,
            )
        if what == "svc":
            return self._json(core.read_namespaced_service, name, self._ns)
        return self._json(batch.read_namespaced_job, name, self._ns)

    def _delete(self, what: str, body: dict[str, Any]) -> None:
        self._delete_named(what, body["metadata"]["name"], body.get("kind"))

    def _delete_named(
        self, what: str, name: str, kind_name: str | None = None, plural: str | None = None
    ) -> None:
        """Delete with foreground propagation; a 404 is fine."""
        core, batch, custom = self._apis()
        try:
            if what == "cr":
                self._call(
                    custom.delete_namespaced_custom_object,
                    m.KUBEFLOW_GROUP,
                    m.KUBEFLOW_VERSION,
                    self._ns,
                    plural or _BY_KIND[kind_name or ""].plural,
                    name,
                    propagation_policy="Foreground",
                    _preload_content=False,
                )
            elif what == "svc":
                self._call(
                    core.delete_namespaced_service,
                    name,
                    self._ns,
                    propagation_policy="Foreground",
                    _preload_content=False,
                )
            else:
                self._call(
                    batch.delete_namespaced_job,
                    name,
                    self._ns,
                    propagation_policy="Foreground",
                    _preload_content=False,
                )
        except _Refused as exc:
            if exc.status != 404:
                raise ClusterUnreachable(f"{self._where()} did not delete {name}: {exc.message}") from None

    # -- poll ----------------------------------------------------------------------------------

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Observation]:
        """One label-selected list per kind in use (never a GET per attempt)."""
        if not handles:
            return {}
        return await self._thread(self._poll, list(handles))

    def _selector(self) -> str:
        return f"{m.LABEL_ORIGIN}={self._origin}"

    def _list(self, what: str, plural: str | None = None) -> list[dict[str, Any]]:
        core, batch, custom = self._apis()
        selector = self._selector()
        try:
            if what == "cr":
                data = self._json(
                    custom.list_namespaced_custom_object,
                    m.KUBEFLOW_GROUP,
                    m.KUBEFLOW_VERSION,
                    self._ns,
                    plural,
                    label_selector=selector,
                )
            elif what == "svc":
                data = self._json(core.list_namespaced_service, self._ns, label_selector=selector)
            else:
                data = self._json(batch.list_namespaced_job, self._ns, label_selector=selector)
        except _Refused as exc:
            if exc.status == 404 and what == "cr":  # the CRD is gone
                return []
            raise ClusterUnreachable(
                f"{self._where()} refused to list {plural or what}: {exc.message}"
            ) from None
        return list(data.get("items") or [])

    @staticmethod
    def _by_uid(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            uid = ((item.get("metadata") or {}).get("labels") or {}).get(m.LABEL_UID)
            if uid:
                out.setdefault(uid, []).append(item)
        return out

    def _poll(self, handles: list[Handle]) -> dict[str, Observation]:
        plurals = sorted({str(h.state.get("plural")) for h in handles if h.state.get("shape") == KUBEFLOW})
        crs: dict[str, list[dict[str, Any]]] = {}
        for plural in plurals:
            for uid, items in self._by_uid(self._list("cr", plural)).items():
                crs.setdefault(uid, []).extend(items)
        jobs = (
            self._by_uid(self._list("job")) if any(h.state.get("shape") != KUBEFLOW for h in handles) else {}
        )
        out = {}
        for handle in handles:
            key = m.label_value(handle.uid)
            if handle.state.get("shape") == KUBEFLOW:
                out[handle.uid] = self._observe_cr(handle, crs.get(key, []))
            else:
                out[handle.uid] = self._observe_jobs(handle, jobs.get(key, []))
        return out

    def _observe_cr(self, handle: Handle, items: list[dict[str, Any]]) -> Observation:
        if not items:
            return Observation(
                handle.uid, Phase.NOT_FOUND, f"no {handle.state.get('kind')} for attempt {handle.uid}"
            )
        reading = kubeflow_state(items[0].get("status"))
        replicas: tuple[ReplicaStatus, ...] = ()
        if reading.phase is Phase.SUCCEEDED:
            replicas = tuple(ReplicaStatus(n, Phase.SUCCEEDED, 0) for n in handle.state.get("replicas") or [])
        return Observation(handle.uid, reading.phase, reading.message, reading.failure_category, replicas)

    def _observe_jobs(self, handle: Handle, items: list[dict[str, Any]]) -> Observation:
        if not items:
            return Observation(handle.uid, Phase.NOT_FOUND, f"no Jobs for attempt {handle.uid}")
        by_role = {
            ((item.get("metadata") or {}).get("labels") or {}).get(m.LABEL_ROLE): item for item in items
        }
        replicas: list[ReplicaStatus] = []
        job_failure: tuple[str | None, str] | None = None
        for name in handle.state.get("replicas") or []:
            role, _, index = str(name).rpartition("-")
            job = by_role.get(role)
            if job is None:
                replicas.append(ReplicaStatus(name, Phase.NOT_FOUND, message="its Job is gone"))
                continue
            status = job.get("status") or {}
            reading = job_state(status)
            done = parse_indexes(status.get("completedIndexes"))
            failed = parse_indexes(status.get("failedIndexes"))
            if int(index) in done:
                replicas.append(ReplicaStatus(name, Phase.SUCCEEDED, 0))
            elif int(index) in failed or reading.phase is Phase.FAILED:
                replicas.append(ReplicaStatus(name, Phase.FAILED, message=reading.message or "failed"))
                if job_failure is None:
                    job_failure = (reading.failure_category, reading.message)
            elif reading.phase is Phase.SUCCEEDED:
                replicas.append(ReplicaStatus(name, Phase.SUCCEEDED, 0))
            else:
                replicas.append(ReplicaStatus(name, reading.phase))
        seen = summarise(handle.uid, handle.state.get("success_roles") or [], replicas)
        if seen.phase is Phase.FAILED and job_failure is not None and seen.failure_category != "cluster_lost":
            first = next(r for r in replicas if r.phase is Phase.FAILED)
            return Observation(
                handle.uid,
                Phase.FAILED,
                f"replica {first.name}: {job_failure[1] or 'failed'}",
                job_failure[0] or "exit_code",
                seen.replicas,
            )
        return seen

    # -- cancel --------------------------------------------------------------------------------

    async def cancel(self, handle: Handle) -> None:
        """Delete the attempt's objects with foreground propagation (their pods go first)."""
        await self._thread(self._cancel, handle)

    def _cancel(self, handle: Handle) -> None:
        state = handle.state
        if state.get("shape") == KUBEFLOW:
            self._delete_named(
                "cr", str(state.get("name") or m.base_name(handle.uid)), plural=state.get("plural")
            )
            return
        if state.get("shape") == JOB:
            for name in (state.get("jobs") or {}).values():
                self._delete_named("job", str(name))
            self._delete_named("svc", str(state.get("service") or m.service_name(handle.uid)))
            return
        # A handle without state: find what carries its uid label.
        key = m.label_value(handle.uid)
        for what, plural in self._kinds_in_use():
            for item in self._list(what, plural):
                meta = item.get("metadata") or {}
                if (meta.get("labels") or {}).get(m.LABEL_UID) == key:
                    self._delete_named(what, meta["name"], plural=plural)

    def _kinds_in_use(self) -> list[tuple[str, str | None]]:
        kinds: list[tuple[str, str | None]] = [("job", None), ("svc", None)]
        if self.config.workload_api != JOB:
            try:
                served = self._discover()
            except _Refused:
                served = set()
            kinds += [("cr", _BY_KIND[k].plural) for k in sorted(served)]
        return kinds

    # -- logs ----------------------------------------------------------------------------------

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        """Each replica's pod log (the newest pod of the replica), in plan order: primary first."""
        return await self._thread(self._logs, handle, replica, tail)

    @staticmethod
    def _replica_of(pod: dict[str, Any]) -> str | None:
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        if m.KUBEFLOW_REPLICA_TYPE in labels:
            return f"{labels[m.KUBEFLOW_REPLICA_TYPE].lower()}-{labels.get(m.KUBEFLOW_REPLICA_INDEX, '0')}"
        role = labels.get(m.LABEL_ROLE)
        index = annotations.get(m.COMPLETION_INDEX, labels.get(m.COMPLETION_INDEX))
        if role and index is not None:
            return f"{role}-{index}"
        return None

    def _logs(self, handle: Handle, replica: str | None, tail: int | None) -> list[ReplicaLog]:
        core, _batch, _custom = self._apis()
        names = [str(n) for n in handle.state.get("replicas") or []]
        if replica is not None and names and replica not in names:
            raise WorkloadNotFound(
                f"attempt {handle.uid} has no replica '{replica}'; its replicas are {', '.join(names)}"
            )
        try:
            pods = (
                self._json(
                    core.list_namespaced_pod,
                    self._ns,
                    label_selector=f"{m.LABEL_UID}={m.label_value(handle.uid)}",
                ).get("items")
                or []
            )
        except _Refused as exc:
            raise ClusterUnreachable(f"{self._where()} refused to list pods: {exc.message}") from None
        newest: dict[str, dict[str, Any]] = {}
        for pod in pods:
            name = self._replica_of(pod)
            if name is None:
                continue
            stamp = str((pod.get("metadata") or {}).get("creationTimestamp") or "")
            if name not in newest or stamp >= str(newest[name]["metadata"].get("creationTimestamp") or ""):
                newest[name] = pod
        if not names:
            if not newest:
                raise WorkloadNotFound(f"attempt {handle.uid} has no pods on {self._where()}")
            names = sorted(newest)
        if replica is not None:
            names = [replica]
        if tail is not None and tail <= 0:
            return [ReplicaLog(name, []) for name in names]
        out = []
        for name in names:
            pod = newest.get(name)
            if pod is None:
                out.append(ReplicaLog(name, []))
                continue
            try:
                text = self._call(
                    core.read_namespaced_pod_log,
                    pod["metadata"]["name"],
                    self._ns,
                    tail_lines=tail if tail is not None else self.config.log_tail,
                    _preload_content=False,
                ).data
            except _Refused:  # not started yet (400) or gone (404)
                out.append(ReplicaLog(name, []))
                continue
            text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text or "")
            out.append(ReplicaLog(name, text.splitlines()))
        return out

    # -- the orphan sweep ----------------------------------------------------------------------

    async def owned(self) -> list[Handle]:
        """Every attempt with objects carrying this broker's origin label."""
        return await self._thread(self._owned)

    def _owned(self) -> list[Handle]:
        found: dict[str, Handle] = {}
        for what, plural in self._kinds_in_use():
            for item in self._list(what, plural):
                meta = item.get("metadata") or {}
                uid = (meta.get("labels") or {}).get(m.LABEL_UID)
                if not uid or uid in found and found[uid].state.get("shape") == KUBEFLOW:
                    continue
                notes = meta.get("annotations") or {}
                state: dict[str, Any] = {
                    "namespace": self._ns,
                    "name": m.base_name(uid),
                    "replicas": [n for n in (notes.get(m.ANNOTATION_REPLICAS) or "").split(",") if n],
                    "success_roles": [n for n in (notes.get(m.ANNOTATION_SUCCESS) or "").split(",") if n],
                }
                if what == "cr":
                    state.update(shape=KUBEFLOW, kind=item.get("kind"), plural=plural, name=meta.get("name"))
                    found[uid] = Handle(uid, state)
                    continue
                previous = found.get(uid)
                jobs = dict((previous.state.get("jobs") or {}) if previous else {})
                if what == "job":
                    role = (meta.get("labels") or {}).get(m.LABEL_ROLE) or meta.get("name")
                    jobs[str(role)] = meta.get("name")
                state.update(shape=JOB, jobs=jobs, service=m.service_name(uid))
                found[uid] = Handle(uid, state)
        return list(found.values())

    async def close(self) -> None:
        with self._lock:
            api, self._api = self._api, None
        if api is not None:
            await asyncio.to_thread(api.close)
