"""JSON shapes of notebooks: Submarine 0.8.0's Notebook plus the broker's fields."""

from __future__ import annotations

from typing import Any

from broker.state import Status
from broker.workloads.model import Workload
from broker.workloads.views import fmt_time, pinned_environment_json
from clusters.base import ReplicaLog
from runtimes.notebook import base_path

#: What Submarine's reason says in each state it names.
_REASONS = {
    "waiting": "The notebook instance is waiting for a cluster",
    "creating": "The notebook instance is creating",
    "running": "The notebook instance is running",
    "terminating": "The notebook instance is terminating",
}


#: Key of a notebook's ``access`` record set when the broker stopped its attempt on purpose (its
#: user's stop, the idle timeout): that notebook reads ``stopped``, not ``failed``.
STOPPED_AT = "stoppedAt"


def attempt_access(row: Workload) -> dict[str, Any]:
    """The ``access`` record of the notebook's current attempt (empty when it belongs to an older one)."""
    access = row.access or {}
    return access if access.get("uid") == row.uid else {}


def is_ready(row: Workload) -> bool:
    """The current attempt's Jupyter server has answered the broker."""
    return row.status == Status.RUNNING.value and bool(attempt_access(row).get("readyAt"))


def was_stopped(row: Workload) -> bool:
    """Ended because the broker stopped it on purpose (a user, the idle timeout), not a failure."""
    return row.status == Status.FAILED.value and bool(attempt_access(row).get(STOPPED_AT))


def notebook_status(row: Workload) -> str:
    """Submarine's lower-case notebook status for a row.

    Accepted → ``waiting`` (for a cluster); Created, or Running before the Jupyter server answers →
    ``creating``; answering → ``running``; Deleted → ``terminating`` (what DELETE answers; the
    notebook is then gone). Stopped by its user or by the idle timeout → ``stopped``, a broker
    extension to Submarine's statuses (the SDK passes status strings through unchecked); any other
    end (a crash, a shutdown from Jupyter itself, a server that never answered, a lost cluster) →
    ``failed``, with the reason and ``failureCategory`` saying which.
    """
    status = Status(row.status)
    if status is Status.ACCEPTED:
        return "waiting"
    if status is Status.CREATED:
        return "creating"
    if status is Status.RUNNING:
        return "running" if is_ready(row) else "creating"
    if status is Status.DELETED:
        return "terminating"
    return "stopped" if was_stopped(row) else "failed"


def _reason(row: Workload, status: str) -> str | None:
    if row.status == Status.SUCCEEDED.value:
        return "the Jupyter server shut down (exit code 0)"
    if status in ("failed", "stopped"):
        return row.reason
    return row.status_message or _REASONS.get(status)


def notebook_url(row: Workload) -> str:
    """``/notebook/<namespace>/<name>/lab``: where a browser opens it, through the broker."""
    return base_path(row.namespace, row.name) + "lab"


def notebook_json(row: Workload) -> dict[str, Any]:
    """A Notebook as Submarine shows it, plus where it runs, its owner and activity."""
    status = notebook_status(row)
    access = attempt_access(row)
    spec = dict(row.spec)
    meta = dict(spec.get("meta") or {})
    meta["labels"] = {**(meta.get("labels") or {}), "notebook-owner-id": row.owner, "notebook-id": row.id}
    meta["namespace"] = row.namespace
    spec["meta"] = meta
    return {
        "notebookId": row.id,
        "name": row.name,
        "uid": row.uid,
        "url": notebook_url(row),
        "status": status,
        "reason": _reason(row, status),
        "createdTime": fmt_time(row.accepted_at),
        "deletedTime": fmt_time(row.deleted_at),
        "spec": spec,
        "namespace": row.namespace,
        "owner": row.owner,
        "cluster": row.cluster,
        "attempt": row.attempt,
        "failureCategory": row.failure_category,
        "statusMessage": row.status_message,
        "lastActivity": access.get("lastActivity"),
        "environment": pinned_environment_json(row.environment),
    }


def notebook_log_json(notebook_id: str, logs: list[ReplicaLog], secret: str | None = None) -> dict[str, Any]:
    """The Jupyter server's output in the shape of Submarine's experiment logs: one entry per
    replica (a notebook has one), ``podName`` = ``<id>-<replica>``, ``podLog`` its lines. The
    server's token (``secret``) is masked wherever a line shows it (Jupyter masks it itself in the
    URLs it prints; code run in the notebook may not)."""

    def masked(line: str) -> str:
        return line.replace(secret, "******") if secret else line

    return {
        "notebookId": notebook_id,
        "logContent": [
            {"podName": f"{notebook_id}-{log.replica}", "podLog": [masked(line) for line in log.lines]}
            for log in logs
        ],
    }
