"""The Kubernetes API as the adapter uses it: the official client, its errors, and discovery.

Everything goes through the official ``kubernetes`` client (``ApiClient`` from the kubeconfig or
the in-cluster service account; ``CoreV1Api``, ``BatchV1Api``, ``CustomObjectsApi``, ``ApisApi``,
``VersionApi``), each blocking call in a worker thread with ``_request_timeout`` and an outer
bound. Reads ask for the raw JSON (``_preload_content=False``) so unknown fields of a newer
server never break a poll.

Errors: 401/403 answers are "credentials refused" (:class:`ClusterUnreachable`) unless a 403's
message names an admission webhook; connection errors, timeouts, 429 and 5xx are unreachable;
every other API answer is a :class:`Refused` for the verb to interpret. The token is never
logged or put in a message.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from clusters.errors import ClusterUnreachable
from clusters.kubernetes import manifests as m
from clusters.kubernetes import notebooks as nb
from clusters.kubernetes import serving as sv
from clusters.kubernetes.config import KubernetesClusterConfig

T = TypeVar("T")

KUBEFLOW = "kubeflow"
JOB = "job"
#: A notebook's objects (a StatefulSet and Service, or a Kubeflow Notebook; see notebooks.py).
NOTEBOOK = "notebook"
TRAINING_KINDS = frozenset(k.kind for k in m.KUBEFLOW_KINDS.values())
#: The plural of every custom kind the adapter creates, by kind.
CR_PLURALS = {k.kind: k.plural for k in m.KUBEFLOW_KINDS.values()} | {
    nb.NOTEBOOK_KIND: nb.NOTEBOOK_PLURAL,
    sv.ISVC_KIND: sv.ISVC_PLURAL,
}
#: The group and version of custom kinds outside ``kubeflow.org/v1``, by plural.
CR_GROUPS = {sv.ISVC_PLURAL: (sv.KSERVE_GROUP, sv.KSERVE_VERSION)}


def cr_group(plural: str | None) -> tuple[str, str]:
    """``(group, version)`` of a custom kind's plural (Kubeflow's unless listed in CR_GROUPS)."""
    return CR_GROUPS.get(plural or "", (m.KUBEFLOW_GROUP, m.KUBEFLOW_VERSION))


class Refused(Exception):
    """An API answer that is a refusal of the request (not of the credentials)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def status_message(exc: Any) -> str:
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


def quantity(value: Any) -> Decimal:
    from kubernetes.utils import parse_quantity

    try:
        return parse_quantity(value) if value is not None else Decimal(0)
    except (ValueError, TypeError, ArithmeticError):
        return Decimal(0)


