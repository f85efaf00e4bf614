"""A small in-memory Kubernetes API server (ASGI, Starlette) for driving the official client in tests.

Serve it with ``tests.support.serve_in_thread(double.app)`` and point the client at it through
``double.kubeconfig(path, url)``. It speaks enough of the apiserver's REST protocol for an adapter:

* discovery: ``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/batch``, ``/apis/batch/v1``,
  ``/apis/apps``, ``/apis/apps/v1`` and, when ``kubeflow`` or ``notebooks`` is on,
  ``/apis/kubeflow.org`` and ``/apis/kubeflow.org/v1``; when ``kserve`` is on,
  ``/apis/serving.kserve.io`` and ``/apis/serving.kserve.io/v1beta1``;
* namespaced create/get/list/delete (plus PUT replace and merge PATCH) for v1 pods, services,
  configmaps, secrets, persistentvolumeclaims, batch/v1 jobs, apps/v1 statefulsets and deployments,
  kubeflow.org/v1 tfjobs, pytorchjobs, xgboostjobs (``kubeflow``) and notebooks (``notebooks``),
  serving.kserve.io/v1beta1 inferenceservices (``kserve``);
  cluster-wide lists (``/api/v1/pods``, ``/apis/batch/v1/jobs`` ...) and ``/api/v1/nodes``; pod logs;
* Status bodies shaped like a real apiserver's for 400/401/403/404/405/409/422;
* bearer-token auth with switches to refuse (401) or forbid (403) a token later.

Every create/replace goes through ``kube_validation.validate``; accepted objects are appended to
``created`` and refusals to ``refused`` so a test can assert that everything the adapter sent was
valid (``assert not double.refused``). Each request is logged in ``requests``; each delete in
``deletions`` (with its propagation policy).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.doubles import kube_validation

# (group, version, plural) -> (kind, namespaced)
CORE: dict[str, tuple[str, bool]] = {
    "pods": ("Pod", True),
    "services": ("Service", True),
    "configmaps": ("ConfigMap", True),
    "secrets": ("Secret", True),
    "persistentvolumeclaims": ("PersistentVolumeClaim", True),
    "nodes": ("Node", False),
}
BATCH: dict[str, tuple[str, bool]] = {"jobs": ("Job", True)}
APPS: dict[str, tuple[str, bool]] = {
    "statefulsets": ("StatefulSet", True),
    "deployments": ("Deployment", True),
}
#: The Kubeflow notebook controller's kind (a separate controller, served under the same group).
NOTEBOOKS: dict[str, tuple[str, bool]] = {"notebooks": ("Notebook", True)}
KUBEFLOW: dict[str, tuple[str, bool]] = {
    "tfjobs": ("TFJob", True),
    "pytorchjobs": ("PyTorchJob", True),
    "xgboostjobs": ("XGBoostJob", True),
}
#: KServe's InferenceService (served under ``serving.kserve.io/v1beta1`` when ``kserve`` is on).
KSERVE_GROUP_VERSION = "serving.kserve.io/v1beta1"
KSERVE: dict[str, tuple[str, bool]] = {"inferenceservices": ("InferenceService", True)}
#: Kinds whose lists keep ``kind``/``apiVersion`` per item (custom resources).
CUSTOM = KUBEFLOW | NOTEBOOKS | KSERVE
#: Kinds whose main resource ignores status writes (they have a status subresource).
WITH_STATUS = (
    KUBEFLOW | BATCH | APPS | NOTEBOOKS | KSERVE | {"persistentvolumeclaims": ("PersistentVolumeClaim", True)}
)
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0",
    "gitCommit": "7c48c2bd72b9bf5c44d21d7338cc7bea77d0ad2a",
    "gitTreeState": "clean",
    "buildDate": "2024-04-17T17:27:03Z",
    "goVersion": "go1.22.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}
WEBHOOKS = {
    "TFJob": "validator.tfjob.training-operator.kubeflow.org",
    "PyTorchJob": "validator.pytorchjob.training-operator.kubeflow.org",
    "XGBoostJob": "validator.xgboostjob.training-operator.kubeflow.org",
}
# training-operator: these conditions are mutually exclusive "phases"; setting one True turns the others False
_KF_PHASES = ("Created", "Running", "Restarting", "Succeeded", "Failed", "Suspended")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``Status`` object exactly as the apiserver sends it with an error."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.body = status_body(code, reason, message, details)
        self.code = code


# -- label and field selectors ------------------------------------------------------------------

_SET_TERM = re.compile(r"^\s*([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def parse_label_selector(selector: str) -> Callable[[dict[str, str]], bool]:
    """``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``, ``a notin (x,y)``, comma-joined (AND)."""
    checks: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_terms(selector or ""):
        set_match = _SET_TERM.match(term)
        if set_match:
            key, op, values = (
                set_match.group(1),
                set_match.group(2),
                {v.strip() for v in set_match.group(3).split(",") if v.strip()},
            )
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif "!=" in term:
            key, value = (p.strip() for p in term.split("!=", 1))
            checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in term:
            key, value = (p.strip() for p in re.split(r"==?", term, maxsplit=1))
            checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif term.startswith("!"):
            key = term[1:].strip()
            checks.append(lambda labels, k=key: k not in labels)
        elif re.match(r"^[A-Za-z0-9][-A-Za-z0-9_./]*$", term):
            checks.append(lambda labels, k=term: k in labels)
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: invalid label selector {term!r}")
    return lambda labels: all(check(labels or {}) for check in checks)


def _field(obj: dict[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def parse_field_selector(selector: str) -> Callable[[dict[str, Any]], bool]:
    """``metadata.name=x``, ``status.phase!=Succeeded``, ``spec.nodeName=n`` ... comma-joined."""
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for term in _split_terms(selector or ""):
        if "!=" in term:
            key, value = (p.strip() for p in term.split("!=", 1))
            checks.append(lambda obj, k=key, v=value: _field(obj, k) != v)
        elif "=" in term:
            key, value = (p.strip() for p in re.split(r"==?", term, maxsplit=1))
            checks.append(lambda obj, k=key, v=value: _field(obj, k) == v)
        else:
            raise ApiError(400, "BadRequest", f"invalid field selector: {term!r}")
    return lambda obj: all(check(obj) for check in checks)


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def write_kubeconfig(
    path: str | Path,
    url: str,
    token: str,
    namespace: str = "default",
    *,
    context: str = "double",
    cluster: str = "double",
    user: str = "double-user",
) -> Path:
    """A kubeconfig that ``kubernetes.config.load_kube_config(config_file=path, context=context)`` accepts."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": url}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": context, "context": {"cluster": cluster, "user": user, "namespace": namespace}}
        ],
        "current-context": context,
        "preferences": {},
    }
    path = Path(path)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


