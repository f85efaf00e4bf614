"""Kubernetes objects for one model-serving attempt, and its state read back: pure functions, plain dicts.

A serve plan (``workload_kind == "serve"``, see :mod:`runtimes.serving`: N replicas ``server-<i>``
of one model server, each running ``python -m runtimes.model_server --host H --port P
--model-uri <files_url>``, the server's token and the fetch token in its env) becomes, in
creation order:

1. a Secret ``sb-<uid12>`` holding both tokens (``SUBMARINE_SERVE_TOKEN``,
   ``SUBMARINE_MODEL_FETCH_TOKEN``); the container reads them through ``valueFrom.secretKeyRef``,
   so no token is in an InferenceService, Deployment or pod spec;
2. then either a KServe ``InferenceService`` (``serving.kserve.io/v1beta1``) ``sb-<uid12>`` when the
   cluster serves that kind (discovery, see :meth:`KubeClient.serves_kserve`), in RawDeployment
   mode (a Deployment and a Service ``sb-<uid12>-predictor`` made by KServe, no Knative needed),
   ``minReplicas == maxReplicas`` = the plan's replicas, its predictor a ``model`` of
   ``modelFormat: mlflow`` whose container is the plan's model server;
3. or, without KServe, the same made here: a Deployment ``sb-<uid12>`` of the plan's replicas and a
   ClusterIP Service ``sb-<uid12>`` (port 80 → the server's port).

Why no ``storageUri``: the model's files are served by the broker's artifact API, one file per
request and only with a bearer token; KServe's storage initializer fetches an ``http(s)`` URI as
one file (an archive unpacked) without the broker's token. The model server therefore fetches the
files itself, as on every other kind, and the InferenceService names its model format and keeps the
registry URI in an annotation. ``command``/``args`` are both set: KServe merges the predictor's
container over the ``mlflow`` serving runtime's, and a list left unset would keep the runtime's.

The replicas are identical pods (one template), so the container's env is the first replica's
without ``SUBMARINE_REPLICA_INDEX`` (a pod has no index; it is only for logs). The container runs
the plan's argv with one change a pod needs: the server binds ``0.0.0.0`` (the plan's host is
where peers reach it, which a pod cannot bind). An HTTP readiness probe on ``/ping`` (answered
without the token, 200 once the model is loaded) makes "ready" mean "the model answers".
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from clusters.base import Phase
from clusters.kubernetes import manifests as m
from clusters.kubernetes import notebooks as nb
from clusters.kubernetes.config import KubernetesClusterConfig
from runtimes.plan import LaunchPlan, ReplicaPlan
from runtimes.serving import FETCH_TOKEN_ENV, KIND, TOKEN_ENV

SERVE = KIND
LABEL_SERVE = "submarine-broker/serve"
ANNOTATION_MODEL = "submarine-broker/model-uri"
KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"
ISVC_KIND = "InferenceService"
ISVC_PLURAL = "inferenceservices"
#: KServe's annotation choosing a plain Deployment + Service over Knative.
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
#: The container name KServe gives the predictor's model container.
KSERVE_CONTAINER = "kserve-container"
MODEL_FORMAT = "mlflow"
SERVICE_PORT = 80
PORT_NAME = "http"
#: The Secret's key of each token variable.
SECRET_KEYS = {TOKEN_ENV: "serve-token", FETCH_TOKEN_ENV: "fetch-token"}
#: Env of the plan a pod of identical replicas does not get.
PER_REPLICA_ENV = ("SUBMARINE_REPLICA_INDEX",)
BIND_ALL = "0.0.0.0"
#: The model server's health path (MLflow's scoring protocol).
PING_PATH = "/ping"

#: The two ways a model is served.
KSERVE = "kserve"
DEPLOYMENT = "deployment"

#: ``modelStatus.transitionStatus`` values KServe sets when the model will not load as specified.
FAILED_TRANSITIONS = {"BlockedByFailedLoad", "InvalidSpec"}


# -- the plan ----------------------------------------------------------------------------------


def _first(plan: LaunchPlan) -> ReplicaPlan:
    if plan.workload_kind != SERVE:
        raise m.ManifestError(f"not a serve plan (workload kind {plan.workload_kind!r})")
    replica = plan.replicas[0]
    if not replica.port:
        raise m.ManifestError("the serve plan names no port for its model server")
    if not replica.argv:
        raise m.ManifestError("the serve plan names no model-server command")
    return replica


def labels(plan: LaunchPlan, origin: str) -> dict[str, str]:
    """Labels of the attempt's objects and pods: origin, uid, serve id and role."""
    return {
        m.LABEL_ORIGIN: m.label_value(origin),
        m.LABEL_UID: m.label_value(plan.uid),
        LABEL_SERVE: m.label_value(plan.workload_id),
        m.LABEL_ROLE: m.label_value(plan.replicas[0].role.lower()),
    }


