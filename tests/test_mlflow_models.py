"""Artifacts and models through the unmodified ``mlflow`` client: log_artifact(s), log_text,
log_dict, list and download, and ``mlflow.sklearn.log_model`` loaded back with ``pyfunc.load_model``.

These need the artifact proxy (``/api/2.0/mlflow-artifacts/``, branch ``i16-artifacts``): until it
is merged they fail at the first upload.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mlflow_support import mlflow_at
from tests.support import Broker


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("mlflow-models")).start()
    yield broker
    broker.close()


@pytest.fixture
def mlflow(tracking: Broker) -> Iterator[Any]:
    with mlflow_at(tracking.url) as module:
        yield module


def test_artifacts_go_up_and_come_back(mlflow: Any, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    folder = tmp_path / "folder"
    (folder / "inner").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "inner" / "b.txt").write_text("b")
    mlflow.set_experiment("artifacts")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(notes))
        mlflow.log_artifact(str(notes), "sub/dir")
        mlflow.log_artifacts(str(folder), "tree")
        mlflow.log_text("some text", "texts/t.txt")
        mlflow.log_dict({"a": 1}, "dicts/d.json")
    client = MlflowClient()
    top = {f.path: f.is_dir for f in client.list_artifacts(run.info.run_id)}
    assert top == {"notes.txt": False, "sub": True, "tree": True, "texts": True, "dicts": True}
    assert [f.path for f in client.list_artifacts(run.info.run_id, "tree/inner")] == ["tree/inner/b.txt"]
    out = tmp_path / "out"
    out.mkdir()
    got = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="tree", dst_path=str(out))
    assert (Path(got) / "inner" / "b.txt").read_text() == "b"
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/texts/t.txt") == "some text"
    assert mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/dicts/d.json") == {"a": 1}
    path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="sub/dir/notes.txt", dst_path=str(out)
    )
    assert Path(path).read_text() == "hello"


def test_a_sklearn_model_is_logged_and_loaded_back(mlflow: Any) -> None:
    import numpy as np
    from mlflow import MlflowClient
    from sklearn.linear_model import LinearRegression

    features = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LinearRegression().fit(features, 2 * features[:, 0] + 1)
    mlflow.set_experiment("models")
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 1)
        mlflow.log_metric("rmse", 0.0, step=1)
        info = mlflow.sklearn.log_model(model, name="model", input_example=features[:2])
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert np.allclose(loaded.predict(np.array([[4.0]])), [9.0])
    client = MlflowClient()
    logged = client.get_logged_model(info.model_id)
    assert logged.status == "READY" or str(logged.status).endswith("READY")
    assert logged.source_run_id == run.info.run_id
    assert logged.params.get("alpha") == "1"
    outputs = client.get_run(run.info.run_id).outputs.model_outputs
    assert [o.model_id for o in outputs] == [info.model_id]
    # log_model re-sent the run's metrics with the model id: the history did not double.
    assert [m.value for m in client.get_metric_history(run.info.run_id, "rmse")] == [0.0]
    by_run = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert np.allclose(by_run.predict(np.array([[5.0]])), [11.0])