kubeconfig = write_kubeconfig


class KubeApiDouble:
    """In-memory apiserver. All hooks are plain methods, safe to call from the test thread.

    ``token``: the bearer token the server accepts (None: no auth at all).
    ``kubeflow``: serve the training operator's kinds under kubeflow.org/v1 (can be flipped later
    through the attribute). ``notebooks``: serve the notebook controller's ``notebooks`` there.
    ``webhook_denials``: how the training operator's webhook rules refuse a CR: ``"422"`` (default; one
    Invalid Status with every message) or ``"403"`` (like a real cluster: schema errors are 422, the
    webhook's are 403 Forbidden ``admission webhook "..." denied the request: ...``).
    ``validate``: the validation function (``kube_validation.validate`` by default).
    ``crd_dir``: where the Kubeflow CRDs are (passed to ``kube_validation.configure``).
    ``kserve``: serve KServe's ``inferenceservices`` under ``serving.kserve.io/v1beta1`` (validated
    against the InferenceService CRD, see ``kube_validation``).
    """

    def __init__(
        self,
        *,
        token: str | None = "test-token",
        kubeflow: bool = True,
        notebooks: bool = False,
        webhook_denials: str = "422",
        validate: Callable[[dict[str, Any]], list[str]] | None = None,
        crd_dir: str | Path | None = None,
        kserve: bool = False,
    ) -> None:
        self.token = token
        self.kubeflow = kubeflow
        self.notebooks = notebooks
        self.kserve = kserve
        self.webhook_denials = webhook_denials
        self.auth_mode = "ok"  # "ok" | "refused" (401) | "forbidden" (403 on resources)
        if crd_dir is not None:
            kube_validation.configure(crd_dir)
        self._validate = validate or kube_validation.validate
        self.lock = threading.RLock()
        self._rv = 1000
        # (plural, namespace or "", name) -> object
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], dict[str, list[str]]] = {}
        self.created: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []
        self.deletions: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[tuple[str, str, int]] = []  # (method, path regex, code)
        self.app = Starlette(routes=self._routes())

    # -- test hooks -----------------------------------------------------------------------------

    def refuse_credentials(self) -> None:
        """From now on the token is refused: 401 everywhere."""
        self.auth_mode = "refused"

    def forbid(self) -> None:
        """From now on the token authenticates but may do nothing: 403 on every resource request."""
        self.auth_mode = "forbidden"

    def restore_credentials(self) -> None:
        self.auth_mode = "ok"

    def kubeconfig(self, path: str | Path, url: str, namespace: str = "default", *, token: str | None = None,
                   context: str = "double") -> Path:  # fmt: skip
        return write_kubeconfig(path, url, token if token is not None else (self.token or "none"), namespace,
                                context=context)  # fmt: skip

    def objects(self, kind_plural: str, ns: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the stored objects of a kind (one namespace, or all)."""
        with self.lock:
            return [
                copy.deepcopy(obj)
                for (plural, namespace, _), obj in sorted(self.store.items())
                if plural == kind_plural and (ns is None or namespace == ns)
            ]

    def get(self, kind_plural: str, ns: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.store.get((kind_plural, ns if self._resource(kind_plural)[1] else "", name))
            return copy.deepcopy(obj) if obj else None

    def put_object(self, kind_plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object directly (no validation, not recorded in ``created``), e.g. a foreign one."""
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now())
            meta["resourceVersion"] = self._next_rv()
            namespaced = self._resource(kind_plural)[1]
            self.store[(kind_plural, meta.get("namespace", "") if namespaced else "", meta["name"])] = obj
            return copy.deepcopy(obj)

    def set_condition(
        self,
        kind_plural: str,
        ns: str,
        name: str,
        type: str,
        status: str = "True",
        reason: str | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        """Move a CR (training-operator style) or a Job (Job-controller style) to a condition."""
        with self.lock:
            obj = self._must(kind_plural, ns, name)
            st = obj.setdefault("status", {})
            conditions: list[dict[str, Any]] = st.setdefault("conditions", [])
            stamp = now()
            kind = obj.get("kind", "")
            reason = reason or (f"{kind}{type}" if kind_plural in KUBEFLOW else type)
            message = message if message is not None else f"{kind} {ns}/{name} is {type.lower()}."
            new = {"type": type, "status": status, "reason": reason, "message": message,
                   "lastUpdateTime": stamp, "lastTransitionTime": stamp}  # fmt: skip
            if kind_plural == "jobs":
                new = {"type": type, "status": status, "reason": reason, "message": message,
                       "lastProbeTime": stamp, "lastTransitionTime": stamp}  # fmt: skip
            if kind_plural in KUBEFLOW and status == "True" and type in _KF_PHASES:
                # training-operator: Running and Restarting exclude each other; a final state ends Running
                for cond in conditions:
                    if (
                        cond["type"] in ("Running", "Restarting")
                        and cond["type"] != type
                        and cond["status"] == "True"
                    ):
                        cond.update(status="False", lastTransitionTime=stamp, lastUpdateTime=stamp)
                if type == "Running":
                    st.setdefault("startTime", stamp)
                if type in ("Succeeded", "Failed"):
                    st["completionTime"] = stamp
            for cond in conditions:
                if cond["type"] == type:
                    if cond["status"] == status:
                        new["lastTransitionTime"] = cond.get("lastTransitionTime", stamp)
                    cond.clear()
                    cond.update(new)
                    break
            else:
                conditions.append(new)
            if kind_plural == "jobs":
                spec = obj.get("spec", {})
                st.setdefault("startTime", stamp)
                if type == "Complete" and status == "True":
                    st["succeeded"] = spec.get("completions") or spec.get("parallelism") or 1
                    st["active"] = 0
                    st["completionTime"] = stamp
                elif type == "Failed" and status == "True":
                    st["failed"] = max(int(st.get("failed", 0)), int(spec.get("backoffLimit", 6)) + 1)
                    st["active"] = 0
            obj["metadata"]["resourceVersion"] = self._next_rv()
            return copy.deepcopy(obj)

    def patch_status(self, kind_plural: str, ns: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Merge ``status`` into the object's status (e.g. ``{"active": 2}`` or ``replicaStatuses``)."""
        with self.lock:
            obj = self._must(kind_plural, ns, name)
            obj["status"] = _merge_patch(obj.get("status") or {}, status)
            obj["metadata"]["resourceVersion"] = self._next_rv()
            return copy.deepcopy(obj)

    def add_pod(
        self,
        ns: str,
        name: str,
        labels: dict[str, str] | None = None,
        phase: str = "Running",
        log_lines: list[str] | dict[str, list[str]] | None = None,
        requests: dict[str, str] | None = None,
        *,
        node: str | None = None,
        owner: tuple[str, str] | None = None,
        container: str = "main",
        image: str = "busybox",
    ) -> dict[str, Any]:
        """A pod as a controller would make it. ``owner=(plural, name)`` sets ownerReferences (cascade
        deletes); ``log_lines`` is a list (for ``container``) or {container: lines}."""
        with self.lock:
            meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": dict(labels or {})}
            if owner is not None:
                parent = self._must(owner[0], ns, owner[1])
                meta["ownerReferences"] = [{
                    "apiVersion": parent.get("apiVersion"), "kind": parent.get("kind"),
                    "name": parent["metadata"]["name"], "uid": parent["metadata"]["uid"],
                    "controller": True, "blockOwnerDeletion": True,
                }]  # fmt: skip
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": {
                    "containers": [
                        {"name": container, "image": image, "resources": {"requests": dict(requests or {})}}
                    ],  # fmt: skip
                    "restartPolicy": "Never",
                    **({"nodeName": node} if node else {}),
                },
                "status": {"phase": phase, "startTime": now()},
            }
            stored = self.put_object("pods", pod)
            if log_lines is not None:
                self.set_logs(ns, name, log_lines, container=container)
            return stored

    def set_pod_phase(self, ns: str, name: str, phase: str) -> None:
        self.patch_status("pods", ns, name, {"phase": phase})

    def set_statefulset_ready(self, ns: str, name: str, ready: int = 1) -> dict[str, Any]:
        """The StatefulSet controller's status once ``ready`` pods pass their readiness probes."""
        with self.lock:
            obj = self._must("statefulsets", ns, name)
            replicas = int(obj.get("spec", {}).get("replicas", 1))
            status = {"observedGeneration": obj["metadata"].get("generation", 1), "replicas": replicas,
                      "readyReplicas": ready, "currentReplicas": replicas, "updatedReplicas": replicas,
                      "availableReplicas": ready, "currentRevision": f"{name}-6d4b9c7f5",
                      "updateRevision": f"{name}-6d4b9c7f5", "collisionCount": 0}  # fmt: skip
        return self.patch_status("statefulsets", ns, name, status)

    def add_statefulset_pod(
        self,
        ns: str,
        owner: tuple[str, str],
        *,
        ordinal: int = 0,
        phase: str = "Pending",
        container_state: dict[str, Any] | None = None,
        last_state: dict[str, Any] | None = None,
        conditions: list[dict[str, Any]] | None = None,
        log_lines: list[str] | None = None,
    ) -> dict[str, Any]:
        """Pod ``<statefulset>-<ordinal>`` as the StatefulSet controller makes it from its template
        (``owner=("statefulsets", name)``), or as the notebook controller's StatefulSet makes it
        from a Notebook (``owner=("notebooks", name)``: the Notebook's labels on the pod, owned
        through the StatefulSet). ``container_state`` is the first container's ``state``
        (``{"waiting": {"reason": "ImagePullBackOff", ...}}``)."""
        with self.lock:
            parent = self._must(owner[0], ns, owner[1])
            name = parent["metadata"]["name"]
            if owner[0] == "notebooks":
                template = {"metadata": {"labels": {**parent["metadata"].get("labels", {}),
                                                    "statefulset": name, "notebook-name": name}},
                            "spec": parent["spec"]["template"]["spec"]}  # fmt: skip
            else:
                template = parent["spec"]["template"]
            pod_name = f"{name}-{ordinal}"
            labels = {**template.get("metadata", {}).get("labels", {}),
                      "statefulset.kubernetes.io/pod-name": pod_name,
                      "apps.kubernetes.io/pod-index": str(ordinal),
                      "controller-revision-hash": f"{name}-6d4b9c7f5"}  # fmt: skip
            spec = copy.deepcopy(template["spec"])
            first = spec["containers"][0]
            status: dict[str, Any] = {"phase": phase, "conditions": list(conditions or [])}
            if container_state is not None:
                status["containerStatuses"] = [{
                    "name": first["name"], "image": first.get("image", ""), "imageID": "",
                    "ready": "running" in container_state, "restartCount": 0,
                    "started": "running" in container_state, "state": container_state,
                    **({"lastState": last_state} if last_state else {}),
                }]  # fmt: skip
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": ns,
                    "labels": labels,
                    "ownerReferences": [
                        {
                            "apiVersion": parent.get("apiVersion"),
                            "kind": parent.get("kind"),
                            "name": name,
                            "uid": parent["metadata"]["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },  # fmt: skip
                "spec": {**spec, "hostname": pod_name, "subdomain": name},
                "status": status,
            }
            stored = self.put_object("pods", pod)
            if log_lines is not None:
                self.set_logs(ns, pod_name, log_lines, container=first["name"])
            return stored

    def set_notebook_status(
        self,
        ns: str,
        name: str,
        *,
        ready: int = 1,
        container_state: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The notebook controller's status of a Notebook: ``readyReplicas`` copied from its
        StatefulSet, the server container's state and a condition naming it (newest first)."""
        state = container_state if container_state is not None else {"running": {"startedAt": now()}}
        kind = next(iter(state), "running")
        condition: dict[str, Any] = {"type": kind.capitalize(), "status": "True", "lastProbeTime": now()}
        if isinstance(state.get(kind), dict) and state[kind].get("reason"):
            condition.update(reason=state[kind]["reason"], message=state[kind].get("message", ""))
        with self.lock:
            previous = list(self._must("notebooks", ns, name).get("status", {}).get("conditions", []))
        return self.patch_status("notebooks", ns, name, {"readyReplicas": ready, "containerState": state,
                                                         "conditions": [condition, *previous]})  # fmt: skip

    def set_deployment_available(self, ns: str, name: str, available: int = 1) -> dict[str, Any]:
        """The Deployment controller's status once ``available`` pods passed their readiness probes
        (with its ``Available`` condition True when at least one is)."""
        with self.lock:
            obj = self._must("deployments", ns, name)
            replicas = int(obj.get("spec", {}).get("replicas", 1))
        stamp = now()
        ok = available >= 1
        condition = {"type": "Available", "status": "True" if ok else "False",
                     "reason": "MinimumReplicasAvailable" if ok else "MinimumReplicasUnavailable",
                     "message": "Deployment has minimum availability." if ok
                     else "Deployment does not have minimum availability.",
                     "lastUpdateTime": stamp, "lastTransitionTime": stamp}  # fmt: skip
        status = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                  "readyReplicas": available, "availableReplicas": available,
                  "unavailableReplicas": max(replicas - available, 0), "conditions": [condition]}  # fmt: skip
        return self.patch_status("deployments", ns, name, status)

    def set_inference_service_status(
        self,
        ns: str,
        name: str,
        *,
        ready: bool = True,
        reason: str | None = None,
        message: str | None = None,
        url: str | None = None,
    ) -> dict[str, Any]:
        """KServe's status of an InferenceService (RawDeployment mode): the ``PredictorReady``,
        ``IngressReady`` and ``Ready`` conditions, and once ready its URLs (``status.url`` outside,
        ``status.address.url`` inside the cluster)."""
        stamp = now()
        state = "True" if ready else "False"
        detail = {} if ready else {"reason": reason or "MinimumReplicasUnavailable",
                                   "message": message or "Deployment does not have minimum availability."}  # fmt: skip
        conditions = [
            {"type": "IngressReady", "status": state, "lastTransitionTime": stamp, **detail},
            {"type": "PredictorReady", "status": state, "lastTransitionTime": stamp, **detail},
            {"type": "Ready", "status": state, "lastTransitionTime": stamp, **detail},
        ]
        status: dict[str, Any] = {"observedGeneration": 1, "conditions": conditions,
                                  "deploymentMode": "RawDeployment",
                                  "modelStatus": {"transitionStatus": "UpToDate" if ready else "InProgress"}}  # fmt: skip
        if ready:
            inside = url or f"http://{name}-predictor.{ns}.svc.cluster.local"
            status["address"] = {"url": inside}
            status["url"] = url or f"http://{name}-{ns}.example.com"
            status["components"] = {"predictor": {"url": status["url"], "address": {"url": inside}}}
        return self.patch_status("inferenceservices", ns, name, status)

    def set_logs(
        self, ns: str, name: str, lines: list[str] | dict[str, list[str]], *, container: str = "main"
    ) -> None:
        with self.lock:
            by_container = lines if isinstance(lines, dict) else {container: list(lines)}
            self.logs.setdefault((ns, name), {}).update({c: list(v) for c, v in by_container.items()})

    def set_node(
        self,
        name: str,
        cpu: str | int = "8",
        memory: str = "32Gi",
        gpu: str | int = 0,
        *,
        labels: dict[str, str] | None = None,
        ready: bool = True,
        unschedulable: bool = False,
    ) -> dict[str, Any]:
        resources = {"cpu": str(cpu), "memory": str(memory), "pods": "110"}
        if gpu:
            resources["nvidia.com/gpu"] = str(gpu)
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"unschedulable": True} if unschedulable else {},
            "status": {
                "capacity": dict(resources),
                "allocatable": dict(resources),
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if ready else "False",
                        "reason": "KubeletReady" if ready else "KubeletNotReady",
                    }
                ],  # fmt: skip
            },
        }
        return self.put_object("nodes", node)

    def remove(self, kind_plural: str, ns: str, name: str) -> None:
        with self.lock:
            self.store.pop((kind_plural, ns if self._resource(kind_plural)[1] else "", name), None)

    def fail(self, method: str, path_regex: str, code: int = 500) -> None:
        """The next request matching ``method`` and ``path_regex`` gets an error ``code`` (once)."""
        with self.lock:
            self.fail_next.append((method.upper(), path_regex, code))

    def requests_matching(self, method: str, path_regex: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                r for r in self.requests if r["method"] == method.upper() and re.search(path_regex, r["path"])
            ]

    # -- internals ------------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _resource(self, plural: str) -> tuple[str, bool]:
        for table in (CORE, BATCH, APPS, KUBEFLOW, NOTEBOOKS, KSERVE):
            if plural in table:
                return table[plural]
        raise KeyError(plural)

    def _must(self, plural: str, ns: str, name: str) -> dict[str, Any]:
        key = (plural, ns if self._resource(plural)[1] else "", name)
        if key not in self.store:
            raise KeyError(f"no {plural} {ns}/{name} in the double")
        return self.store[key]

    def _groups(self) -> dict[str, dict[str, tuple[str, bool]]]:
        groups = {"v1": CORE, "batch/v1": BATCH, "apps/v1": APPS}
        if self.kubeflow or self.notebooks:
            groups["kubeflow.org/v1"] = (KUBEFLOW if self.kubeflow else {}) | (
                NOTEBOOKS if self.notebooks else {}
            )
        if self.kserve:
            groups[KSERVE_GROUP_VERSION] = KSERVE
        return groups

    def _routes(self) -> list[Route]:
        ns_item = "/namespaces/{ns}/{plural}/{name}"
        return [
            Route("/version", self._version),
            Route("/healthz", self._healthz),
            Route("/livez", self._healthz),
            Route("/readyz", self._healthz),
            Route("/api", self._api_versions),
            Route("/api/v1", self._core_resources),
            Route("/apis", self._group_list),
            Route("/apis/{group}", self._group),
            Route("/apis/{group}/{version}", self._group_resources),
            Route("/api/v1/namespaces/{ns}/pods/{name}/log", self._pod_log),
            Route("/api/v1/{plural}", self._core_collection, methods=["GET", "POST"]),
            Route("/api/v1/{plural}/{name}", self._core_item, methods=["GET", "DELETE", "PUT", "PATCH"]),
            Route("/api/v1/namespaces/{ns}/{plural}", self._core_collection, methods=["GET", "POST"]),
            Route("/api/v1" + ns_item, self._core_item, methods=["GET", "DELETE", "PUT", "PATCH"]),
            Route("/apis/{group}/{version}/{plural}", self._group_collection, methods=["GET", "POST"]),
            Route(
                "/apis/{group}/{version}/namespaces/{ns}/{plural}",
                self._group_collection,
                methods=["GET", "POST"],
            ),  # fmt: skip
            Route(
                "/apis/{group}/{version}" + ns_item,
                self._group_item,
                methods=["GET", "DELETE", "PUT", "PATCH"],
            ),  # fmt: skip
        ]

    # auth, logging, errors
    async def _guard(self, request: Request, *, resource: bool) -> Response | None:
        with self.lock:
            self.requests.append({
                "method": request.method, "path": request.url.path,
                "query": {k: v[-1] for k, v in parse_qs(request.url.query).items()},
                "user_agent": request.headers.get("user-agent"),
            })  # fmt: skip
            for i, (method, regex, code) in enumerate(self.fail_next):
                if method == request.method and re.search(regex, request.url.path):
                    del self.fail_next[i]
                    reason = {500: "InternalError", 503: "ServiceUnavailable", 429: "TooManyRequests"}
                    return self._error(ApiError(code, reason.get(code, "InternalError"), "injected failure"))
        if self.token is None:
            return None
        header = request.headers.get("authorization", "")
        presented = header[7:].strip() if header.lower().startswith("bearer ") else None
        public = request.url.path in ("/version", "/healthz", "/livez", "/readyz")
        if presented is None and public:
            return None
        if presented != self.token or self.auth_mode == "refused":
            return self._error(ApiError(401, "Unauthorized", "Unauthorized"))
        if self.auth_mode == "forbidden" and resource:
            params = request.path_params
            group = params.get("group", "")
            plural = params.get("plural", "pods")
            verb = {"GET": "get" if "name" in params else "list", "POST": "create", "DELETE": "delete",
                    "PUT": "update", "PATCH": "patch"}.get(request.method, "get")  # fmt: skip
            where = f' in the namespace "{params["ns"]}"' if "ns" in params else " at the cluster scope"
            message = (
                f'{plural} is forbidden: User "system:serviceaccount:default:submarine" cannot {verb} '
                f'resource "{plural}" in API group "{group}"{where}'
            )
            return self._error(ApiError(403, "Forbidden", message, {"group": group, "kind": plural}))
        return None

    @staticmethod
    def _error(exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.code)

    @staticmethod
    def _not_found_path() -> ApiError:
        return ApiError(404, "NotFound", "the server could not find the requested resource", {})

    # discovery
    async def _version(self, request: Request) -> Response:
        return await self._guard(request, resource=False) or JSONResponse(VERSION)

    async def _healthz(self, request: Request) -> Response:
        return await self._guard(request, resource=False) or PlainTextResponse("ok")

    async def _api_versions(self, request: Request) -> Response:
        host = f"{request.url.hostname}:{request.url.port}"
        body = {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}  # fmt: skip
        return await self._guard(request, resource=False) or JSONResponse(body)

    def _group_doc(self, group_version: str) -> dict[str, Any]:
        group, version = group_version.split("/")
        gv = {"groupVersion": group_version, "version": version}
        return {"name": group, "versions": [gv], "preferredVersion": gv}

    async def _group_list(self, request: Request) -> Response:
        denied = await self._guard(request, resource=False)
        if denied:
            return denied
        groups = [self._group_doc(gv) for gv in self._groups() if "/" in gv]
        return JSONResponse({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def _group(self, request: Request) -> Response:
        denied = await self._guard(request, resource=False)
        if denied:
            return denied
        for gv in self._groups():
            if gv.split("/")[0] == request.path_params["group"]:
                return JSONResponse({"kind": "APIGroup", "apiVersion": "v1", **self._group_doc(gv)})
        return self._error(self._not_found_path())

    def _resource_list(self, group_version: str) -> dict[str, Any]:
        resources = []
        for plural, (kind, namespaced) in self._groups()[group_version].items():
            resources.append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced,
                              "kind": kind, "verbs": VERBS})  # fmt: skip
            if plural not in ("configmaps", "secrets"):
                resources.append({"name": f"{plural}/status", "singularName": "", "namespaced": namespaced,
                                  "kind": kind, "verbs": ["get", "patch", "update"]})  # fmt: skip
            if plural == "pods":
                resources.append({"name": "pods/log", "singularName": "", "namespaced": True,
                                  "kind": "Pod", "verbs": ["get"]})  # fmt: skip
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                "resources": resources}  # fmt: skip

    async def _core_resources(self, request: Request) -> Response:
        return await self._guard(request, resource=False) or JSONResponse(self._resource_list("v1"))

    async def _group_resources(self, request: Request) -> Response:
        denied = await self._guard(request, resource=False)
        if denied:
            return denied
        gv = f"{request.path_params['group']}/{request.path_params['version']}"
        if gv not in self._groups():
            return self._error(self._not_found_path())
        return JSONResponse(self._resource_list(gv))

    # resources
    def _lookup(self, group_version: str, plural: str) -> tuple[str, bool]:
        table = self._groups().get(group_version)
        if table is None or plural not in table:
            raise self._not_found_path()
        return table[plural]

    async def _core_collection(self, request: Request) -> Response:
        return await self._collection(request, "v1")

    async def _core_item(self, request: Request) -> Response:
        return await self._item(request, "v1")

    async def _group_collection(self, request: Request) -> Response:
        p = request.path_params
        return await self._collection(request, f"{p['group']}/{p['version']}")

    async def _group_item(self, request: Request) -> Response:
        p = request.path_params
        return await self._item(request, f"{p['group']}/{p['version']}")

    async def _collection(self, request: Request, gv: str) -> Response:
        denied = await self._guard(request, resource=True)
        if denied:
            return denied
        try:
            plural = request.path_params["plural"]
            ns = request.path_params.get("ns")
            kind, namespaced = self._lookup(gv, plural)
            if ns is not None and not namespaced:
                raise self._not_found_path()
            if request.method == "POST":
                if ns is None and namespaced:
                    raise ApiError(
                        405,
                        "MethodNotAllowed",
                        "the server does not allow this method on the requested resource",
                    )
                return await self._create(request, gv, plural, kind, ns or "")
            return self._list(request, gv, plural, kind, ns)
        except ApiError as exc:
            return self._error(exc)

    async def _item(self, request: Request, gv: str) -> Response:
        denied = await self._guard(request, resource=True)
        if denied:
            return denied
        try:
            plural, name = request.path_params["plural"], request.path_params["name"]
            ns = request.path_params.get("ns")
            kind, namespaced = self._lookup(gv, plural)
            if (ns is None) == namespaced:
                raise self._not_found_path()
            key = (plural, ns or "", name)
            if request.method == "GET":
                with self.lock:
                    obj = self.store.get(key)
                    if obj is None:
                        raise self._missing(gv, plural, name)
                    return JSONResponse(copy.deepcopy(obj))
            if request.method == "DELETE":
                return await self._delete(request, gv, plural, kind, key)
            return await self._update(request, gv, plural, kind, key)
        except ApiError as exc:
            return self._error(exc)

    @staticmethod
    def _missing(gv: str, plural: str, name: str) -> ApiError:
        group = gv.split("/")[0] if "/" in gv else ""
        qualified = f"{plural}.{group}" if group else plural
        return ApiError(
            404, "NotFound", f'{qualified} "{name}" not found', {"name": name, "group": group, "kind": plural}
        )

    async def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError as exc:
            raise ApiError(
                400, "BadRequest", f"the body of the request was in an unknown format: {exc}"
            ) from exc
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of the request must be a JSON object")
        return body

    def _check_invalid(self, gv: str, kind: str, obj: dict[str, Any]) -> None:
        group = gv.split("/")[0] if "/" in gv else ""
        name = obj.get("metadata", {}).get("name", "")
        problems = list(self._validate(obj))
        webhook = kube_validation.webhook_problems(obj) if self.webhook_denials == "403" else []
        schema_problems = [p for p in problems if p not in webhook]
        entry = {"kind": kind, "namespace": obj.get("metadata", {}).get("namespace"), "name": name,
                 "object": copy.deepcopy(obj), "errors": problems}  # fmt: skip
        if schema_problems or webhook:
            with self.lock:
                self.refused.append(entry)
        if schema_problems:
            qualified = f"{kind}.{group}" if group else kind
            causes = []
            for problem in schema_problems:
                field, _, message = problem.partition(": ")
                causes.append({"reason": "FieldValueInvalid", "message": message or problem, "field": field})
            raise ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: [{", ".join(schema_problems)}]',
                           {"name": name, "group": group, "kind": kind, "causes": causes})  # fmt: skip
        if webhook:
            hook = WEBHOOKS.get(kind, "validator.training-operator.kubeflow.org")
            raise ApiError(
                403, "Forbidden", f'admission webhook "{hook}" denied the request: {"; ".join(webhook)}'
            )

    def _check_identity(self, gv: str, kind: str, ns: str, obj: dict[str, Any]) -> None:
        if gv.split("/")[0] not in (
            "kubeflow.org",
            "serving.kserve.io",
        ):  # built-in kinds: the endpoint supplies missing apiVersion/kind
            obj.setdefault("apiVersion", gv)
            obj.setdefault("kind", kind)
        elif not obj.get("kind") or not obj.get("apiVersion"):
            raise ApiError(400, "BadRequest", f"Object 'Kind' is missing in '{json.dumps(obj)[:200]}'")
        if obj.get("apiVersion") != gv or obj.get("kind") != kind:
            raise ApiError(400, "BadRequest", f"the API version in the data ({obj.get('apiVersion')}) and kind "
                           f"({obj.get('kind')}) do not match the request ({gv}, {kind})")  # fmt: skip
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if ns:
            if meta.get("namespace") not in (None, "", ns):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = ns

    async def _create(self, request: Request, gv: str, plural: str, kind: str, ns: str) -> Response:
        obj = await self._body(request)
        self._check_identity(gv, kind, ns, obj)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        self._check_invalid(gv, kind, obj)
        dry_run = "dryRun" in request.query_params
        with self.lock:
            key = (plural, ns, meta["name"])
            if key in self.store:
                group = gv.split("/")[0] if "/" in gv else ""
                qualified = f"{plural}.{group}" if group else plural
                raise ApiError(409, "AlreadyExists", f'{qualified} "{meta["name"]}" already exists',
                               {"name": meta["name"], "group": group, "kind": plural})  # fmt: skip
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            meta["resourceVersion"] = self._next_rv()
            meta["generation"] = 1
            if kind == "Service":
                obj.setdefault("spec", {}).setdefault(
                    "clusterIP", f"10.96.{self._rv % 250}.{len(self.store) % 250 + 1}"
                )
                obj["spec"].setdefault("type", "ClusterIP")
            if kind == "Job":
                obj.setdefault("status", {})
            if kind == "StatefulSet":
                obj["status"] = {"replicas": 0, "availableReplicas": 0}
            if kind == "Deployment":
                obj["status"] = {}
            if kind == "InferenceService":
                obj.pop("status", None)  # the status subresource: the controller writes it
            if kind == "PersistentVolumeClaim":
                obj["status"] = {"phase": "Pending"}
            if kind == "Notebook":
                obj.pop("status", None)  # the status subresource: a create never sets it
            if kind == "Secret" and "stringData" in obj:  # the apiserver folds stringData into data
                data = obj.setdefault("data", {})
                for key, value in obj.pop("stringData").items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
            if not dry_run:
                self.store[key] = obj
                self.created.append(copy.deepcopy(obj))
            return JSONResponse(copy.deepcopy(obj), status_code=201)

    async def _update(
        self, request: Request, gv: str, plural: str, kind: str, key: tuple[str, str, str]
    ) -> Response:
        body = await self._body(request) if request.method == "PUT" else None
        if request.method == "PATCH":
            content_type = request.headers.get("content-type", "")
            if "json-patch+json" in content_type:
                raise ApiError(415, "UnsupportedMediaType", "the double supports merge patches only")
            patch = await self._body(request)
        with self.lock:
            current = self.store.get(key)
            if current is None:
                raise self._missing(gv, plural, key[2])
            new = body if body is not None else _merge_patch(current, patch)
            self._check_identity(gv, kind, key[1], new)
            new["metadata"]["name"] = key[2]
            for field in ("uid", "creationTimestamp"):
                new["metadata"][field] = current["metadata"][field]
            if body is not None and "status" in current and plural in WITH_STATUS:
                new["status"] = current["status"]  # the main resource ignores status writes
            self._check_invalid(gv, kind, new)
            new["metadata"]["resourceVersion"] = self._next_rv()
            new["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
            self.store[key] = new
            self.created.append(copy.deepcopy(new))
            return JSONResponse(copy.deepcopy(new))

    def _list(self, request: Request, gv: str, plural: str, kind: str, ns: str | None) -> Response:
        params = request.query_params
        if params.get("watch") in ("true", "1"):
            raise ApiError(405, "MethodNotAllowed", "the test double does not serve watches")
        labels = parse_label_selector(params.get("labelSelector", ""))
        fields = parse_field_selector(params.get("fieldSelector", ""))
        with self.lock:
            items = []
            for (p, namespace, _), obj in sorted(self.store.items()):
                if p != plural or (ns is not None and namespace != ns):
                    continue
                if labels(obj.get("metadata", {}).get("labels") or {}) and fields(obj):
                    item = copy.deepcopy(obj)
                    if plural not in CUSTOM:  # typed lists carry no kind/apiVersion per item
                        item.pop("kind", None)
                        item.pop("apiVersion", None)
                    items.append(item)
            body = {"kind": f"{kind}List", "apiVersion": gv, "metadata": {"resourceVersion": str(self._rv)},
                    "items": items}  # fmt: skip
        return JSONResponse(body)

    async def _delete(
        self, request: Request, gv: str, plural: str, kind: str, key: tuple[str, str, str]
    ) -> Response:
        options: dict[str, Any] = {}
        raw = await request.body()
        if raw:
            try:
                options = json.loads(raw) or {}
            except ValueError:
                options = {}
        policy = request.query_params.get("propagationPolicy") or options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy not in (None, "Foreground", "Background", "Orphan"):
            raise ApiError(400, "BadRequest", f"DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: "
                           f"Unsupported value: \"{policy}\"")  # fmt: skip
        with self.lock:
            obj = self.store.get(key)
            if obj is None:
                raise self._missing(gv, plural, key[2])
            # apiserver defaults: batch/v1 Jobs orphan their pods when deleted over REST with no policy
            effective = policy or ("Orphan" if plural == "jobs" else "Background")
            removed = self._cascade(obj, effective)
            del self.store[key]
            self.deletions.append({"kind": kind, "plural": plural, "namespace": key[1], "name": key[2],
                                   "propagationPolicy": policy, "effective": effective,
                                   "dependents": removed})  # fmt: skip
            if plural in ("pods", "services"):  # their REST storage returns the deleted object
                return JSONResponse(copy.deepcopy(obj))
            if effective == "Foreground":
                gone = copy.deepcopy(obj)
                gone["metadata"]["deletionTimestamp"] = now()
                gone["metadata"]["finalizers"] = ["foregroundDeletion"]
                return JSONResponse(gone)
            group = gv.split("/")[0] if "/" in gv else ""
            return JSONResponse({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                 "details": {"name": key[2], "group": group, "kind": plural,
                                             "uid": obj["metadata"]["uid"]}})  # fmt: skip

    def _cascade(self, owner: dict[str, Any], policy: str) -> list[str]:
        uid = owner["metadata"]["uid"]
        removed: list[str] = []
        for key, obj in list(self.store.items()):
            refs = obj.get("metadata", {}).get("ownerReferences") or []
            if not any(ref.get("uid") == uid for ref in refs):
                continue
            if policy == "Orphan":
                obj["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                continue
            removed.append(f"{key[0]}/{key[2]}")
            removed += self._cascade(obj, policy)
            self.store.pop(key, None)
            if key[0] == "pods":
                self.logs.pop((key[1], key[2]), None)
        return removed

    async def _pod_log(self, request: Request) -> Response:
        denied = await self._guard(request, resource=True)
        if denied:
            return denied
        ns, name = request.path_params["ns"], request.path_params["name"]
        with self.lock:
            pod = self.store.get(("pods", ns, name))
            if pod is None:
                return self._error(self._missing("v1", "pods", name))
            containers = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
            inits = [c["name"] for c in pod.get("spec", {}).get("initContainers", [])]
            wanted = request.query_params.get("container")
            if wanted is None and len(containers) > 1:
                return self._error(ApiError(400, "BadRequest", f"a container name must be specified for pod {name}, "
                                            f"choose one of: [{' '.join(containers)}]"))  # fmt: skip
            container = wanted or (containers[0] if containers else "main")
            if container not in containers + inits:
                return self._error(
                    ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
                )
            # An init container's log is there once it ran, while the pod is still Pending.
            ran = container in inits and (ns, name) in self.logs and container in self.logs[(ns, name)]
            if pod.get("status", {}).get("phase") == "Pending" and not ran:
                return self._error(
                    ApiError(
                        400,
                        "BadRequest",
                        f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating',
                    )
                )
            lines = list(self.logs.get((ns, name), {}).get(container, []))
        tail = request.query_params.get("tailLines")
        if tail is not None:
            try:
                count = int(tail)
            except ValueError:
                return self._error(ApiError(400, "BadRequest", f"tailLines: invalid value {tail!r}"))
            lines = lines[-count:] if count > 0 else []
        text = "".join(f"{line}\n" for line in lines)
        limit = request.query_params.get("limitBytes")
        if limit is not None and limit.isdigit():
            text = text.encode()[: int(limit)].decode(errors="ignore")
        return PlainTextResponse(text)
