"""Kubernetes objects for one notebook attempt, and its state read back: pure functions, plain dicts.

A notebook plan (``workload_kind == "notebook"``, one replica ``notebook-0`` running a Jupyter
server) becomes, in creation order:

1. a PersistentVolumeClaim named after the plan's ``workdir`` key (the notebook id), not after
   the attempt: every attempt of the notebook mounts the same claim at ``notebook_mount_path``,
   which is also the server's working directory, so files survive a stop/start. A claim that
   exists already is adopted when its notebook and origin labels are this notebook's and this
   broker's (any other claim of that name refuses the submit). Cancelling an attempt (a stop)
   never deletes it; deleting the notebook does: the broker then calls the adapter's
   ``release`` with the notebook id, which deletes the claim (labelled
   ``submarine-broker/notebook=<id>``) when its origin label is this broker's, and leaves any
   other installation's claim alone. ``notebook_storage: null`` uses an emptyDir instead
   (nothing is kept);
2. a Secret ``sb-<uid12>`` holding the server's token (``JUPYTER_TOKEN``); the container reads
   it through ``valueFrom.secretKeyRef``, so the token is in no StatefulSet, Notebook or pod spec;
3. then either a Kubeflow ``Notebook`` (``kubeflow.org/v1``) ``sb-<uid12>``, whose
   ``spec.template.spec`` is the PodSpec below: the notebook controller makes a StatefulSet and a
   ClusterIP Service of the same name, port 80 → the first container's first port, copies the
   Notebook's labels to the pod and its container state to ``status.containerState`` (only for
   the container named like the Notebook, hence the container's name);
4. or, without the notebook controller, the same two objects made here the way the controller
   makes them: a ClusterIP Service ``sb-<uid12>`` (port 80 named ``http-<name>`` → the server's
   port) and a StatefulSet ``sb-<uid12>`` of one replica whose ``serviceName`` is that Service.

The container runs the plan's argv (its interpreter is the cluster's ``notebook_python``, by
default the image's ``python``) with one change a pod needs: ``--ip`` becomes ``0.0.0.0`` (the
plan's host is the Service name peers reach it at, which a pod cannot bind). The base URL
stays the plan's ``/notebook/<namespace>/<name>/``: the prefix the broker's proxy forwards
unchanged. ``NB_PREFIX`` (what Kubeflow images read) is set to the same prefix; the Kubeflow
controller appends its own ``/notebook/<k8s namespace>/<Notebook name>``, which only the images'
default command would read, and the plan's command replaces it. A TCP readiness probe on the
server's port makes "ready" mean "listening".
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from clusters.base import Phase
from clusters.kubernetes import manifests as m
from clusters.kubernetes.config import KubernetesClusterConfig
from runtimes.notebook import base_path
from runtimes.plan import LaunchPlan, ReplicaPlan

LABEL_NOTEBOOK = "submarine-broker/notebook"
ANNOTATION_WORKDIR = "submarine-broker/workdir"
#: What the StatefulSet controller puts on its pods (the index label from Kubernetes 1.28).
STATEFULSET_POD_INDEX = "apps.kubernetes.io/pod-index"
STATEFULSET_POD_NAME = "statefulset.kubernetes.io/pod-name"

NOTEBOOK_KIND = "Notebook"
NOTEBOOK_PLURAL = "notebooks"
#: Jupyter's own port, the container port the notebook controller defaults to.
JUPYTER_PORT = 8888
#: The notebook controller's Service port (``DefaultServingPort``) and its container port's name.
SERVICE_PORT = 80
PORT_NAME = "notebook-port"
TOKEN_ENV = "JUPYTER_TOKEN"
TOKEN_KEY = "token"
VOLUME = "workspace"
#: The controller's default ``fsGroup`` (the jovyan user's group in Kubeflow and Jupyter images).
FS_GROUP = 100
BIND_ALL = "0.0.0.0"

#: The two ways a notebook runs.
STATEFULSET = "statefulset"
KUBEFLOW = "kubeflow"


# -- names and labels --------------------------------------------------------------------------


def workspace_name(workdir: str) -> str:
    """``sb-ws-<workdir>``: the claim every attempt of a notebook mounts (a DNS-1123 label)."""
    part = m.dns_part(workdir)
    if not part:
        raise m.ManifestError(f"working directory key {workdir!r} has no letters or digits")
    name = f"sb-ws-{part}"
    if len(name) > 63:
        digest = hashlib.sha256(workdir.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    return name


def labels(plan: LaunchPlan, origin: str) -> dict[str, str]:
    """Labels of the attempt's objects and pods: origin, uid, notebook id and role."""
    return {
        m.LABEL_ORIGIN: m.label_value(origin),
        m.LABEL_UID: m.label_value(plan.uid),
        LABEL_NOTEBOOK: m.label_value(plan.workload_id),
        m.LABEL_ROLE: plan.replicas[0].role.lower(),
    }


