"""Kubernetes objects for one attempt, built from its launch plan: pure functions, plain dicts.

Two shapes:

- Kubeflow training operator (``kubeflow.org/v1``): one TFJob, PyTorchJob or XGBoostJob named
  ``sb-<first 12 of the uid>`` with one replica spec per role; the operator creates one pod and
  one Service per replica, ``<job>-<role>-<index>``, which is the host other replicas reach.
  ``cleanPodPolicy: Running`` stops what still runs when the job ends (parameter servers) and
  keeps finished pods for their logs until the attempt is deleted.
- Plain Kubernetes: one Indexed ``batch/v1`` Job per role, ``sb-<uid12>-<role>``, plus one
  headless Service ``sb-<uid12>`` that every pod names as its ``subdomain``; the pod of index
  ``i`` is then reachable as ``sb-<uid12>-<role>-<i>.sb-<uid12>``.

Every object carries the labels ``submarine-broker/origin`` (the broker's mark, for the orphan
sweep), ``submarine-broker/experiment`` and ``submarine-broker/uid``, and annotations with what
a restarted broker needs (the replica names, the success roles, the unabridged experiment id).

A pod template is shared by every replica of a role, but the plan's environment is per replica
(``RANK``, ``TF_CONFIG``'s task index, ...). The index comes from the downward API, defined
first in the env list (``JOB_COMPLETION_INDEX`` from the Job's completion-index annotation;
``SUBMARINE_REPLICA_INDEX`` from the operator's replica-index label), so values that differ
only by the index are written as ``$(JOB_COMPLETION_INDEX)`` templates. Values that differ in
any other way (``RANK`` of PyTorch workers is index + 1) are set by a ``/bin/sh`` wrapper that
selects them on the index: only then does the command need a shell in the image. The templating is
:mod:`clusters.per_index`'s, which the YARN service spec shares.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clusters.per_index import case_arms, index_template, role_values
from runtimes.plan import LaunchPlan, ReplicaPlan, Resources, replicas_by_role

LABEL_ORIGIN = "submarine-broker/origin"
LABEL_EXPERIMENT = "submarine-broker/experiment"
LABEL_UID = "submarine-broker/uid"
LABEL_ROLE = "submarine-broker/role"
ANNOTATION_EXPERIMENT = "submarine-broker/experiment-id"
ANNOTATION_REPLICAS = "submarine-broker/replicas"
ANNOTATION_SUCCESS = "submarine-broker/success-roles"
ANNOTATION_FRAMEWORK = "submarine-broker/framework"

#: What the Job controller puts on every pod of an Indexed Job (annotation; label from 1.28).
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
#: What the training operator puts on every pod it creates.
KUBEFLOW_REPLICA_TYPE = "training.kubeflow.org/replica-type"
KUBEFLOW_REPLICA_INDEX = "training.kubeflow.org/replica-index"

KUBEFLOW_GROUP = "kubeflow.org"
KUBEFLOW_VERSION = "v1"
GPU_RESOURCE = "nvidia.com/gpu"
#: The one port every replica listens on (pods have their own IPs, so one number serves all).
REPLICA_PORT = 23456


class ManifestError(ValueError):
    """The plan cannot be expressed as these objects (the message says why)."""


@dataclass(frozen=True)
class KubeflowKind:
    """One training-operator kind: its names and the rules of its replica specs."""

    kind: str
    plural: str
    specs_key: str
    container: str
    port_name: str
    roles: dict[str, str]  # Submarine role → replica type key
    single_master: bool = True


KUBEFLOW_KINDS: dict[str, KubeflowKind] = {
    "tensorflow": KubeflowKind(
        "TFJob",
        "tfjobs",
        "tfReplicaSpecs",
        "tensorflow",
        "tfjob-port",
        {"Chief": "Chief", "Master": "Master", "Ps": "PS", "Worker": "Worker", "Evaluator": "Evaluator"},
    ),
    "pytorch": KubeflowKind(
        "PyTorchJob",
        "pytorchjobs",
        "pytorchReplicaSpecs",
        "pytorch",
        "pytorchjob-port",
        {"Master": "Master", "Worker": "Worker"},
    ),
    "xgboost": KubeflowKind(
        "XGBoostJob",
        "xgboostjobs",
        "xgbReplicaSpecs",
        "xgboost",
        "xgboostjob-port",
        {"Master": "Master", "Worker": "Worker"},
    ),
}


# -- names and labels --------------------------------------------------------------------------


def dns_part(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def base_name(uid: str) -> str:
    """``sb-<first 12 of the uid>``: the name of the attempt's CR, Service and the prefix of its Jobs."""
    part = dns_part(uid)[:12].strip("-")
    if not part:
        raise ManifestError(f"attempt uid {uid!r} has no letters or digits to name objects after")
    return f"sb-{part}"


