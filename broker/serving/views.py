"""JSON shapes of served models, and what the serve watch keeps about the replicas.

A serve's ``access`` record (current attempt only) holds ``uid``, ``replicas`` (replica name →
URL, as the cluster reported them), ``ready`` (the replica names whose ``/ping`` answered at the
last check) and ``readyAt`` (when one first answered); during a rollout, ``rollout`` (the previous
attempt, which serves until the new one is ready) and, after the switch, ``retiring`` (that attempt
until it is stopped): see :mod:`broker.serving.rollout`.
"""

from __future__ import annotations

from typing import Any

from broker.state import Status
from broker.workloads.model import Workload
from broker.workloads.views import fmt_time, pinned_environment_json
from runtimes.serving import base_path

#: The spec key holding the version the serve resolved at submission (not a ServeSpec field).
MODEL_KEY = "model"
#: The ``access`` key of a rollout in progress.
ROLLOUT = "rollout"


def attempt_access(row: Workload) -> dict[str, Any]:
    """The ``access`` record of the serve's current attempt (empty when it belongs to an older one)."""
    access = row.access or {}
    return access if access.get("uid") == row.uid else {}


def ready_replicas(row: Workload) -> dict[str, str]:
    """Replica name → URL of the current attempt's replicas that answered ``/ping`` last time."""
    access = attempt_access(row)
    urls: dict[str, str] = access.get("replicas") or {}
    return {name: urls[name] for name in access.get("ready") or [] if name in urls}


def rollout_of(row: Workload) -> dict[str, Any] | None:
    """The rollout in progress (``from``, ``to``, ``by``, ``startedAt``, ``previous``), if any."""
    found = attempt_access(row).get(ROLLOUT)
    return found if isinstance(found, dict) else None


def serving_replicas(row: Workload) -> dict[str, str]:
    """Replica name → URL of the replicas requests go to: the current attempt's ready ones, or
    during a rollout, until the switch, the previous attempt's."""
    progress = rollout_of(row)
    if progress is not None and row.status != Status.DELETED.value:
        access = progress["previous"].get("access") or {}
        urls: dict[str, str] = access.get("replicas") or {}
        return {name: urls[name] for name in access.get("ready") or [] if name in urls}
    return ready_replicas(row) if row.status == Status.RUNNING.value else {}


def is_ready(row: Workload) -> bool:
    """At least one replica answers requests (the previous version's, during a rollout)."""
    return bool(serving_replicas(row))


def served_model(row: Workload) -> dict[str, Any]:
    """``{name, version, modelKey, alias, flavor}`` of the version the serve runs."""
    return dict((row.spec or {}).get(MODEL_KEY) or {})


def serve_url(row: Workload) -> str:
    """The serve's proxy path on the broker: ``/serve/<namespace>/<name>/``."""
    return base_path(row.namespace, row.name)


def serve_json(row: Workload) -> dict[str, Any]:
    """A served model as the API shows it."""
    model = served_model(row)
    spec = {k: v for k, v in (row.spec or {}).items() if k != MODEL_KEY}
    access = attempt_access(row)
    return {
        "id": row.id,
        "name": row.name,
        "namespace": row.namespace,
        "owner": row.owner,
        "uid": row.uid,
        "url": serve_url(row),
        "status": row.status,
        "ready": is_ready(row),
        "readyReplicas": len(serving_replicas(row)),
        "replicas": int(spec.get("replicas") or 1),
        "modelName": model.get("name"),
        "modelVersion": model.get("version"),
        "alias": model.get("alias"),
        "flavor": model.get("flavor"),
        "cluster": row.cluster,
        "attempt": row.attempt,
        "reason": row.reason,
        "failureCategory": row.failure_category,
        "statusMessage": row.status_message,
        "readyAt": access.get("readyAt"),
        "rollout": rollout_json(row),
        "createdTime": fmt_time(row.accepted_at),
        "deletedTime": fmt_time(row.deleted_at),
        "environment": pinned_environment_json(row.environment),
        "spec": spec,
    }


def rollout_json(row: Workload) -> dict[str, Any] | None:
    """The rollout in progress as the API shows it: versions, who started it, when, and the
    replicas serving meanwhile (the previous version's, on ``cluster``)."""
    progress = rollout_of(row)
    if progress is None:
        return None
    return {
        "fromVersion": progress["from"].get("version"),
        "toVersion": progress["to"].get("version"),
        "alias": progress["to"].get("alias"),
        "by": progress.get("by"),
        "startedTime": progress.get("startedAt"),
        "servingCluster": progress["previous"].get("cluster"),
        "servingAttempt": progress["previous"].get("attempt"),
    }