def _metadata(name: str, plan: LaunchPlan, origin: str, namespace: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels(plan, origin),
        "annotations": m.object_annotations(plan),
    }


def command(argv: Sequence[str]) -> list[str]:
    """The plan's argv for a pod: the server bound to every interface, ``$`` kept literal."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            out.append(BIND_ALL)
            skip = False
        elif arg == "--host":
            out.append(arg)
            skip = True
        elif arg.startswith("--host="):
            out.append(f"--host={BIND_ALL}")
        else:
            out.append(arg)
    return [m.escape(arg) for arg in out]


def environment(plan: LaunchPlan, secret: str) -> list[dict[str, Any]]:
    """The plan's env (the first replica's), the tokens from the Secret."""
    env: list[dict[str, Any]] = []
    for name, value in _first(plan).env.items():
        if name in SECRET_KEYS:
            ref = {"name": secret, "key": SECRET_KEYS[name]}
            env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
        elif name in PER_REPLICA_ENV:
            continue
        else:
            env.append({"name": name, "value": m.escape(value)})
    return env


def _image(plan: LaunchPlan, config: KubernetesClusterConfig) -> str:
    image = plan.run_image or config.image
    if not image:
        raise m.ManifestError(
            "the serve names no image (environment.image) and the cluster has no default image"
        )
    return image


def container(plan: LaunchPlan, config: KubernetesClusterConfig, name: str) -> dict[str, Any]:
    """The model server's container (``name``: the container's name)."""
    replica = _first(plan)
    argv = command(replica.argv)
    body: dict[str, Any] = {
        "name": name,
        "image": _image(plan, config),
        "command": argv[:1],
        "args": argv[1:],
        "env": environment(plan, m.base_name(plan.uid)),
        "ports": [{"name": PORT_NAME, "containerPort": replica.port, "protocol": "TCP"}],
        "resources": m.resources(replica.resources),
        "readinessProbe": {
            "httpGet": {"path": PING_PATH, "port": replica.port},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
    }
    return body


# -- the objects -------------------------------------------------------------------------------


def token_secret(plan: LaunchPlan, *, origin: str, namespace: str) -> dict[str, Any]:
    """The tokens, for ``secretKeyRef`` (immutable: an attempt keeps its tokens)."""
    env = _first(plan).env
    data: dict[str, str] = {}
    for name, key in SECRET_KEYS.items():
        token = env.get(name)
        if not token and name == TOKEN_ENV:
            raise m.ManifestError(f"the serve plan carries no {name}")
        if token:
            data[key] = base64.b64encode(token.encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(m.base_name(plan.uid), plan, origin, namespace),
        "type": "Opaque",
        "immutable": True,
        "data": data,
    }


def inference_service(plan: LaunchPlan, config: KubernetesClusterConfig, *, origin: str) -> dict[str, Any]:
    """The KServe InferenceService: RawDeployment, ``modelFormat: mlflow``, the plan's server."""
    name = m.base_name(plan.uid)
    meta = _metadata(name, plan, origin, config.namespace)
    meta["annotations"][DEPLOYMENT_MODE] = "RawDeployment"
    uri = model_uri(plan)
    if uri:
        meta["annotations"][ANNOTATION_MODEL] = uri
    model = container(plan, config, KSERVE_CONTAINER)
    del model["name"]  # KServe names it
    model["modelFormat"] = {"name": MODEL_FORMAT}
    count = len(plan.replicas)
    return {
        "apiVersion": f"{KSERVE_GROUP}/{KSERVE_VERSION}",
        "kind": ISVC_KIND,
        "metadata": meta,
        "spec": {
            "predictor": {
                "minReplicas": count,
                "maxReplicas": count,
                "labels": labels(plan, origin),
                "model": model,
            }
        },
    }


