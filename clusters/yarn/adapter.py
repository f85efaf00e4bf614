"""The ``yarn`` cluster adapter: one attempt is one YARN Service, through the ResourceManager's REST APIs.

Every call is plain HTTP with httpx (``?user.name=<user>`` on each, Hadoop's simple auth), bounded
by ``request_timeout``. The service is built by :mod:`clusters.yarn.service_spec`; the family
base :class:`~clusters.batch.base.BatchAdapter` turns the hooks below into the adapter verbs.

* ``find_job``: ``GET /app/v1/services/sb-<uid>``; a 404 means none yet.
* ``submit_job``: ``POST /app/v1/services`` (202). A 400 is YARN refusing the spec
  (:class:`SubmitRejected` with its diagnostics). Two submitters racing on one name get YARN's
  500 "Service name ... is already taken": the service is then looked up and adopted.
* ``query_jobs`` (one poll): **one** ``GET /ws/v1/cluster/apps?applicationTypes=yarn-service&
  user=<user>`` answers for every handle (the Services API has no list call), matched on the
  application name, which is the service name. Only services whose application is ``RUNNING``
  are then read with ``GET /app/v1/services/{name}`` for their component and container states,
  concurrently (at most ``max_concurrent_requests`` at once). Services not yet running and
  finished ones are read from the application report alone: once its ApplicationMaster has
  exited the Services API says ``STOPPED`` for a success, a failure and a stop alike, and only
  the report's final status tells them apart.
* ``cancel_job``: ``PUT /app/v1/services/{name}`` ``{"state": "STOPPED"}``, then ``DELETE`` (which
  destroys the stopped service); "already stopped", "doesn't exist" and 404 answers are success.
* ``read_logs``: each replica's container (id and ``bare_host``) comes from the service, or,
  once it has ended, from what the last poll saw; its log is
  ``GET <nodemanager>/ws/v1/node/containerlogs/{container_id}/{log_file}?size=-<log_bytes>`` on
  the NodeManager web port (Hadoop 3 NodeManagers answer from aggregated logs once the
  container is gone).

Errors: connection failures, timeouts and 5xx answers are :class:`ClusterUnreachable`, so is a
401/403 ("credentials refused"); health never raises.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import httpx

from clusters.base import Capability, Handle, Health, Observation, Phase, ReplicaStatus, summarise
from clusters.batch.base import BatchAdapter, job_id, read_state, replica_names
from clusters.errors import ClusterUnreachable, SubmitRejected
from clusters.yarn import service_spec as spec
from clusters.yarn.config import YarnClusterConfig
from clusters.yarn.states import (
    APP_STATES,
    COMPONENT_STATES,
    CONTAINER_STATES,
    EARLY_APP_STATES,
    FINAL_APP_STATES,
    FINAL_STATUSES,
    SERVICE_STATES,
)
from runtimes.environment import EnvironmentPlan
from runtimes.plan import LaunchPlan, Resources, StaticAddressing

log = logging.getLogger(__name__)

SERVICES = "/app/v1/services"
APP_TYPE = "yarn-service"
#: Words of a 500 answer to a create that are the RM refusing the application, not an outage.
REFUSALS = ("unknown queue", "exceeds the maximum", "Invalid resource request", "is not a leaf queue")
#: How many attempts' containers are remembered for their logs after their service ended.
CONTAINER_MEMORY = 2000


def _diagnostics(response: httpx.Response) -> str:
    """YARN's ``ServiceStatus.diagnostics`` of an answer, else its text (short)."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason_phrase or "").strip()[:500]
    if isinstance(body, dict):
        for key in ("diagnostics", "message"):
            if body.get(key):
                return str(body[key])[:1000]
        inner = body.get("RemoteException")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:1000]
    return str(body)[:300]


def _first_line(text: object) -> str:
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    return lines[0][:500] if lines else ""


def _resource_value(metrics: dict[str, Any], key: str, name: str) -> float:
    """A resource (``yarn.io/gpu``) from Hadoop 3's ``*AcrossPartition`` resource lists, else 0."""
    infos = ((metrics.get(key) or {}).get("resourceInformations") or {}).get("resourceInformation") or []
    for info in infos if isinstance(infos, list) else []:
        if isinstance(info, dict) and info.get("name") == name:
            try:
                return float(info.get("value") or 0)
            except (TypeError, ValueError):
                return 0.0
    return 0.0