def job_name(uid: str, role: str) -> str:
    """The Indexed Job of one role: ``sb-<uid12>-<role>`` (a DNS-1035 label, at most 63)."""
    return f"{base_name(uid)}-{dns_part(role)}"[:63].rstrip("-")


def service_name(uid: str) -> str:
    """The headless Service every pod of a plain-Job attempt names as its subdomain."""
    return base_name(uid)


def kubeflow_host(uid: str, role: str, index: int) -> str:
    """The Service the training operator creates for one replica: ``<job>-<role lower>-<index>``."""
    return f"{base_name(uid)}-{role.lower()}-{index}"


def job_host(uid: str, role: str, index: int) -> str:
    """The DNS name of pod ``index`` of a role's Indexed Job, through the headless Service."""
    return f"{job_name(uid, role)}-{index}.{service_name(uid)}"


def label_value(text: str) -> str:
    """``text`` made a valid label value: at most 63 of ``[A-Za-z0-9._-]``, alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def labels(plan: LaunchPlan, origin: str) -> dict[str, str]:
    """The labels of every object of the attempt."""
    return {
        LABEL_ORIGIN: label_value(origin),
        LABEL_EXPERIMENT: label_value(plan.workload_id),
        LABEL_UID: label_value(plan.uid),
    }


def object_annotations(plan: LaunchPlan) -> dict[str, str]:
    """What a restarted broker reads back from an object it finds by its labels."""
    return {
        ANNOTATION_EXPERIMENT: plan.workload_id,
        ANNOTATION_REPLICAS: ",".join(r.name for r in plan.replicas),
        ANNOTATION_SUCCESS: ",".join(plan.success_roles),
        ANNOTATION_FRAMEWORK: plan.framework,
    }


def _metadata(name: str, plan: LaunchPlan, origin: str, namespace: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels(plan, origin),
        "annotations": object_annotations(plan),
    }


# -- containers --------------------------------------------------------------------------------


def cpu_quantity(cores: float) -> str:
    """``2`` or ``500m``."""
    milli = round(cores * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def memory_quantity(size: int) -> str:
    """``512Mi`` when whole mebibytes, else bytes."""
    return f"{size // 2**20}Mi" if size % 2**20 == 0 else str(size)


def resources(res: Resources) -> dict[str, dict[str, str]]:
    """Requests equal to limits (GPUs must be), so what placement counted is what the pod gets."""
    amounts = {"cpu": cpu_quantity(res.cpu), "memory": memory_quantity(res.memory)}
    if res.gpu:
        amounts[GPU_RESOURCE] = str(res.gpu)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _by_role(plan: LaunchPlan) -> dict[str, list[ReplicaPlan]]:
    try:
        return replicas_by_role(plan)
    except ValueError as exc:
        raise ManifestError(str(exc)) from None


def escape(text: str) -> str:
    """``text`` safe from Kubernetes' ``$(VAR)`` expansion in env values and commands (``$`` → ``$$``)."""
    return text.replace("$", "$$")


