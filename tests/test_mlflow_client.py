"""The unmodified ``mlflow`` client against a real broker (``auth: none``): experiments, runs,
params, metrics, tags, nested runs, history, search, delete/restore, the Default experiment."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from tests.mlflow_support import mlflow_at, rest
from tests.support import Broker


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("mlflow-client")).start()
    yield broker
    broker.close()


@pytest.fixture
def mlflow(tracking: Broker) -> Iterator[Any]:
    with mlflow_at(tracking.url) as module:
        yield module


def test_a_script_logs_params_metrics_and_tags_into_its_experiment(mlflow: Any) -> None:
    from mlflow import MlflowClient

    experiment = mlflow.set_experiment("demo-exp")
    with mlflow.start_run(run_name="r1") as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_params({"layers": 3, "optimizer": "adam"})
        mlflow.log_metric("loss", 1.0)
        for step, value in enumerate([0.9, 0.5, 0.25]):
            mlflow.log_metric("val_loss", value, step=step)
        mlflow.log_metrics({"acc": 0.7, "f1": 0.6}, step=2)
        mlflow.set_tag("team", "vision")
        mlflow.set_tags({"stage": "dev", "note": "first"})
    client = MlflowClient()
    got = client.get_run(run.info.run_id)
    assert got.info.status == "FINISHED" and got.info.end_time is not None
    assert got.info.run_name == "r1" and got.info.experiment_id == experiment.experiment_id
    assert (
        got.info.artifact_uri == f"mlflow-artifacts:/{experiment.experiment_id}/{run.info.run_id}/artifacts"
    )
    assert got.data.params == {"lr": "0.1", "layers": "3", "optimizer": "adam"}
    assert got.data.metrics == {"loss": 1.0, "val_loss": 0.25, "acc": 0.7, "f1": 0.6}
    assert got.data.tags["team"] == "vision" and got.data.tags["stage"] == "dev"
    assert got.data.tags["mlflow.runName"] == "r1"
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.5), (2, 0.25)]
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment.experiment_id}"
    again = mlflow.set_experiment("demo-exp")  # an existing experiment is found by name
    assert again.experiment_id == experiment.experiment_id


def test_nested_runs_record_their_parent(mlflow: Any) -> None:
    mlflow.set_experiment("nested")
    with (
        mlflow.start_run(run_name="parent") as parent,
        mlflow.start_run(run_name="child", nested=True) as child,
    ):
        mlflow.log_metric("x", 1)
    from mlflow import MlflowClient

    client = MlflowClient()
    assert client.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    found = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert [r.info.run_id for r in found] == [child.info.run_id]


def test_a_run_without_an_experiment_goes_to_default(mlflow: Any) -> None:
    with mlflow.start_run() as run:
        mlflow.log_metric("m", 2.0)
    assert run.info.experiment_id == "0"
    assert mlflow.get_experiment("0").name == "Default"
    assert mlflow.get_run(run.info.run_id).info.run_name  # a name was generated


def test_search_runs_filters_and_orders(mlflow: Any) -> None:
    from mlflow import MlflowClient

    experiment = mlflow.set_experiment("search-me")
    ids = {}
    for name, loss, lr in (("a", 0.3, "0.1"), ("b", 0.1, "0.01"), ("c", 0.2, "0.1"), ("d", math.nan, "0.5")):
        with mlflow.start_run(run_name=name) as run:
            mlflow.log_metric("loss", loss)
            mlflow.log_param("lr", lr)
            mlflow.set_tag("kind", "x" if name != "c" else "y")
        ids[name] = run.info.run_id
    with mlflow.start_run(run_name="e") as run:  # no loss at all
        mlflow.log_param("lr", "0.1")
    ids["e"] = run.info.run_id
    client = MlflowClient()
    exp = [experiment.experiment_id]

    def names(**kwargs: Any) -> list[str]:
        return [r.info.run_name for r in client.search_runs(exp, **kwargs)]

    assert names(filter_string="metrics.loss < 0.25", order_by=["metrics.loss ASC"]) == ["b", "c"]
    assert names(order_by=["metrics.loss DESC"])[:3] == ["a", "c", "b"]
    assert names(order_by=["metrics.loss ASC"]) == ["b", "c", "a", "d", "e"]  # NaN, then missing, last
    assert sorted(names(filter_string="params.lr = '0.1'")) == ["a", "c", "e"]
    assert sorted(names(filter_string="params.lr = '0.1' and tags.kind != 'y'")) == ["a"]
    assert names(filter_string="attributes.run_name LIKE 'b%'") == ["b"]
    assert names(filter_string="attributes.run_name ILIKE 'B%'") == ["b"]
    assert names(filter_string="attributes.run_name LIKE 'B%'") == []
    assert sorted(names(filter_string="attributes.run_name IN ('a', 'd')")) == ["a", "d"]
    assert names(
        filter_string="attributes.status = 'FINISHED'", order_by=["attributes.start_time ASC"]
    ) == list("abcde")
    assert names(filter_string="tags.`kind` = 'y'") == ["c"]
    assert names(order_by=["params.lr DESC", "attributes.run_name ASC"]) == ["d", "a", "c", "e", "b"]
    # Paging: two at a time, in the default order (newest first).
    page = client.search_runs(exp, max_results=2)
    seen = [r.info.run_name for r in page]
    while page.token:
        page = client.search_runs(exp, max_results=2, page_token=page.token)
        seen += [r.info.run_name for r in page]
    assert seen == list("edcba")
    frame = mlflow.search_runs([experiment.experiment_id], filter_string="metrics.loss > 0.15")
    assert sorted(frame["tags.mlflow.runName"]) == ["a", "c"]
    assert sorted(frame["metrics.loss"]) == [0.2, 0.3]


def test_search_experiments(mlflow: Any) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    for name in ("zeta-1", "zeta-2", "zeta-3"):
        client.create_experiment(name, tags={"family": "zeta", "n": name[-1]})
    found = client.search_experiments(filter_string="name LIKE 'zeta-%'", order_by=["name DESC"])
    assert [e.name for e in found] == ["zeta-3", "zeta-2", "zeta-1"]
    found = client.search_experiments(filter_string="tags.n = '2'")
    assert [e.name for e in found] == ["zeta-2"] and found[0].tags["family"] == "zeta"
    assert "Default" in [e.name for e in mlflow.search_experiments()]


def test_delete_and_restore(mlflow: Any) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    experiment_id = client.create_experiment("short-lived")
    run = client.create_run(experiment_id, run_name="gone")
    client.delete_run(run.info.run_id)
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    assert client.search_runs([experiment_id]) == []
    assert [r.info.run_id for r in client.search_runs([experiment_id], run_view_type=2)] == [run.info.run_id]
    with pytest.raises(MlflowException) as refused:
        client.log_metric(run.info.run_id, "m", 1.0)
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    client.restore_run(run.info.run_id)
    client.log_metric(run.info.run_id, "m", 1.0)
    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    assert client.get_run(run.info.run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(MlflowException):
        mlflow.set_experiment("short-lived")
    client.restore_experiment(experiment_id)
    assert client.get_experiment_by_name("short-lived").lifecycle_stage == "active"
    client.rename_experiment(experiment_id, "renamed")
    assert client.get_experiment(experiment_id).name == "renamed"


def test_log_input_is_accepted(mlflow: Any) -> None:
    import pandas as pd

    mlflow.set_experiment("inputs")
    frame = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    dataset = mlflow.data.from_pandas(frame, name="tiny")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert [d.dataset.name for d in inputs] == ["tiny"]
    assert inputs[0].tags[0].value == "training"


def test_a_long_history_comes_back_whole_in_pages(mlflow: Any, tracking: Broker) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient()
    run = client.create_run(client.create_experiment("long-history"))
    for start in range(0, 26000, 1000):
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("loss", i * 0.5, 1000 + i, i) for i in range(start, start + 1000)],
        )
    history = client.get_metric_history(run.info.run_id, "loss")
    assert len(history) == 26000
    assert [m.step for m in history] == list(range(26000))
    with rest(tracking) as api:
        first = api.get(
            "/metrics/get-history",
            params={"run_id": run.info.run_id, "metric_key": "loss", "max_results": 25000},
        )
        assert first.status_code == 200 and len(first.json()["metrics"]) == 25000
        token = first.json()["next_page_token"]
        second = api.get(
            "/metrics/get-history",
            params={
                "run_id": run.info.run_id,
                "metric_key": "loss",
                "max_results": 25000,
                "page_token": token,
            },
        )
        assert len(second.json()["metrics"]) == 1000 and "next_page_token" not in second.json()
        assert second.json()["metrics"][0] == {
            "key": "loss",
            "value": 12500.0,
            "timestamp": 26000,
            "step": 25000,
        }