def service(plan: LaunchPlan, *, origin: str, namespace: str) -> dict[str, Any]:
    """The ClusterIP Service the broker reaches the replicas through (the fallback)."""
    name = m.base_name(plan.uid)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, plan, origin, namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": {m.LABEL_UID: m.label_value(plan.uid)},
            "ports": [
                {"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": _first(plan).port, "protocol": "TCP"}
            ],
        },
    }


def deployment(plan: LaunchPlan, config: KubernetesClusterConfig, *, origin: str) -> dict[str, Any]:
    """The plan's replicas as one Deployment (the fallback without KServe)."""
    name = m.base_name(plan.uid)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, plan, origin, config.namespace),
        "spec": {
            "replicas": len(plan.replicas),
            "selector": {"matchLabels": {m.LABEL_UID: m.label_value(plan.uid)}},
            "template": {
                "metadata": {"labels": labels(plan, origin)},
                "spec": {"containers": [container(plan, config, name)], "restartPolicy": "Always"},
            },
        },
    }


def model_uri(plan: LaunchPlan) -> str | None:
    """Where the model's files are: the broker's artifact-API URL of the version's folder."""
    return plan.model.files_url if plan.model is not None else None


def objects(
    plan: LaunchPlan, config: KubernetesClusterConfig, *, origin: str, api: str
) -> list[tuple[str, dict[str, Any]]]:
    """``(kind key, body)`` in creation order: the Secret, then the InferenceService or Service +
    Deployment (the pods last, so their Secret exists when they start)."""
    ns = config.namespace
    made: list[tuple[str, dict[str, Any]]] = [("secret", token_secret(plan, origin=origin, namespace=ns))]
    if api == KSERVE:
        made.append(("cr", inference_service(plan, config, origin=origin)))
    else:
        made.append(("svc", service(plan, origin=origin, namespace=ns)))
        made.append(("deploy", deployment(plan, config, origin=origin)))
    return made


# -- state -------------------------------------------------------------------------------------


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    found = (obj.get("status") or {}).get("conditions") or []
    return {str(c.get("type")): c for c in found if isinstance(c, Mapping)}


def isvc_state(obj: Mapping[str, Any], readings: Sequence[nb.Reading]) -> nb.Reading:
    """An InferenceService's phase from its conditions: ``Ready`` True → RUNNING; a model KServe
    will not load (``modelStatus.transitionStatus``) or a pod that cannot start → FAILED; else
    PENDING with the not-ready condition's reason and message."""
    conditions = _conditions(obj)
    ready = conditions.get("Ready")
    if ready is not None and str(ready.get("status")) == "True":
        return nb.Reading(Phase.RUNNING, None, "")
    status = obj.get("status") or {}
    transition = str((status.get("modelStatus") or {}).get("transitionStatus") or "")
    if transition in FAILED_TRANSITIONS:
        failure = (status.get("modelStatus") or {}).get("lastFailureInfo") or {}
        detail = ": ".join(str(p) for p in (transition, failure.get("reason"), failure.get("message")) if p)
        return nb.Reading(Phase.FAILED, "rejected", detail[:500])
    for reading in readings:
        if reading.phase is Phase.FAILED:
            return reading
    for kind in ("PredictorReady", "Ready"):
        found = conditions.get(kind)
        if found is not None and str(found.get("status")) == "False":
            detail = ": ".join(str(p) for p in (found.get("reason"), found.get("message")) if p)
            if detail:
                return nb.Reading(Phase.PENDING, None, detail[:500])
    message = next((r.message for r in readings if r.message), "")
    return nb.Reading(Phase.PENDING, None, message)


def deployment_state(obj: Mapping[str, Any], readings: Sequence[nb.Reading]) -> nb.Reading:
    """A Deployment's phase: RUNNING once a replica is available, FAILED when a pod cannot start."""
    return nb.notebook_state((obj.get("status") or {}).get("availableReplicas"), readings)


def isvc_url(obj: Mapping[str, Any]) -> str | None:
    """Where the broker reaches a ready InferenceService: inside the cluster (``status.address.url``),
    else its external ``status.url``."""
    status = obj.get("status") or {}
    url = (status.get("address") or {}).get("url") or status.get("url")
    return str(url).rstrip("/") if url else None
