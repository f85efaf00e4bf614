"""What a run-scoped caller (a replica's run token) may do with tracking objects: its own run and
reading its experiment; other runs and experiments are hidden (404); creating is refused (403)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from broker.api.access import Caller
from broker.api.mlflow.access import TrackingAccess
from broker.api.mlflow_errors import MlflowError
from broker.tracking.scope import RunScope


class Nobody:
    def enforce(self, *request: str) -> bool:
        return False


def access(scope: RunScope | None, user: str = "alice") -> TrackingAccess:
    broker = SimpleNamespace(
        config=SimpleNamespace(auth="token", default_namespace="default"),
        policy=SimpleNamespace(authorizer=Nobody()),
        planner=SimpleNamespace(home_namespace=lambda u: "vision"),
    )
    state: dict[str, Any] = {"caller": Caller(user)}
    if scope is not None:
        state["run_scope"] = scope
    app = SimpleNamespace(state=SimpleNamespace(broker=broker))
    return TrackingAccess(Request({"type": "http", "state": state, "app": app, "headers": []}))


MINE = RunScope(run_id="a" * 32, experiment_id=3, replica="worker-1")


def run(run_id: str, experiment_id: int = 3, workload_id: str | None = "experiment-1") -> Any:
    return SimpleNamespace(
        run_id=run_id, experiment_id=experiment_id, namespace="vision", workload_id=workload_id
    )


def test_a_run_token_reaches_its_run_and_reads_its_experiment() -> None:
    scoped = access(MINE)
    assert scoped.run(run(MINE.run_id), "write", MINE.run_id)
    with pytest.raises(MlflowError) as hidden:
        scoped.run(run("b" * 32), "read", "b" * 32)
    assert hidden.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    experiment = SimpleNamespace(id=3, namespace="vision")
    assert scoped.experiment(experiment, "read", 3) is experiment
    with pytest.raises(MlflowError) as refused:
        scoped.experiment(experiment, "write", 3)
    assert refused.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(MlflowError) as other:
        scoped.experiment(SimpleNamespace(id=0, namespace="*"), "read", 0)
    assert other.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowError) as create:
        scoped.unscoped("create experiments")
    assert create.value.error_code == "PERMISSION_DENIED"
    model = SimpleNamespace(model_id="m-1", source_run_id=MINE.run_id, experiment_id=3, namespace="vision")
    assert scoped.model(model, "write") is model
    assert not scoped.may_model(SimpleNamespace(**{**vars(model), "source_run_id": "c" * 32}), "read")


def test_without_permissions_only_experiment_zero_is_open() -> None:
    nobody = access(None, "carol")
    assert nobody.may_experiment(SimpleNamespace(id=0, namespace="*"), "write")
    assert not nobody.may_experiment(SimpleNamespace(id=3, namespace="vision"), "read")
    assert not nobody.may_run(run("d" * 32), "read")
    assert nobody.namespace_for([("submarine.namespace", "nlp")]) == "nlp"
    assert nobody.namespace_for([]) == "vision"