class YarnAdapter(BatchAdapter):
    """Runs each attempt as one YARN Service: one component per role, one container per replica."""

    kind = "yarn"
    config_model = YarnClusterConfig
    capabilities = Capability.GPU | Capability.MULTI_NODE | Capability.IMAGES | Capability.LISTS_WORK

    #: httpx transport (tests may swap one in); None = the network.
    http_transport: httpx.AsyncBaseTransport | None = None

    def __init__(self, config: YarnClusterConfig, *, data_dir: str) -> None:
        super().__init__(config, data_dir=data_dir)
        self.config: YarnClusterConfig = config
        # uid -> replica -> (container id, bare host): what the polls saw, for logs after the end.
        self._containers: OrderedDict[str, dict[str, tuple[str, str]]] = OrderedDict()

    def environment_problem(self, env: EnvironmentPlan) -> str | None:
        """Dependencies to install are refused unless the images have them
        (``images_have_dependencies``): YARN runs the image as it is."""
        return spec.environment_problem(env, self.config)

    # -- HTTP ----------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"YARN ResourceManager {self.config.rm_url} (cluster '{self.name}')"

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.config.rm_url,
            timeout=self.config.request_timeout,
            transport=self.http_transport,
            headers={"Accept": "application/json"},
        )

    async def _call(
        self,
        http: httpx.AsyncClient,
        method: str,
        url: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        where: str | None = None,
    ) -> httpx.Response:
        """One request with ``user.name``; transport errors, 401/403 and 5xx raise ClusterUnreachable.

        A 5xx is returned (not raised) only for POST, whose 500 may be YARN's "already taken".
        """
        query = {"user.name": self.config.user, **(params or {})}
        where = where or self._where()
        try:
            response = await http.request(method, url, params=query, json=body)
        except httpx.TimeoutException:
            raise ClusterUnreachable(
                f"{where} did not answer within {self.config.request_timeout:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise ClusterUnreachable(f"{where} did not answer: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise ClusterUnreachable(f"{where}: credentials refused: {_diagnostics(response)}")
        if response.status_code >= 500 and method != "POST":
            raise ClusterUnreachable(f"{where} answered {response.status_code}: {_diagnostics(response)}")
        return response

    @staticmethod
    def _json(response: httpx.Response, where: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ClusterUnreachable(f"{where} answered {response.status_code} without JSON") from None

    # -- verbs the base does not cover ----------------------------------------------------------

    def addressing(self, uid: str) -> StaticAddressing:
        """Registry DNS names (``worker-1.sb-<uid>.<user>.<domain>``) and one fixed port."""
        return StaticAddressing(
            lambda role, index: spec.replica_host(uid, role, index, self.config.user, self.config.dns_domain),
            lambda: self.config.port,
        )

    async def health(self) -> Health:
        """The Services API's version answer, then capacity from ``/ws/v1/cluster/metrics``."""
        try:
            async with self._http() as http:
                version = await self._call(http, "GET", f"{SERVICES}/version")
                if version.status_code != 200:
                    return Health(
                        reachable=False,
                        message=f"{self._where()} does not serve the YARN Services API "
                        f"(answered {version.status_code}; yarn.webapp.api-service.enable)",
                    )
                answer = await self._call(http, "GET", "/ws/v1/cluster/metrics")
                if answer.status_code != 200:
                    return Health(
                        reachable=False,
                        message=f"{self._where()} answered {answer.status_code} to its metrics",
                    )
                metrics = self._json(answer, self._where()).get("clusterMetrics") or {}
        except ClusterUnreachable as exc:
            return Health(reachable=False, message=str(exc))
        except AttributeError:
            return Health(reachable=False, message=f"{self._where()} answered metrics of another shape")
        return self._capacity(metrics)

    def _capacity(self, metrics: dict[str, Any]) -> Health:
        def number(key: str) -> float:
            try:
                return float(metrics.get(key) or 0)
            except (TypeError, ValueError):
                return 0.0

        total_cpu, free_cpu = number("totalVirtualCores"), number("availableVirtualCores")
        total_mem, free_mem = number("totalMB") * 2**20, number("availableMB") * 2**20
        total_gpu = _resource_value(metrics, "totalClusterResourcesAcrossPartition", spec.GPU_RESOURCE)
        used_gpu = _resource_value(metrics, "totalUsedResourcesAcrossPartition", spec.GPU_RESOURCE)
        reported = Resources(cpu=total_cpu, memory=int(total_mem), gpu=int(total_gpu))
        total = self.config.capacity.apply(reported)
        used = Resources(
            cpu=total_cpu - free_cpu, memory=math.ceil(total_mem - free_mem), gpu=math.ceil(used_gpu)
        )
        free = total.minus(used)
        return Health(reachable=True, total=total, free=free)

    # -- hooks ---------------------------------------------------------------------------------

    async def _get_service(self, http: httpx.AsyncClient, name: str) -> dict[str, Any] | None:
        """The Services API's view of ``name``, or None when YARN has no such service."""
        response = await self._call(http, "GET", f"{SERVICES}/{name}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ClusterUnreachable(
                f"{self._where()} answered {response.status_code} for service {name}: "
                f"{_diagnostics(response)}"
            )
        found = self._json(response, self._where())
        return found if isinstance(found, dict) else None

    async def find_job(self, plan: LaunchPlan) -> str | None:
        """The attempt's service name when YARN has it already (a retry or a restarted broker)."""
        try:
            name = spec.service_name(plan.uid)
        except spec.ServiceSpecError as exc:
            raise SubmitRejected(f"{self._where()} cannot run this plan: {exc}") from None
        async with self._http() as http:
            return name if await self._get_service(http, name) is not None else None

    async def submit_job(self, plan: LaunchPlan) -> str:
        """``POST /app/v1/services`` with the plan's service; its name is the job id."""
        try:
            body = spec.build_service(plan, self.config)
        except spec.ServiceSpecError as exc:
            raise SubmitRejected(f"{self._where()} cannot run this plan: {exc}") from None
        name = str(body["name"])
        async with self._http() as http:
            response = await self._call(http, "POST", SERVICES, body=body)
            if response.status_code in (200, 201, 202):
                return name
            message = _diagnostics(response)
            taken = "already taken" in message or "already exists" in message
            if taken and await self._get_service(http, name) is not None:
                return name  # another submitter won the race: adopt its service
            if any(word in message for word in REFUSALS):
                raise SubmitRejected(f"{self._where()} refused service {name}: {message}")
            if response.status_code >= 500 or response.status_code == 404:
                raise ClusterUnreachable(
                    f"{self._where()} answered {response.status_code} to create {name}: {message}"
                )
            raise SubmitRejected(f"{self._where()} refused service {name}: {message}")

    async def query_jobs(self, job_ids: Sequence[str]) -> dict[str, Any]:
        """One application listing for all ids; service reads only for running ones, concurrently."""
        async with self._http() as http:
            response = await self._call(
                http,
                "GET",
                "/ws/v1/cluster/apps",
                params={"applicationTypes": APP_TYPE, "user": self.config.user},
            )
            if response.status_code != 200:
                raise ClusterUnreachable(
                    f"{self._where()} answered {response.status_code} to the application list: "
                    f"{_diagnostics(response)}"
                )
            apps = self._newest_apps(self._json(response, self._where()), set(job_ids))
            records: dict[str, Any] = {name: {"app": app, "service": None} for name, app in apps.items()}
            running = [n for n, app in apps.items() if str(app.get("state") or "").upper() == "RUNNING"]
            limit = asyncio.Semaphore(self.config.max_concurrent_requests)

            async def read(name: str) -> None:
                async with limit:
                    records[name]["service"] = await self._get_service(http, name)

            await asyncio.gather(*(read(name) for name in running))
        return records

    @staticmethod
    def _newest_apps(listing: Any, names: set[str] | None) -> dict[str, dict[str, Any]]:
        """The newest application per name (a restarted service has several); ``{"apps": null}`` is none."""
        apps = ((listing or {}).get("apps") or {}).get("app") if isinstance(listing, dict) else None
        newest: dict[str, dict[str, Any]] = {}
        for app in apps if isinstance(apps, list) else []:
            name = app.get("name") if isinstance(app, dict) else None
            if not name or (names is not None and name not in names):
                continue
            key = (int(app.get("startedTime") or 0), str(app.get("id") or ""))
            old = newest.get(name)
            if old is None or key >= (int(old.get("startedTime") or 0), str(old.get("id") or "")):
                newest[name] = app
        return newest

    def parse_job(self, handle: Handle, record: Any) -> Observation:
        """The application report and, while it runs, the service's components and containers."""
        app = record.get("app") or {}
        service = record.get("service")
        app_state = str(app.get("state") or "").upper()
        if app_state in FINAL_APP_STATES or app_state in EARLY_APP_STATES or service is None:
            return self._from_app(handle, app)
        reading = read_state(SERVICE_STATES, service.get("state"))
        if not service.get("components"):
            # Only the ApplicationMaster lists components. Without them the answer came from the
            # application report: STARTED while the AM registers, or STOPPED/FAILED because the AM
            # exited after the listing (a success reads STOPPED too): the next listing tells.
            if reading.phase is Phase.RUNNING:
                return Observation(handle.uid, Phase.PENDING, "")
            message = f"service {service.get('state')} changed while it was read"
            return Observation(handle.uid, Phase.UNKNOWN, message)
        read = self._replicas(handle, service)
        replicas = tuple(status for status, _ in read)
        failed = next(((s, c) for s, c in read if s.phase is Phase.FAILED), None)
        if failed is not None:
            status, category = failed
            return Observation(
                handle.uid, Phase.FAILED, f"replica {status.name}: {status.message}", category, replicas
            )
        if reading.phase in (Phase.FAILED, Phase.SUCCEEDED, Phase.UNKNOWN):
            message = (
                ""
                if reading.phase is Phase.SUCCEEDED
                else f"service {service.get('state')}: {reading.meaning}"
            )
            return Observation(handle.uid, reading.phase, message, reading.failure_category, replicas)
        if reading.phase is Phase.PENDING:
            return Observation(handle.uid, Phase.PENDING, "", None, replicas)
        return summarise(handle.uid, handle.state.get("success_roles") or [], replicas)

    def _from_app(self, handle: Handle, app: dict[str, Any]) -> Observation:
        state = str(app.get("state") or "").upper()
        reading = read_state(APP_STATES, state)
        if state in FINAL_APP_STATES:
            final = read_state(FINAL_STATUSES, app.get("finalStatus"))
            if final.phase is not Phase.UNKNOWN:
                reading = final
        if reading.phase is Phase.RUNNING:  # running, but its service could not be read
            return Observation(handle.uid, Phase.PENDING, "", None)
        message = ""
        if reading.phase is Phase.FAILED:
            detail = _first_line(app.get("diagnostics")) or reading.meaning
            message = f"YARN application {app.get('id')} {state}/{app.get('finalStatus')}: {detail}"
        elif reading.phase is Phase.UNKNOWN:
            message = reading.meaning
        return Observation(handle.uid, reading.phase, message, reading.failure_category)

    def _replicas(self, handle: Handle, service: dict[str, Any]) -> list[tuple[ReplicaStatus, str | None]]:
        """Status and failure category per plan replica, from its container (newest per instance name)."""
        containers: dict[str, dict[str, Any]] = {}
        components: dict[str, str] = {}
        for component in service.get("components") or []:
            if not isinstance(component, dict):
                continue
            components[str(component.get("name"))] = str(component.get("state") or "")
            for container in component.get("containers") or []:
                name = str(container.get("component_instance_name") or "")
                old = containers.get(name)
                if name and (
                    old is None or int(container.get("launch_time") or 0) >= int(old.get("launch_time") or 0)
                ):
                    containers[name] = container
        seen = {
            n: (str(c.get("id") or ""), str(c.get("bare_host") or ""))
            for n, c in containers.items()
            if c.get("id")
        }
        if seen:
            self._containers[handle.uid] = {**self._containers.get(handle.uid, {}), **seen}
            self._containers.move_to_end(handle.uid)
            while len(self._containers) > CONTAINER_MEMORY:
                self._containers.popitem(last=False)
        names = replica_names(handle) or sorted(containers)
        out = []
        for name in names:
            container = containers.get(name)
            if container is not None:
                word = str(container.get("state") or "")
                native = read_state(CONTAINER_STATES, word)
                where = f"container {container.get('id')}"
                if container.get("bare_host"):
                    where += f" on {container.get('bare_host')}"
                status = ReplicaStatus(name, native.phase, None, f"{where} is {word} ({native.meaning})")
                out.append((status, native.failure_category))
                continue
            component = name.rsplit("-", 1)[0]
            word = components.get(component) or "INIT"
            native = read_state(COMPONENT_STATES, word)
            if native.phase in (Phase.SUCCEEDED, Phase.FAILED):
                message = f"component {component} is {word} ({native.meaning})"
                out.append((ReplicaStatus(name, native.phase, None, message), native.failure_category))
            else:
                out.append((ReplicaStatus(name, Phase.PENDING, None, "no container yet"), None))
        return out

    async def cancel_job(self, handle: Handle) -> None:
        """Stop (``PUT {"state": "STOPPED"}``), then destroy (``DELETE``); done already is fine."""
        name = job_id(handle)
        async with self._http() as http:
            stop = await self._call(http, "PUT", f"{SERVICES}/{name}", body={"state": "STOPPED"})
            if stop.status_code not in (200, 202, 204, 404) and not self._gone(stop):
                raise ClusterUnreachable(
                    f"{self._where()} answered {stop.status_code} to stop {name}: {_diagnostics(stop)}"
                )
            destroy = await self._call(http, "DELETE", f"{SERVICES}/{name}")
            if destroy.status_code not in (200, 202, 204, 404) and not self._gone(destroy):
                raise ClusterUnreachable(
                    f"{self._where()} answered {destroy.status_code} to destroy {name}: "
                    f"{_diagnostics(destroy)}"
                )

    @staticmethod
    def _gone(response: httpx.Response) -> bool:
        """A 400 that only says the service is stopped or gone already."""
        text = _diagnostics(response)
        return response.status_code == 400 and ("already stopped" in text or "doesn't exist" in text)

    async def read_logs(self, handle: Handle, names: Sequence[str]) -> dict[str, list[str]]:
        """Each replica's container log from its NodeManager (the last ``log_bytes`` of ``log_file``)."""
        name = job_id(handle)
        async with self._http() as http:
            service = await self._get_service(http, name)
            if service is not None:
                self._replicas(handle, service)  # refreshes the remembered containers
            known = self._containers.get(handle.uid, {})
            limit = asyncio.Semaphore(self.config.max_concurrent_requests)
            out: dict[str, list[str]] = {}

            async def read(replica: str) -> None:
                found = known.get(replica)
                if found is None or not found[1]:
                    out[replica] = []
                    return
                async with limit:
                    out[replica] = await self._container_log(http, *found)

            await asyncio.gather(*(read(replica) for replica in names))
        return out

    async def _container_log(self, http: httpx.AsyncClient, container: str, host: str) -> list[str]:
        base = f"{self.config.nodemanager_scheme}://{host}:{self.config.nodemanager_port}"
        url = f"{base}/ws/v1/node/containerlogs/{container}/{self.config.log_file}"
        where = f"NodeManager {base} (cluster '{self.name}')"
        try:
            response = await self._call(
                http, "GET", url, params={"size": str(-self.config.log_bytes)}, where=where
            )
        except ClusterUnreachable as exc:
            log.warning("cannot read the log of %s: %s", container, exc)
            return []
        if response.status_code != 200:
            return []  # not started yet, or its log is gone
        return response.text.splitlines()

    # -- the orphan sweep ----------------------------------------------------------------------

    async def owned(self) -> list[Handle]:
        """Live services with this broker's mark (the ``description`` application tag)."""
        async with self._http() as http:
            response = await self._call(
                http,
                "GET",
                "/ws/v1/cluster/apps",
                params={
                    "applicationTypes": APP_TYPE,
                    "user": self.config.user,
                    "states": ",".join(sorted(EARLY_APP_STATES | {"RUNNING"})),
                },
            )
            if response.status_code != 200:
                raise ClusterUnreachable(
                    f"{self._where()} answered {response.status_code} to the application list"
                )
            apps = self._newest_apps(self._json(response, self._where()), None)
        mark = f"description: {spec.description(self.config.origin_mark)}".lower()
        handles = []
        for name, app in apps.items():
            tags = {t.strip().lower() for t in str(app.get("applicationTags") or "").split(",")}
            uid = spec.uid_of(name)
            if uid is None or mark not in tags:
                continue
            if str(app.get("state") or "").upper() in FINAL_APP_STATES:
                continue
            handles.append(Handle(uid, {"job_id": name, "replicas": [], "success_roles": []}))
        return handles