def _metadata(name: str, plan: LaunchPlan, origin: str, namespace: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels(plan, origin),
        "annotations": m.object_annotations(plan),
    }


def _replica(plan: LaunchPlan) -> ReplicaPlan:
    if plan.workload_kind != "notebook" or len(plan.replicas) != 1:
        raise m.ManifestError("a notebook plan has exactly one replica")
    replica = plan.replicas[0]
    if not replica.port:
        raise m.ManifestError("the notebook plan names no port for its server")
    return replica


# -- the container -----------------------------------------------------------------------------


def command(argv: Sequence[str]) -> list[str]:
    """The plan's argv for a pod: the server bound to every interface, ``$`` kept literal."""
    out = [f"--ip={BIND_ALL}" if arg.startswith("--ip=") else arg for arg in argv]
    return [m.escape(arg) for arg in out]


def environment(plan: LaunchPlan, secret: str) -> list[dict[str, Any]]:
    """The plan's env, the token from the Secret, ``NB_PREFIX`` the broker's prefix."""
    env: list[dict[str, Any]] = []
    for name, value in _replica(plan).env.items():
        if name == TOKEN_ENV:
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": TOKEN_KEY}}})
        elif name != "NB_PREFIX":
            env.append({"name": name, "value": m.escape(value)})
    env.append({"name": "NB_PREFIX", "value": base_path(plan.namespace, plan.name).rstrip("/")})
    return env


def pod_spec(plan: LaunchPlan, config: KubernetesClusterConfig) -> dict[str, Any]:
    """The PodSpec of the server: one container named like the attempt's objects, its workspace."""
    replica = _replica(plan)
    image = plan.run_image or config.image
    if not image:
        raise m.ManifestError(
            "the notebook names no image (environment.image or dockerImage) and the cluster has no "
            "default image"
        )
    name = m.base_name(plan.uid)
    container = {
        "name": name,
        "image": image,
        "command": command(replica.argv),
        "workingDir": config.notebook_mount_path,
        "env": environment(plan, name),
        "ports": [{"name": PORT_NAME, "containerPort": replica.port, "protocol": "TCP"}],
        "resources": m.resources(replica.resources),
        "readinessProbe": {
            "tcpSocket": {"port": PORT_NAME},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
        "volumeMounts": [{"name": VOLUME, "mountPath": config.notebook_mount_path}],
    }
    if config.notebook_storage is None:
        volume: dict[str, Any] = {"name": VOLUME, "emptyDir": {}}
    else:
        volume = {"name": VOLUME, "persistentVolumeClaim": {"claimName": workspace_name(_workdir(plan))}}
    return {
        "containers": [container],
        "volumes": [volume],
        "securityContext": {"fsGroup": FS_GROUP},
        "restartPolicy": "Always",
    }


def _workdir(plan: LaunchPlan) -> str:
    return plan.workdir or plan.workload_id


# -- the objects -------------------------------------------------------------------------------


def workspace_claim(plan: LaunchPlan, config: KubernetesClusterConfig, *, origin: str) -> dict[str, Any]:
    """The notebook's working directory, shared by its attempts (so no uid label)."""
    workdir = _workdir(plan)
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": config.notebook_storage}},
    }
    if config.notebook_storage_class:
        spec["storageClassName"] = config.notebook_storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": workspace_name(workdir),
            "namespace": config.namespace,
            "labels": {
                m.LABEL_ORIGIN: m.label_value(origin),
                LABEL_NOTEBOOK: m.label_value(plan.workload_id),
            },
            "annotations": {ANNOTATION_WORKDIR: workdir, m.ANNOTATION_EXPERIMENT: plan.workload_id},
        },
        "spec": spec,
    }