def pod_environment(
    group: Sequence[ReplicaPlan], index_var: str, index_source: str
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The env list of a role's pod template, and the values only a shell can select.

    The index variable comes first (the downward API), so ``$(index_var)`` expands in the
    entries after it; the second result maps a variable to its value per index.
    """
    env: list[dict[str, Any]] = [{"name": index_var, "valueFrom": {"fieldRef": {"fieldPath": index_source}}}]
    by_index: dict[str, list[str]] = {}
    try:
        per_replica = role_values(group)
    except ValueError as exc:
        raise ManifestError(str(exc)) from None
    for name, values in per_replica.items():
        if name == index_var:
            continue
        template = index_template(values, f"$({index_var})", escape)
        if template is not None:
            env.append({"name": name, "value": template})
        else:
            by_index[name] = values
    return env, by_index


def command(argv: Sequence[str], index_var: str, by_index: dict[str, list[str]]) -> list[str]:
    """``argv``, or a ``/bin/sh`` wrapper exporting the per-index values first."""
    if not by_index:
        return [escape(arg) for arg in argv]
    script = f'case "${index_var}" in {" ".join(case_arms(by_index))} esac; exec "$@"'
    return [escape(arg) for arg in ("/bin/sh", "-c", script, "sh", *argv)]


def _image(plan: LaunchPlan, default: str | None) -> str:
    image = plan.run_image or default
    if not image:
        raise ManifestError(
            "the experiment names no image (environment.image or a task image) and the cluster has "
            "no default image"
        )
    return image


def _container(
    name: str,
    group: Sequence[ReplicaPlan],
    image: str,
    index_var: str,
    index_source: str,
    port_name: str,
) -> dict[str, Any]:
    env, by_index = pod_environment(group, index_var, index_source)
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": command(group[0].argv, index_var, by_index),
        "env": env,
        "resources": resources(group[0].resources),
    }
    port = group[0].port
    if port:
        container["ports"] = [{"name": port_name, "containerPort": port, "protocol": "TCP"}]
    return container


# -- Kubeflow ----------------------------------------------------------------------------------


def kubeflow_problem(plan: LaunchPlan) -> str | None:
    """Why the plan cannot be a Kubeflow job (the operator's webhook rules), or None."""
    kind = KUBEFLOW_KINDS.get(plan.framework)
    if kind is None:
        return f"the training operator has no kind for framework '{plan.framework}'"
    roles = _by_role(plan)
    unknown = sorted(set(roles) - set(kind.roles))
    if unknown:
        return f"{kind.kind} has no replica type for role(s) {', '.join(unknown)}"
    if plan.framework == "xgboost" and "Master" not in roles:
        return "an XGBoostJob needs a Master replica"
    if len(roles.get("Master", [])) > 1:
        return f"{kind.kind} allows exactly one Master replica"
    if plan.framework == "tensorflow" and len(roles.get("Chief", [])) + len(roles.get("Master", [])) > 1:
        return "a TFJob allows at most one Chief or Master replica"
    return None


def kubeflow_job(
    plan: LaunchPlan, *, origin: str, namespace: str, image: str | None = None
) -> dict[str, Any]:
    """The TFJob, PyTorchJob or XGBoostJob of the plan."""
    problem = kubeflow_problem(plan)
    if problem:
        raise ManifestError(problem)
    kind = KUBEFLOW_KINDS[plan.framework]
    image_name = _image(plan, image)
    pod_labels = labels(plan, origin)
    specs: dict[str, Any] = {}
    for role, group in _by_role(plan).items():
        container = _container(
            kind.container,
            group,
            image_name,
            "SUBMARINE_REPLICA_INDEX",
            f"metadata.labels['{KUBEFLOW_REPLICA_INDEX}']",
            kind.port_name,
        )
        specs[kind.roles[role]] = {
            "replicas": len(group),
            "restartPolicy": "OnFailure",
            "template": {
                "metadata": {"labels": {**pod_labels, LABEL_ROLE: role.lower()}},
                "spec": {"containers": [container]},
            },
        }
    return {
        "apiVersion": f"{KUBEFLOW_GROUP}/{KUBEFLOW_VERSION}",
        "kind": kind.kind,
        "metadata": _metadata(base_name(plan.uid), plan, origin, namespace),
        "spec": {"runPolicy": {"cleanPodPolicy": "Running"}, kind.specs_key: specs},
    }


# -- plain Jobs --------------------------------------------------------------------------------


def indexed_jobs(
    plan: LaunchPlan, *, origin: str, namespace: str, image: str | None = None
) -> list[dict[str, Any]]:
    """One Indexed ``batch/v1`` Job per role, primary role first."""
    image_name = _image(plan, image)
    pod_labels = labels(plan, origin)
    jobs = []
    for role, group in _by_role(plan).items():
        container = _container(
            dns_part(role),
            group,
            image_name,
            "JOB_COMPLETION_INDEX",
            f"metadata.annotations['{COMPLETION_INDEX}']",
            "replica",
        )
        metadata = _metadata(job_name(plan.uid, role), plan, origin, namespace)
        metadata["labels"][LABEL_ROLE] = role.lower()
        jobs.append(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": metadata,
                "spec": {
                    "completionMode": "Indexed",
                    "completions": len(group),
                    "parallelism": len(group),
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {"labels": {**pod_labels, LABEL_ROLE: role.lower()}},
                        "spec": {
                            "restartPolicy": "Never",
                            "subdomain": service_name(plan.uid),
                            "containers": [container],
                        },
                    },
                },
            }
        )
    return jobs


def headless_service(plan: LaunchPlan, *, origin: str, namespace: str) -> dict[str, Any]:
    """The Service that gives every pod of the attempt a stable DNS name, ready or not."""
    ports = sorted({r.port for r in plan.replicas if r.port})
    spec: dict[str, Any] = {
        "clusterIP": "None",
        "selector": {LABEL_UID: label_value(plan.uid)},
        "publishNotReadyAddresses": True,
    }
    if ports:
        spec["ports"] = [
            {"name": f"replica-{i}" if i else "replica", "port": p, "targetPort": p, "protocol": "TCP"}
            for i, p in enumerate(ports)
        ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(service_name(plan.uid), plan, origin, namespace),
        "spec": spec,
    }
