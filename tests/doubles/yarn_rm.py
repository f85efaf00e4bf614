"""A small in-memory YARN ResourceManager (ASGI, Starlette): the Services API, the cluster API and a NodeManager's logs.

Serve it with ``tests.support.serve_in_thread(double.app)``; every container's ``bare_host`` is
``127.0.0.1``, so the double also answers as every NodeManager (point ``nodemanager_port`` at it).
It answers like Hadoop 3.3's ``ApiServer`` and ``ServiceClient`` over HTTP:

* ``GET /app/v1/services/version``; ``POST /app/v1/services`` (202 with ``ServiceStatus``; 400 with
  the validation problems; 500 "Service name X is already taken." for a name in use; 500 naming an
  unknown queue, as the RM's refusal arrives); ``GET /app/v1/services/{name}`` (404 once destroyed;
  only name and state while the ApplicationMaster does not run: ``ACCEPTED``, ``STOPPED`` for a
  finished or killed application, ``FAILED`` for a failed one; the whole service with
  components and containers while it runs); ``PUT`` (``STOPPED``: kill before the AM runs,
  graceful stop with final status ``ENDED`` after; "already stopped" 400 once ended;
  ``STARTED``: a new application; ``FLEX``: new container counts); ``DELETE`` (stop, then destroy;
  400 "Service X doesn't exist"); ``PUT .../components/{component}`` (flex).
* ``GET /ws/v1/cluster/metrics`` (totals minus what live containers hold, GPUs in Hadoop 3's
  ``*AcrossPartition`` resource lists) and ``GET /ws/v1/cluster/apps`` (filters ``applicationTypes``,
  ``user``, ``states``, ``name``; ``{"apps": null}`` when none match, like the RM).
* ``GET /ws/v1/node/containerlogs/{container}/{file}?size=-N`` (text; the last N bytes), also for
  containers of ended services (log aggregation).
* Simple auth: no ``user.name`` is 401; a user outside ``users`` is 403 (``refuse_credentials``).

Every POST and PUT body goes through :mod:`tests.doubles.yarn_validation`; refusals are kept in
``refused`` (tests assert it stays empty) and accepted POST bodies in ``posted``. ``requests`` logs
every call. Tests move a service with ``start`` (ACCEPTED → STARTED, containers
RUNNING_BUT_UNREADY), ``stabilize`` (STABLE, READY), ``succeed``/``fail`` (SUCCEEDED/FAILED, the AM
still up) and ``end`` (the AM exits: the application FINISHED with the final status), or set any
service, component and container state with ``set_states``.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.doubles import yarn_validation

HADOOP_VERSION = "3.3.6"
LIVE_APP_STATES = ("NEW", "NEW_SAVING", "SUBMITTED", "ACCEPTED", "RUNNING")
FINAL_CONTAINER_STATES = ("SUCCEEDED", "FAILED", "FAILED_UPGRADE", "STOPPED")


def _ms() -> int:
    return int(time.time() * 1000)


def _status(http_status: int, diagnostics: str, **extra: Any) -> JSONResponse:
    """A ``ServiceStatus`` answer, as ``ApiServer.formatResponse`` sends it."""
    return JSONResponse({"diagnostics": diagnostics, **extra}, status_code=http_status)


@dataclass
class Container:
    id: str
    component: str
    index: int
    state: str
    hostname: str
    ip: str
    bare_host: str
    launch_time: int
    cpus: int
    memory_mb: int
    gpus: int
    log: list[str] = field(default_factory=list)

    @property
    def instance(self) -> str:
        return f"{self.component}-{self.index}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ip": self.ip,
            "hostname": self.hostname,
            "state": self.state,
            "launch_time": self.launch_time,
            "bare_host": self.bare_host,
            "component_instance_name": self.instance,
        }


@dataclass
class App:
    id: str
    name: str
    user: str
    queue: str
    tags: str
    state: str = "ACCEPTED"
    final_status: str = "UNDEFINED"
    diagnostics: str = ""
    started: int = field(default_factory=_ms)
    finished: int = 0

    def to_json(self, containers: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "name": self.name,
            "queue": self.queue,
            "state": self.state,
            "finalStatus": self.final_status,
            "progress": 100.0 if self.state in ("FINISHED", "FAILED", "KILLED") else 0.0,
            "trackingUI": "History" if self.finished else "ApplicationMaster",
            "diagnostics": self.diagnostics,
            "clusterId": 1700000000000,
            "applicationType": "yarn-service",
            "applicationTags": self.tags,
            "startedTime": self.started,
            "finishedTime": self.finished,
            "elapsedTime": (self.finished or _ms()) - self.started,
            "runningContainers": containers,
            "logAggregationStatus": "DISABLED",
        }


@dataclass
class Service:
    name: str
    user: str
    spec: dict[str, Any]
    app: App
    state: str = "ACCEPTED"
    component_states: dict[str, str] = field(default_factory=dict)
    containers: list[Container] = field(default_factory=list)
    destroyed: bool = False

    def components(self) -> list[dict[str, Any]]:
        return list(self.spec.get("components") or [])

    def component(self, name: str) -> dict[str, Any]:
        return next(c for c in self.components() if c["name"] == name)


class YarnRMDouble:
    """In-memory ResourceManager. Hooks are plain methods, safe to call from the test thread."""

    def __init__(
        self,
        *,
        users: set[str] | None = None,
        vcores: int = 16,
        memory_mb: int = 65536,
        gpus: int = 0,
        queues: tuple[str, ...] = ("default",),
        domain: str = "ycluster.example.com",
        schema_dir: str | None = None,
    ) -> None:
        if schema_dir is not None:
            yarn_validation.configure(schema_dir)
        self.users = users
        self.vcores, self.memory_mb, self.gpus = vcores, memory_mb, gpus
        self.queues = set(queues)
        self.domain = domain
        self.bare_host = "127.0.0.1"
        self.lock = threading.RLock()
        self.services: dict[str, Service] = {}
        self.history: list[App] = []
        self.requests: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.posted: list[dict[str, Any]] = []
        self.outage: int | None = None  # answer every request with this status
        self._app_seq = itertools.count(1)
        self._container_seq = itertools.count(2)
        self.app = Starlette(
            routes=[
                Route("/app/v1/services/version", self._version, methods=["GET"]),
                Route("/app/v1/services", self._create, methods=["POST"]),
                Route("/app/v1/services/{name}", self._get, methods=["GET"]),
                Route("/app/v1/services/{name}", self._update, methods=["PUT"]),
                Route("/app/v1/services/{name}", self._delete, methods=["DELETE"]),
                Route(
                    "/app/v1/services/{name}/components/{component}", self._flex_component, methods=["PUT"]
                ),
                Route("/ws/v1/cluster/metrics", self._metrics, methods=["GET"]),
                Route("/ws/v1/cluster/apps", self._apps, methods=["GET"]),
                Route("/ws/v1/node/containerlogs/{container}/{file}", self._log, methods=["GET"]),
            ]
        )

    # -- test hooks ----------------------------------------------------------------------------

    def service(self, name: str) -> Service:
        with self.lock:
            return self.services[name]

    def names(self) -> list[str]:
        with self.lock:
            return [n for n, s in self.services.items() if not s.destroyed]

    def refuse_credentials(self) -> None:
        self.users = set()

    def restore_credentials(self, users: set[str] | None = None) -> None:
        self.users = users

    def requests_matching(self, method: str, path_regex: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["method"] == method and re.search(path_regex, r["path"])]

    def start(self, name: str) -> None:
        """The ApplicationMaster runs (service STARTED) and every container is launched, not ready."""
        with self.lock:
            svc = self.services[name]
            svc.app.state = "RUNNING"
            svc.state = "STARTED"
            for component in svc.components():
                svc.component_states[component["name"]] = "FLEXING"
                have = {c.index for c in svc.containers if c.component == component["name"]}
                for index in range(int(component.get("number_of_containers") or 0)):
                    if index not in have:
                        svc.containers.append(self._container(svc, component, index))

    def stabilize(self, name: str) -> None:
        """Every container READY, every component and the service STABLE."""
        with self.lock:
            svc = self.services[name]
            for container in svc.containers:
                if container.state not in FINAL_CONTAINER_STATES:
                    container.state = "READY"
            svc.component_states = {c["name"]: "STABLE" for c in svc.components()}
            svc.state = "STABLE"

    def succeed(self, name: str, *, end: bool = False) -> None:
        """Every container exited 0: components and service SUCCEEDED (the AM exits with ``end``)."""
        with self.lock:
            svc = self.services[name]
            for container in svc.containers:
                container.state = "SUCCEEDED"
            svc.component_states = {c["name"]: "SUCCEEDED" for c in svc.components()}
            svc.state = "SUCCEEDED"
            if end:
                self.end(name)

    def fail(self, name: str, replica: str, *, end: bool = False) -> None:
        """Container ``replica`` (``worker-1``) failed: its component and the service FAILED."""
        with self.lock:
            svc = self.services[name]
            container = next(c for c in svc.containers if c.instance == replica)
            container.state = "FAILED"
            svc.component_states[container.component] = "FAILED"
            svc.state = "FAILED"
            if end:
                self.end(name, diagnostics=f"Failed components: [{container.component}]")

    def end(self, name: str, *, diagnostics: str = "") -> None:
        """The ApplicationMaster exits: the application FINISHED, final status from the service's state."""
        with self.lock:
            svc = self.services[name]
            final = {"SUCCEEDED": "SUCCEEDED", "FAILED": "FAILED"}.get(svc.state, "ENDED")
            self._finish(svc, "FINISHED", final, diagnostics)

    def kill(self, name: str, *, diagnostics: str = "Application killed by user.") -> None:
        """``yarn application -kill``: the application KILLED."""
        with self.lock:
            self._finish(self.services[name], "KILLED", "KILLED", diagnostics)

    def set_states(
        self,
        name: str,
        *,
        service: str | None = None,
        components: dict[str, str] | None = None,
        containers: dict[str, str] | None = None,
        app: str | None = None,
    ) -> None:
        """Set any service, component and container (by instance name) state, and the app state."""
        with self.lock:
            svc = self.services[name]
            if app is not None:
                svc.app.state = app
            if service is not None:
                svc.state = service
            svc.component_states.update(components or {})
            for instance, state in (containers or {}).items():
                next(c for c in svc.containers if c.instance == instance).state = state

    def write_log(self, name: str, replica: str, lines: list[str]) -> None:
        with self.lock:
            svc = self.services[name]
            next(c for c in svc.containers if c.instance == replica).log.extend(lines)

    # -- internals -----------------------------------------------------------------------------

    def _container(self, svc: Service, component: dict[str, Any], index: int) -> Container:
        resource = component.get("resource") or svc.spec.get("resource") or {}
        gpu = ((resource.get("additional") or {}).get("yarn.io/gpu") or {}).get("value") or 0
        app_seq = svc.app.id.rsplit("_", 1)[1]
        instance = f"{component['name']}-{index}"
        n = next(self._container_seq)
        return Container(
            id=f"container_e01_1700000000000_{app_seq}_01_{n:06d}",
            component=component["name"],
            index=index,
            state="RUNNING_BUT_UNREADY",
            hostname=f"{instance}.{svc.name}.{svc.user}.{self.domain}",
            ip=f"10.8.{n // 250}.{n % 250 + 2}",
            bare_host=self.bare_host,
            launch_time=_ms(),
            cpus=int(resource.get("cpus") or 1),
            memory_mb=int(resource.get("memory") or 0),
            gpus=int(gpu),
        )

    def _finish(self, svc: Service, state: str, final: str, diagnostics: str) -> None:
        svc.app.state, svc.app.final_status = state, final
        svc.app.diagnostics = diagnostics or svc.app.diagnostics
        svc.app.finished = _ms()
        for container in svc.containers:
            if container.state not in FINAL_CONTAINER_STATES:
                container.state = "STOPPED"
        if svc.state not in ("SUCCEEDED", "FAILED"):
            svc.state = "STOPPED"

    def _new_app(self, name: str, user: str, spec: dict[str, Any]) -> App:
        tags = [f"name: {name}", f"version: {spec.get('version')}"]
        if spec.get("description"):
            tags.append(f"description: {spec['description']}")
        app = App(
            id=f"application_1700000000000_{next(self._app_seq):04d}",
            name=name,
            user=user,
            queue=str(spec.get("queue") or "default"),
            tags=",".join(t.lower() for t in tags),
        )
        self.history.append(app)
        return app

    async def _begin(self, request: Request) -> tuple[str | None, Response | None, Any]:
        """Log the request, check simple auth, read a JSON body; (user, error answer, body)."""
        raw = await request.body()
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        with self.lock:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "query": dict(request.query_params),
                    "body": body,
                }
            )
        if self.outage is not None:
            return None, PlainTextResponse("Service Unavailable", status_code=self.outage), None
        user = request.query_params.get("user.name")
        if not user:
            return None, PlainTextResponse("Authentication required", status_code=401), None
        if self.users is not None and user not in self.users:
            return None, _status(403, f"User {user} is not authorized"), None
        if bad_json:
            return user, _status(400, "Can not deserialize the request body: not JSON"), None
        return user, None, body

    def _find(self, name: str) -> Service | None:
        svc = self.services.get(name)
        return None if svc is None or svc.destroyed else svc

    def _refuse(self, what: str, problems: list[str]) -> None:
        self.refused.extend(f"{what}: {p}" for p in problems)

    # -- Services API --------------------------------------------------------------------------

    async def _version(self, request: Request) -> Response:
        _user, error, _ = await self._begin(request)
        return error or JSONResponse({"hadoop_version": HADOOP_VERSION})

    async def _create(self, request: Request) -> Response:
        user, error, body = await self._begin(request)
        if error:
            return error
        problems = yarn_validation.validate_service(body)
        with self.lock:
            if problems:
                self._refuse(f"POST {body.get('name') if isinstance(body, dict) else '?'}", problems)
                return _status(400, "; ".join(problems))
            name = body["name"]
            if self._find(name) is not None:
                return _status(500, f"Service name {name} is already taken.")
            queue = str(body.get("queue") or "default")
            if queue not in self.queues:
                app_id = f"application_1700000000000_{next(self._app_seq):04d}"
                return _status(
                    500,
                    f"Failed to submit {app_id} to YARN : Application {app_id} submitted by user "
                    f"{user} to unknown queue: {queue}",
                )
            svc = Service(
                name=name, user=str(user), spec=copy.deepcopy(body), app=self._new_app(name, str(user), body)
            )
            self.services[name] = svc
            self.posted.append(copy.deepcopy(body))
            return _status(
                202, f"Application ID: {svc.app.id}", state="ACCEPTED", uri=f"/app/v1/services/{name}"
            )

    async def _get(self, request: Request) -> Response:
        _user, error, _ = await self._begin(request)
        if error:
            return error
        name = request.path_params["name"]
        with self.lock:
            svc = self._find(name)
            if svc is None:
                return _status(404, f"Service {name} not found", code=-1)
            if svc.app.state != "RUNNING":
                state = {"FINISHED": "STOPPED", "KILLED": "STOPPED", "FAILED": "FAILED"}.get(
                    svc.app.state, "ACCEPTED"
                )
                return JSONResponse({"name": name, "state": state})
            return JSONResponse(self._service_json(svc))

    def _service_json(self, svc: Service) -> dict[str, Any]:
        out = copy.deepcopy(svc.spec)
        out.update(id=svc.app.id, state=svc.state, lifetime=out.get("lifetime", -1), quicklinks={})
        running = 0
        for component in out.get("components") or []:
            mine = [c for c in svc.containers if c.component == component["name"]]
            running += sum(1 for c in mine if c.state not in FINAL_CONTAINER_STATES)
            component["state"] = svc.component_states.get(component["name"], "FLEXING")
            component["containers"] = [c.to_json() for c in mine]
        out["number_of_running_containers"] = running
        return out

    async def _update(self, request: Request) -> Response:
        _user, error, body = await self._begin(request)
        if error:
            return error
        name = request.path_params["name"]
        problems = yarn_validation.validate_service(body, partial=True)
        with self.lock:
            if problems:
                self._refuse(f"PUT {name}", problems)
                return _status(400, "; ".join(problems))
            svc = self._find(name)
            if svc is None:
                return _status(404, f"Service {name} doesn't exist on hdfs.")
            state = body.get("state")
            if state == "STOPPED":
                return self._stop(svc)
            if state == "STARTED":
                if svc.app.state in LIVE_APP_STATES:
                    return _status(400, f"Failed to start service {name}, because it already exists.")
                svc.app = self._new_app(name, svc.user, svc.spec)
                svc.state, svc.containers, svc.component_states = "ACCEPTED", [], {}
                return _status(
                    200, f"Service {name} is successfully started with ApplicationId: {svc.app.id}"
                )
            if state == "FLEX":
                for change in body.get("components") or []:
                    svc.component(change["name"])["number_of_containers"] = change["number_of_containers"]
                return _status(202, f"Service {name} is successfully flexed.", state="ACCEPTED")
            return Response(status_code=204)

    def _stop(self, svc: Service) -> Response:
        if svc.app.state not in LIVE_APP_STATES:
            return _status(400, f"Service {svc.name} is already stopped")
        if svc.app.state != "RUNNING":
            self._finish(
                svc, "KILLED", "KILLED", f"{svc.name} is at {svc.app.state}, forcefully killed by user!"
            )
        else:
            self._finish(svc, "FINISHED", "ENDED", "")
        return _status(200, f"Successfully stopped service {svc.name}")

    async def _delete(self, request: Request) -> Response:
        _user, error, _ = await self._begin(request)
        if error:
            return error
        name = request.path_params["name"]
        with self.lock:
            svc = self._find(name)
            if svc is None:
                return _status(400, f"Service {name} doesn't exist")
            if svc.app.state in LIVE_APP_STATES:
                self._stop(svc)
            svc.destroyed = True
            return _status(200, f"Successfully destroyed service {name}")

    async def _flex_component(self, request: Request) -> Response:
        _user, error, body = await self._begin(request)
        if error:
            return error
        name, component = request.path_params["name"], request.path_params["component"]
        with self.lock:
            svc = self._find(name)
            if svc is None:
                return _status(404, f"Service {name} doesn't exist on hdfs.")
            count = (body or {}).get("number_of_containers")
            if not isinstance(count, int) or count < 0:
                return _status(400, "No container count provided")
            spec = svc.component(component)
            old, spec["number_of_containers"] = spec.get("number_of_containers"), count
            return _status(200, f"Updating component ({component}) size from {old} to {count}")

    # -- cluster API and NodeManager logs -------------------------------------------------------

    async def _metrics(self, request: Request) -> Response:
        _user, error, _ = await self._begin(request)
        if error:
            return error
        with self.lock:
            live = [
                c
                for s in self.services.values()
                if s.app.state == "RUNNING"
                for c in s.containers
                if c.state not in FINAL_CONTAINER_STATES
            ]
            cpu, mem, gpu = (
                sum(c.cpus for c in live),
                sum(c.memory_mb for c in live),
                sum(c.gpus for c in live),
            )
            running = sum(1 for a in self.history if a.state == "RUNNING")

        def resources(vcores: int, mb: int, gpus: int) -> dict[str, Any]:
            return {
                "memory": mb,
                "vCores": vcores,
                "resourceInformations": {
                    "resourceInformation": [
                        {"name": "memory-mb", "value": mb, "units": "Mi", "resourceType": "COUNTABLE"},
                        {"name": "vcores", "value": vcores, "units": "", "resourceType": "COUNTABLE"},
                        {"name": "yarn.io/gpu", "value": gpus, "units": "", "resourceType": "COUNTABLE"},
                    ]
                },
            }

        return JSONResponse(
            {
                "clusterMetrics": {
                    "appsSubmitted": len(self.history),
                    "appsRunning": running,
                    "reservedMB": 0,
                    "availableMB": self.memory_mb - mem,
                    "allocatedMB": mem,
                    "totalMB": self.memory_mb,
                    "reservedVirtualCores": 0,
                    "availableVirtualCores": self.vcores - cpu,
                    "allocatedVirtualCores": cpu,
                    "totalVirtualCores": self.vcores,
                    "containersAllocated": len(live),
                    "totalNodes": 1,
                    "activeNodes": 1,
                    "totalClusterResourcesAcrossPartition": resources(self.vcores, self.memory_mb, self.gpus),
                    "totalUsedResourcesAcrossPartition": resources(cpu, mem, gpu),
                }
            }
        )

    async def _apps(self, request: Request) -> Response:
        _user, error, _ = await self._begin(request)
        if error:
            return error
        query = request.query_params
        types = {t.strip().lower() for t in (query.get("applicationTypes") or "").split(",") if t.strip()}
        states = {s.strip().upper() for s in (query.get("states") or "").split(",") if s.strip()}
        with self.lock:
            apps = []
            for app in self.history:
                if types and "yarn-service" not in types:
                    continue
                if query.get("user") and app.user != query["user"]:
                    continue
                if states and app.state not in states:
                    continue
                if query.get("name") and app.name != query["name"]:
                    continue
                svc = self.services.get(app.name)
                running = 0
                if svc is not None and svc.app is app and app.state == "RUNNING":
                    running = 1 + sum(1 for c in svc.containers if c.state not in FINAL_CONTAINER_STATES)
                apps.append(app.to_json(running))
        return JSONResponse({"apps": {"app": apps} if apps else None})

    async def _log(self, request: Request) -> Response:
        _user, error, _ = await self._begin(request)
        if error:
            return error
        wanted, file = request.path_params["container"], request.path_params["file"]
        with self.lock:
            found = next((c for s in self.services.values() for c in s.containers if c.id == wanted), None)
            if found is None or file not in ("stdout.txt", "stderr.txt"):
                return PlainTextResponse(
                    f"Cannot find this log on the local disk: {wanted}/{file}", status_code=404
                )
            text = "".join(line + "\n" for line in found.log) if file == "stdout.txt" else ""
        size = request.query_params.get("size")
        data = text.encode()
        if size:
            n = int(size)
            data = data[n:] if n < 0 else data[:n]
        return PlainTextResponse(data.decode(errors="replace"))