def token_secret(plan: LaunchPlan, *, origin: str, namespace: str) -> dict[str, Any]:
    """The server's token, for ``secretKeyRef`` (immutable: an attempt keeps its token)."""
    token = _replica(plan).env.get(TOKEN_ENV)
    if not token:
        raise m.ManifestError(f"the notebook plan carries no {TOKEN_ENV}")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(m.base_name(plan.uid), plan, origin, namespace),
        "type": "Opaque",
        "immutable": True,
        "data": {TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def service(plan: LaunchPlan, *, origin: str, namespace: str) -> dict[str, Any]:
    """The ClusterIP Service the broker reaches the server through, as the notebook controller makes it."""
    name = m.base_name(plan.uid)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, plan, origin, namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": {m.LABEL_UID: m.label_value(plan.uid)},
            "ports": [
                {
                    "name": f"http-{name}",
                    "port": SERVICE_PORT,
                    "targetPort": _replica(plan).port,
                    "protocol": "TCP",
                }
            ],
        },
    }


def stateful_set(plan: LaunchPlan, config: KubernetesClusterConfig, *, origin: str) -> dict[str, Any]:
    """One replica of the server; its pod is ``sb-<uid12>-0``."""
    name = m.base_name(plan.uid)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(name, plan, origin, config.namespace),
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": {m.LABEL_UID: m.label_value(plan.uid)}},
            "template": {
                "metadata": {"labels": labels(plan, origin)},
                "spec": pod_spec(plan, config),
            },
        },
    }


def notebook_cr(plan: LaunchPlan, config: KubernetesClusterConfig, *, origin: str) -> dict[str, Any]:
    """The Kubeflow Notebook; the controller copies its labels to the pod."""
    return {
        "apiVersion": f"{m.KUBEFLOW_GROUP}/{m.KUBEFLOW_VERSION}",
        "kind": NOTEBOOK_KIND,
        "metadata": _metadata(m.base_name(plan.uid), plan, origin, config.namespace),
        "spec": {"template": {"spec": pod_spec(plan, config)}},
    }


def objects(
    plan: LaunchPlan, config: KubernetesClusterConfig, *, origin: str, api: str
) -> list[tuple[str, dict[str, Any]]]:
    """``(kind key, body)`` in creation order: claim, Secret, then Service + StatefulSet or the Notebook.

    The server's pod is made last, so its Secret and claim exist when it starts.
    """
    ns = config.namespace
    made: list[tuple[str, dict[str, Any]]] = []
    if config.notebook_storage is not None:
        made.append(("pvc", workspace_claim(plan, config, origin=origin)))
    made.append(("secret", token_secret(plan, origin=origin, namespace=ns)))
    if api == KUBEFLOW:
        made.append(("cr", notebook_cr(plan, config, origin=origin)))
    else:
        made.append(("svc", service(plan, origin=origin, namespace=ns)))
        made.append(("sts", stateful_set(plan, config, origin=origin)))
    return made


def endpoint(template: str, *, service: str, namespace: str, uid: str, cluster_ip: str = "") -> str:
    """The server's URL from the cluster's ``notebook_endpoint`` template."""
    url = template.format(
        service=service, namespace=namespace, port=SERVICE_PORT, cluster_ip=cluster_ip, uid=uid
    )
    return url.rstrip("/")


# -- state -------------------------------------------------------------------------------------


class State(NamedTuple):
    phase: Phase
    failure_category: str | None = None


