"""The Kubernetes status tables: every condition type read, precedence, and Job pod counts."""

from __future__ import annotations

import itertools

from clusters.base import Phase
from clusters.kubernetes.states import (
    JOB_CONDITIONS,
    KUBEFLOW_CONDITIONS,
    job_state,
    kubeflow_state,
    parse_indexes,
)

#: training-operator v1.9 pkg/apis/kubeflow.org/v1/common_types.go JobConditionType values.
OPERATOR_CONDITIONS = {"Created", "Running", "Restarting", "Succeeded", "Suspended", "Failed"}
#: k8s.io/api/batch/v1 JobConditionType values (1.31+).
BATCH_CONDITIONS = {"Suspended", "Complete", "Failed", "FailureTarget", "SuccessCriteriaMet"}


def cond(kind: str, status: str = "True", **extra: str) -> dict[str, str]:
    return {"type": kind, "status": status, **extra}


def test_tables_cover_every_condition_type() -> None:
    assert set(KUBEFLOW_CONDITIONS) == OPERATOR_CONDITIONS
    assert set(JOB_CONDITIONS) == BATCH_CONDITIONS
    ranks = [s.rank for s in KUBEFLOW_CONDITIONS.values()]
    assert len(set(ranks)) == len(ranks)
    ranks = [s.rank for s in JOB_CONDITIONS.values()]
    assert len(set(ranks)) == len(ranks)


def test_kubeflow_single_conditions() -> None:
    assert kubeflow_state(None).phase is Phase.PENDING
    assert kubeflow_state({"conditions": [cond("Created")]}).phase is Phase.PENDING
    assert kubeflow_state({"conditions": [cond("Suspended")]}).phase is Phase.PENDING
    assert kubeflow_state({"conditions": [cond("Running")]}).phase is Phase.RUNNING
    assert kubeflow_state({"conditions": [cond("Restarting")]}).phase is Phase.RUNNING
    assert kubeflow_state({"conditions": [cond("Succeeded")]}).phase is Phase.SUCCEEDED
    failed = kubeflow_state({"conditions": [cond("Failed", message="1 Worker replica(s) failed.")]})
    assert failed == (Phase.FAILED, "exit_code", "1 Worker replica(s) failed.")
    assert kubeflow_state({"conditions": [cond("SomethingNew")]}).phase is Phase.UNKNOWN
    assert kubeflow_state({"conditions": [cond("Running", "False")]}).phase is Phase.PENDING


def test_every_combination_is_decided_by_the_strongest_condition() -> None:
    for table, read in ((KUBEFLOW_CONDITIONS, kubeflow_state), (JOB_CONDITIONS, job_state)):
        names = sorted(table)
        for size in range(1, len(names) + 1):
            for combo in itertools.combinations(names, size):
                for order in (combo, tuple(reversed(combo))):
                    reading = read({"conditions": [cond(n) for n in order]})
                    strongest = max(combo, key=lambda n: table[n].rank)
                    assert reading.phase is table[strongest].phase, (combo, reading)
                    if "Failed" in combo:
                        assert reading.phase is Phase.FAILED


def test_job_conditions_and_counts() -> None:
    assert job_state(None).phase is Phase.PENDING
    assert job_state({"active": 2}).phase is Phase.PENDING
    assert job_state({"active": 2, "ready": 1}).phase is Phase.RUNNING
    assert job_state({"succeeded": 1, "active": 1}).phase is Phase.RUNNING
    assert job_state({"conditions": [cond("Complete")]}).phase is Phase.SUCCEEDED
    assert job_state({"conditions": [cond("SuccessCriteriaMet")]}).phase is Phase.SUCCEEDED
    assert job_state({"conditions": [cond("Suspended")], "active": 0}).phase is Phase.PENDING
    failed = job_state({"conditions": [cond("Failed", reason="BackoffLimitExceeded", message="limit")]})
    assert failed == (Phase.FAILED, "exit_code", "limit")
    deadline = job_state({"conditions": [cond("FailureTarget", reason="DeadlineExceeded")]})
    assert deadline.phase is Phase.FAILED and deadline.failure_category == "timeout"
    assert job_state({"conditions": [cond("Complete", "False")], "ready": 1}).phase is Phase.RUNNING
    assert job_state({"conditions": [cond("Mystery")]}).phase is Phase.UNKNOWN


def test_parse_indexes() -> None:
    assert parse_indexes("0,2-4,7") == {0, 2, 3, 4, 7}
    assert parse_indexes("") == set() and parse_indexes(None) == set()
    assert parse_indexes("x,1") == {1}
