"""JSON shapes the API returns for experiments, matching Submarine 0.8.0 plus the broker's fields."""

from __future__ import annotations

from typing import Any

from broker.workloads.model import Workload
from broker.workloads.views import fmt_time, pinned_environment_json
from clusters.base import ReplicaLog
from runtimes.resources import resource_map
from runtimes.spec import FRAMEWORK_ROLES, ExperimentSpec

#: What a secret (a git password) is shown as.
SECRET_MASK = "******"


def stored_spec(spec: ExperimentSpec, experiment_id: str, namespace: str) -> dict[str, Any]:
    """The spec as stored and shown: Submarine's full shape, with ``resourceMap`` and defaults filled."""
    data = spec.model_dump(mode="json")
    meta = data["meta"]
    meta["experimentId"] = experiment_id
    meta["namespace"] = namespace
    for task in data["spec"].values():
        task["resourceMap"] = resource_map(task.get("resources"))
        for echo in ("cpu", "gpu", "memory"):
            task.pop(echo, None)
    return data


def public_spec(stored: dict[str, Any]) -> dict[str, Any]:
    """The stored spec with secrets (a git password) masked."""
    code = stored.get("code") or {}
    git = code.get("git") or {}
    if git.get("password"):
        stored = {**stored, "code": {**code, "git": {**git, "password": SECRET_MASK}}}
    return stored


def experiment_json(row: Workload) -> dict[str, Any]:
    """An Experiment as Submarine shows it, plus where it runs and why it is where it is.

    ``createdTime``, ``runningTime`` and ``finishedTime`` are the current attempt's; the events
    keep every attempt's."""
    return {
        "experimentId": row.id,
        "uid": row.uid,
        "status": row.status,
        "acceptedTime": fmt_time(row.accepted_at),
        "createdTime": fmt_time(row.created_at),
        "runningTime": fmt_time(row.running_at),
        "finishedTime": fmt_time(row.finished_at),
        "spec": public_spec(row.spec),
        "cluster": row.cluster,
        "reason": row.reason,
        "failureCategory": row.failure_category,
        "statusMessage": row.status_message,
        "attempt": row.attempt,
        "owner": row.owner,
        "namespace": row.namespace,
        "template": row.template,
        "environment": pinned_environment_json(row.environment),
    }


def replica_names(stored: dict[str, Any]) -> list[str]:
    """``chief-0``, ``worker-0``, …: every replica a stored spec asks for, primary first.

    Read from the stored document, not validated again: a row stored before a check was added
    (a NUL in a variable, an infinite grace period) still lists its replicas."""
    order = FRAMEWORK_ROLES.get(stored["meta"]["framework"], ())
    roles = sorted(
        stored["spec"].items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)
    )
    return [f"{role.lower()}-{i}" for role, task in roles for i in range(int(task.get("replicas", 1)))]


def log_json(experiment_id: str, logs: list[ReplicaLog]) -> dict[str, Any]:
    """Submarine's ExperimentLog: one entry per replica, ``podName`` = ``<id>-<replica>``."""
    return {
        "experimentId": experiment_id,
        "logContent": [{"podName": f"{experiment_id}-{log.replica}", "podLog": log.lines} for log in logs],
    }