#: The kubelet's reasons for a waiting container (pkg/kubelet: images/types.go,
#: kuberuntime/kuberuntime_container.go, container/sync_result.go, kubelet_pods.go). PENDING where
#: the kubelet gets there by itself or retries a passing fault; FAILED where the pod as specified
#: cannot start (the image, its configuration, a hook) or keeps crashing.
WAITING_REASONS: dict[str, State] = {
    "ContainerCreating": State(Phase.PENDING),
    "PodInitializing": State(Phase.PENDING),
    "ErrImagePull": State(Phase.PENDING),  # the first failed pull; the kubelet retries
    "RegistryUnavailable": State(Phase.PENDING),
    "CreatePodSandboxError": State(Phase.PENDING),
    "ConfigPodSandboxError": State(Phase.PENDING),
    "KillPodSandboxError": State(Phase.PENDING),
    "KillContainerError": State(Phase.PENDING),
    "ImagePullBackOff": State(Phase.FAILED, "rejected"),
    "ImageInspectError": State(Phase.FAILED, "rejected"),
    "ErrImageNeverPull": State(Phase.FAILED, "rejected"),
    "InvalidImageName": State(Phase.FAILED, "rejected"),
    "CreateContainerConfigError": State(Phase.FAILED, "rejected"),
    "CreateContainerError": State(Phase.FAILED, "rejected"),
    "PreCreateHookError": State(Phase.FAILED, "rejected"),
    "PreStartHookError": State(Phase.FAILED, "rejected"),
    "PostStartHookError": State(Phase.FAILED, "rejected"),
    "RunContainerError": State(Phase.FAILED, "rejected"),
    "RunInitContainerError": State(Phase.FAILED, "rejected"),
    "VerifyNonRootError": State(Phase.FAILED, "rejected"),
    "CrashLoopBackOff": State(Phase.FAILED, "exit_code"),
}


class Reading(NamedTuple):
    phase: Phase
    failure_category: str | None
    message: str


def container_state(state: Mapping[str, Any] | None, last: Mapping[str, Any] | None = None) -> Reading:
    """One container's ``state`` (and ``lastState``) as a phase: waiting reasons by the table,
    running and terminated as PENDING (not ready yet / about to restart: the pod restarts always)."""
    state = state or {}
    waiting = state.get("waiting")
    if isinstance(waiting, Mapping):
        reason = str(waiting.get("reason") or "")
        known = WAITING_REASONS.get(reason, State(Phase.PENDING))
        message = ": ".join(p for p in (reason, str(waiting.get("message") or "")) if p)
        exited = (last or {}).get("terminated")
        if reason == "CrashLoopBackOff" and isinstance(exited, Mapping):
            why = exited.get("reason") or "Error"
            message = f"{message} (last exit code {exited.get('exitCode')}, {why})"
        return Reading(known.phase, known.failure_category, message[:500])
    terminated = state.get("terminated")
    if isinstance(terminated, Mapping):
        code = terminated.get("exitCode")
        return Reading(Phase.PENDING, None, f"exited with code {code}; restarting")
    if isinstance(state.get("running"), Mapping):
        return Reading(Phase.PENDING, None, "started, not ready yet")
    return Reading(Phase.PENDING, None, "")


def pod_states(pod: Mapping[str, Any]) -> list[Reading]:
    """What a pod of the server says: its scheduling, then each container's state."""
    status = pod.get("status") or {}
    found: list[Reading] = []
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and str(condition.get("status")) == "False":
            detail = ": ".join(str(p) for p in (condition.get("reason"), condition.get("message")) if p)
            found.append(Reading(Phase.PENDING, None, detail[:500]))
    for container in status.get("containerStatuses") or []:
        found.append(container_state(container.get("state"), container.get("lastState")))
    return found


def notebook_state(ready_replicas: Any, readings: Sequence[Reading]) -> Reading:
    """The server's phase: RUNNING once a replica is ready, FAILED when a reading says it cannot
    start, else PENDING with the most telling message."""
    try:
        ready = int(ready_replicas or 0)
    except (TypeError, ValueError):
        ready = 0
    if ready >= 1:
        return Reading(Phase.RUNNING, None, "")
    for reading in readings:
        if reading.phase is Phase.FAILED:
            return reading
    message = next((r.message for r in readings if r.message), "")
    return Reading(Phase.PENDING, None, message)
