"""Who may read and write a run or a logged model: the tracking rules, for any caller.

Objects are ``tracking/<experiment_id>`` in the namespace of the run (or logged model). A run the
broker opened for a workload (``workload_id`` set) is also readable by whoever may read
``experiment/<workload_id>``. A run-scoped caller (a replica's run token) reaches its own run and
the logged models its run produced, nothing else. The MLflow handlers
(:mod:`broker.api.mlflow.access`) and the model registry (a version's source) both ask here.
"""

from __future__ import annotations

from typing import Any

from broker.guard import Guard
from broker.tracking.model import DEFAULT_EXPERIMENT_ID
from broker.tracking.scope import RunScope


def may_run(guard: Guard, scope: RunScope | None, row: Any, action: str) -> bool:
    """May the caller ``action`` (read, write) the run ``row`` (a tracking_run row)?"""
    if scope is not None:
        return bool(row.run_id == scope.run_id)
    if guard.may(row.namespace, f"tracking/{row.experiment_id}", action):
        return True
    if action == "read" and row.workload_id:
        return guard.may(row.namespace, f"experiment/{row.workload_id}", "read")
    return False


def may_logged_model(guard: Guard, scope: RunScope | None, row: Any, action: str) -> bool:
    """May the caller ``action`` the logged model ``row`` (a tracking_logged_model row)?"""
    if scope is not None:
        return bool(row.source_run_id == scope.run_id)
    if row.experiment_id == DEFAULT_EXPERIMENT_ID and row.namespace == "*":
        return True
    return guard.may(row.namespace, f"tracking/{row.experiment_id}", action)
