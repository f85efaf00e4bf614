"""What Kubernetes says about a workload, read as a :class:`~clusters.base.Phase`.

Two tables: the conditions of a Kubeflow training job (``status.conditions[].type`` of
TFJob/PyTorchJob/XGBoostJob, training-operator v1 ``JobConditionType``) and those of a
``batch/v1`` Job (``JobConditionType`` of Kubernetes 1.31+). Only conditions whose ``status`` is
``"True"`` count; when several do, the highest ``rank`` wins (a terminal one over all others).
A condition type missing from a table reads as UNKNOWN, never as a failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from clusters.base import Phase


class State(NamedTuple):
    phase: Phase
    failure_category: str | None = None
    rank: int = 0


#: training-operator v1 (pkg/apis/kubeflow.org/v1/common_types.go) JobConditionType values.
KUBEFLOW_CONDITIONS: dict[str, State] = {
    "Created": State(Phase.PENDING, None, 1),
    "Suspended": State(Phase.PENDING, None, 2),
    "Running": State(Phase.RUNNING, None, 3),
    "Restarting": State(Phase.RUNNING, None, 4),
    "Succeeded": State(Phase.SUCCEEDED, None, 9),
    "Failed": State(Phase.FAILED, "exit_code", 10),
}

#: batch/v1 JobConditionType values (k8s.io/api/batch/v1 types.go).
JOB_CONDITIONS: dict[str, State] = {
    "Suspended": State(Phase.PENDING, None, 2),
    "SuccessCriteriaMet": State(Phase.SUCCEEDED, None, 7),  # pods are still being terminated
    "FailureTarget": State(Phase.FAILED, "exit_code", 8),  # pods are still being terminated
    "Complete": State(Phase.SUCCEEDED, None, 9),
    "Failed": State(Phase.FAILED, "exit_code", 10),
}

#: Reasons of a Job's Failed/FailureTarget condition that are not a replica's own exit code.
JOB_FAILURE_REASONS: dict[str, str] = {
    "BackoffLimitExceeded": "exit_code",
    "FailedIndexes": "exit_code",
    "PodFailurePolicy": "exit_code",
    "MaxFailedIndexesExceeded": "exit_code",
    "DeadlineExceeded": "timeout",
}


class Reading(NamedTuple):
    phase: Phase
    failure_category: str | None
    message: str


def _true(conditions: Iterable[Mapping[str, Any]] | None) -> list[Mapping[str, Any]]:
    return [c for c in conditions or () if str(c.get("status")) == "True"]


def _best(
    conditions: list[Mapping[str, Any]], table: Mapping[str, State]
) -> tuple[State, Mapping[str, Any]] | None:
    known = [(table[str(c.get("type"))], c) for c in conditions if str(c.get("type")) in table]
    if not known:
        return None
    return max(known, key=lambda pair: pair[0].rank)


def kubeflow_state(status: Mapping[str, Any] | None) -> Reading:
    """The phase of a TFJob/PyTorchJob/XGBoostJob from its ``status``."""
    true = _true((status or {}).get("conditions"))
    best = _best(true, KUBEFLOW_CONDITIONS)
    if best is None:
        if true:  # conditions we do not know: do not guess
            return Reading(Phase.UNKNOWN, None, f"unknown condition {true[-1].get('type')}")
        return Reading(Phase.PENDING, None, "")
    state, condition = best
    message = str(condition.get("message") or condition.get("reason") or "")
    return Reading(state.phase, state.failure_category, message[:500])


def job_state(status: Mapping[str, Any] | None) -> Reading:
    """The phase of one ``batch/v1`` Job from its ``status`` (conditions, then pod counts)."""
    status = status or {}
    true = _true(status.get("conditions"))
    best = _best(true, JOB_CONDITIONS)
    if best is not None:
        state, condition = best
        category = state.failure_category
        if state.phase is Phase.FAILED:
            category = JOB_FAILURE_REASONS.get(str(condition.get("reason")), "exit_code")
        message = str(condition.get("message") or condition.get("reason") or "")
        return Reading(state.phase, category, message[:500])
    if true:
        return Reading(Phase.UNKNOWN, None, f"unknown condition {true[-1].get('type')}")
    if int(status.get("ready") or 0) > 0 or int(status.get("succeeded") or 0) > 0:
        return Reading(Phase.RUNNING, None, "")
    return Reading(Phase.PENDING, None, "")


def parse_indexes(text: str | None) -> set[int]:
    """``"0,2-4"`` (a Job's ``completedIndexes``/``failedIndexes``) as a set."""
    found: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            found.update(range(int(low), int(high or low) + 1))
        except ValueError:
            continue
    return found