class KubeClient:
    """The cluster's API as the adapter uses it: the official client (made on first use, reused),
    calls with their errors sorted, and discovery of the Kubeflow kinds served (asked once)."""

    def __init__(self, config: KubernetesClusterConfig, *, grace: float) -> None:
        self.config = config
        self.name = config.name
        #: Extra seconds a call may take beyond the client's own request timeout.
        self.grace = grace
        #: The Kubeflow kinds served (training kinds and ``Notebook``); None = not asked yet.
        self.served: set[str] | None = None
        #: Whether KServe's InferenceService is served; None = not asked yet.
        self.kserve: bool | None = None
        self._api: Any = None
        self._lock = threading.Lock()

    # -- the client ----------------------------------------------------------------------------

    def client(self) -> Any:
        """The official ``ApiClient``, made on first use (ClusterUnreachable when it cannot be)."""
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

    async def close(self) -> None:
        """Close the client's connections; the next call makes a new client."""
        with self._lock:
            api, self._api = self._api, None
        if api is not None:
            await asyncio.to_thread(api.close)

    def apis(self) -> Any:
        """The typed APIs the verbs use: ``(CoreV1Api, BatchV1Api, CustomObjectsApi)``."""
        from kubernetes import client

        api = self.client()
        return (
            client.CoreV1Api(api),
            client.BatchV1Api(api),
            client.CustomObjectsApi(api),
        )

    @property
    def namespace(self) -> str:
        """The namespace every object of this cluster's attempts lives in."""
        return self.config.namespace

    @property
    def origin(self) -> str:
        """This broker's origin label value (the orphan sweep's mark)."""
        return m.label_value(self.config.origin_label)

    def where(self) -> str:
        """The cluster as messages name it."""
        return f"Kubernetes cluster '{self.name}'"

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One client call; unreachable and refused-credential answers become ClusterUnreachable.

        Other API answers are raised as :class:`Refused` for the verb to interpret.
        """
        from kubernetes.client.exceptions import ApiException

        kwargs.setdefault("_request_timeout", self.config.request_timeout)
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            status = int(exc.status or 0)
            message = status_message(exc)
            if status == 403 and "admission webhook" in message:
                raise Refused(status, message) from None
            if status in (401, 403):
                raise ClusterUnreachable(f"{self.where()}: credentials refused: {message}") from None
            if status == 0 or status >= 500 or status == 429:
                raise ClusterUnreachable(f"{self.where()} answered {status}: {message}") from None
            raise Refused(status, message) from None
        except (OSError, ConnectionError) as exc:
            raise ClusterUnreachable(f"{self.where()} did not answer: {type(exc).__name__}") from None
        except Exception as exc:
            # urllib3's errors (MaxRetryError, ProtocolError, ...) are not OSErrors.
            if type(exc).__module__.startswith("urllib3"):
                raise ClusterUnreachable(f"{self.where()} did not answer: {type(exc).__name__}") from None
            raise

    def json(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A read call answered as plain JSON."""
        response = self.call(fn, *args, _preload_content=False, **kwargs)
        return json.loads(response.data or b"{}")

    async def thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking step in a worker thread, bounded by twice the request timeout and the grace."""
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(fn, *args), self.config.request_timeout * 2 + self.grace
            )
        except TimeoutError:
            raise ClusterUnreachable(
                f"{self.where()} did not answer within {self.config.request_timeout * 2 + self.grace:g}s"
            ) from None

    # -- discovery -----------------------------------------------------------------------------

    def discover(self) -> set[str]:
        """The Kubeflow kinds the API server serves (asked once, then cached): training kinds and
        ``Notebook``. A group whose resource list cannot be read is assumed to serve every
        training kind, but not notebooks (a separate controller)."""
        if self.served is not None:
            return self.served
        from kubernetes import client

        groups = self.json(client.ApisApi(self.client()).get_api_versions)
        served: set[str] = set()
        for group in groups.get("groups") or []:
            if group.get("name") != m.KUBEFLOW_GROUP:
                continue
            if not any(v.get("version") == m.KUBEFLOW_VERSION for v in group.get("versions") or []):
                continue
            try:
                resources = self.json(
                    client.CustomObjectsApi(self.client()).get_api_resources,
                    m.KUBEFLOW_GROUP,
                    m.KUBEFLOW_VERSION,
                )
                plurals = {r.get("name") for r in resources.get("resources") or []}
            except Refused:  # the group is listed but its resources are not: assume all
                plurals = {k.plural for k in m.KUBEFLOW_KINDS.values()}
            served = {k.kind for k in m.KUBEFLOW_KINDS.values() if k.plural in plurals}
            if nb.NOTEBOOK_PLURAL in plurals:
                served.add(nb.NOTEBOOK_KIND)
        self.served = served
        return served

    def serves_kserve(self) -> bool:
        """Whether the API server serves KServe's ``inferenceservices`` under
        ``serving.kserve.io/v1beta1`` (asked once, then cached)."""
        if self.kserve is not None:
            return self.kserve
        from kubernetes import client

        groups = self.json(client.ApisApi(self.client()).get_api_versions)
        found = False
        for group in groups.get("groups") or []:
            if group.get("name") != sv.KSERVE_GROUP:
                continue
            if not any(v.get("version") == sv.KSERVE_VERSION for v in group.get("versions") or []):
                continue
            try:
                resources = self.json(
                    client.CustomObjectsApi(self.client()).get_api_resources,
                    sv.KSERVE_GROUP,
                    sv.KSERVE_VERSION,
                )
            except Refused:
                break
            found = any(r.get("name") == sv.ISVC_PLURAL for r in resources.get("resources") or [])
        self.kserve = found
        return found

    def serve_api(self) -> str:
        """``kserve`` (an InferenceService) when KServe is served and ``serve_api`` allows it, else
        ``deployment``. Raises ClusterUnreachable when discovery cannot be asked: guessing could
        make a retried submit build the other shape beside the first."""
        if self.config.serve_api != "auto":
            return self.config.serve_api
        try:
            return sv.KSERVE if self.serves_kserve() else sv.DEPLOYMENT
        except Refused:  # discovery is forbidden: remember the answer
            self.kserve = False
            return sv.DEPLOYMENT

    def shape(self) -> str:
        """``kubeflow`` or ``job``: what a plan addressed now will be created as."""
        if self.config.workload_api != "auto":
            return self.config.workload_api
        try:
            return KUBEFLOW if self.discover() & TRAINING_KINDS else JOB
        except (ClusterUnreachable, Refused):
            return JOB

    def notebook_api(self) -> str:
        """``kubeflow`` (a Notebook) when the notebook controller is served and ``workload_api`` is
        not ``job``, else ``statefulset``. Raises ClusterUnreachable when discovery cannot be
        asked: guessing could make a retried submit build the other shape beside the first."""
        if self.config.workload_api == JOB:
            return nb.STATEFULSET
        try:
            served = self.discover()
        except Refused:  # discovery is forbidden: remember the answer, as health does
            self.served = served = set()
        return nb.KUBEFLOW if nb.NOTEBOOK_KIND in served else nb.STATEFULSET
