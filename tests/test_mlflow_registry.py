"""The model registry through the unmodified ``mlflow`` client against a real broker: register a
trained sklearn model, alias it, load it back by alias and predict; search with filters; stages
and ``get_latest_versions``; deletes; a version outliving its run's artifacts; and the same
models seen through Submarine's ``/api/v1`` registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.mlflow_support import mlflow_at
from tests.support import Broker

FEATURES = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 2.0], [4.0, 0.5]])
PROBE = np.array([[5.0, 1.0], [-1.0, 2.0], [0.5, 0.5]])


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def tracking(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A broker on each database (the registry's searches are SQL on both)."""
    url = request.getfixturevalue("pg_module_url") if request.param == "postgres" else None
    settings = {"database_url": url} if url else {}
    broker = Broker(tmp_path_factory.mktemp(f"mlflow-registry-{request.param}"), **settings).start()
    yield broker
    broker.close()


@pytest.fixture
def mlflow(tracking: Broker) -> Iterator[Any]:
    with mlflow_at(tracking.url) as module:
        yield module


def trained(slope: float = 2.0) -> Any:
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit(FEATURES, slope * FEATURES[:, 0] - FEATURES[:, 1] + 1)


def logged_run(mlflow: Any, model: Any, experiment: str = "registry") -> tuple[str, Any]:
    """A run of ``experiment`` that logged ``model`` (MLflow 3: as a logged model named "model")."""
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        mlflow.log_param("slope", 2)
        info = mlflow.sklearn.log_model(model, name="model", input_example=FEATURES[:2])
    return run.info.run_id, info


def error_code(excinfo: pytest.ExceptionInfo[Any]) -> str:
    return str(excinfo.value.error_code)


def test_a_registered_model_is_loaded_by_alias_and_predicts_the_same(mlflow: Any, tracking: Broker) -> None:
    from mlflow import MlflowClient

    model = trained()
    run_id, info = logged_run(mlflow, model)
    version = mlflow.register_model(f"runs:/{run_id}/model", "forecast")
    assert (version.name, version.version, version.status) == ("forecast", "1", "READY")
    assert version.run_id == run_id
    assert version.source == info.model_uri  # MLflow 3: the run's logged model (models:/m-...)
    client = MlflowClient()
    linked = json.loads(client.get_logged_model(info.model_id).tags["mlflow.modelVersions"])
    assert linked == [{"name": "forecast", "version": "1"}]
    raw = httpx.get(
        f"{tracking.url}/api/2.0/mlflow/model-versions/get", params={"name": "forecast", "version": "1"}
    )
    assert raw.json()["model_version"]["model_id"] == info.model_id  # the 3.17 client does not read it
    client.set_registered_model_alias("forecast", "champion", version.version)
    loaded = mlflow.pyfunc.load_model("models:/forecast@champion")
    assert np.allclose(loaded.predict(PROBE), model.predict(PROBE))
    by_alias = client.get_model_version_by_alias("forecast", "champion")
    assert (by_alias.version, by_alias.aliases, by_alias.current_stage) == ("1", ["champion"], "None")
    registered = client.get_registered_model("forecast")
    assert registered.aliases == {"champion": "1"}
    assert [v.version for v in registered.latest_versions] == ["1"]
    by_number = mlflow.pyfunc.load_model("models:/forecast/1")
    assert np.allclose(by_number.predict(PROBE), model.predict(PROBE))
    # Moving the alias: the next load follows it.
    other = trained(slope=-3.0)
    second_run, _ = logged_run(mlflow, other)
    second = mlflow.register_model(f"runs:/{second_run}/model", "forecast")
    assert second.version == "2"
    client.set_registered_model_alias("forecast", "champion", "2")
    assert np.allclose(
        mlflow.pyfunc.load_model("models:/forecast@champion").predict(PROBE), other.predict(PROBE)
    )
    assert client.get_model_version("forecast", "1").aliases == []
    client.delete_registered_model_alias("forecast", "champion")
    with pytest.raises(mlflow.exceptions.MlflowException) as gone:
        client.get_model_version_by_alias("forecast", "champion")
    assert error_code(gone) == "RESOURCE_DOES_NOT_EXIST"


def test_a_model_saved_into_the_runs_artifacts_registers_from_them(mlflow: Any, tmp_path: Path) -> None:
    """``runs:/<run>/model`` whose files are the run's own artifacts (an MLmodel there): the client
    sends the run's artifact URI as the source."""
    model = trained(slope=0.5)
    saved = tmp_path / "saved"
    mlflow.sklearn.save_model(model, str(saved))
    mlflow.set_experiment("registry")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(saved), "model")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "from-artifacts")
    assert version.source.startswith("mlflow-artifacts:/") and version.source.endswith("/artifacts/model")
    assert version.run_id == run.info.run_id
    loaded = mlflow.pyfunc.load_model("models:/from-artifacts/1")
    assert np.allclose(loaded.predict(PROBE), model.predict(PROBE))


def test_deleting_the_source_runs_artifacts_leaves_the_version_loadable(
    mlflow: Any, tracking: Broker, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    model = trained(slope=1.5)
    saved = tmp_path / "saved"
    mlflow.sklearn.save_model(model, str(saved))
    mlflow.set_experiment("registry")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(saved), "model")
        logged = mlflow.sklearn.log_model(model, name="logged")
    client = MlflowClient()
    from_run = mlflow.register_model(f"runs:/{run.info.run_id}/model", "outlives-run")
    from_logged = mlflow.register_model(logged.model_uri, "outlives-run")
    assert (from_run.version, from_logged.version) == ("1", "2")
    run_root = client.get_run(run.info.run_id).info.artifact_uri.removeprefix("mlflow-artifacts:/")
    logged_root = client.get_logged_model(logged.model_id).artifact_location.removeprefix(
        "mlflow-artifacts:/"
    )
    with httpx.Client(base_url=tracking.url + "/api/2.0/mlflow-artifacts/artifacts/", timeout=30) as http:
        for root in (run_root, logged_root):
            assert http.delete(root).status_code == 200
            assert http.get("", params={"path": root}).json() == {}  # really gone
    with pytest.raises((mlflow.exceptions.MlflowException, OSError)):
        mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    for number in ("1", "2"):
        loaded = mlflow.pyfunc.load_model(f"models:/outlives-run/{number}")
        assert np.allclose(loaded.predict(PROBE), model.predict(PROBE))


def test_search_registered_models_and_versions_with_filters(mlflow: Any) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    for name, team in (
        ("search-a", "vision"),
        ("search-b", "nlp"),
        ("search-c", "vision"),
        ("other-d", "vision"),
    ):
        client.create_registered_model(name, tags={"team": team}, description=f"model {name}")
    run_id, info = logged_run(mlflow, trained(), experiment="registry-search")
    client.create_model_version("search-a", info.model_uri, run_id=run_id, model_id=info.model_id)
    client.create_model_version("search-b", info.model_uri, run_id=run_id, model_id=info.model_id)
    client.create_model_version("search-b", info.model_uri, run_id=run_id, model_id=info.model_id)

    def names(**kwargs: Any) -> list[str]:
        return [m.name for m in client.search_registered_models(**kwargs)]

    assert names(filter_string="name LIKE 'search-%'", order_by=["name ASC"]) == [
        "search-a",
        "search-b",
        "search-c",
    ]
    assert names(filter_string="name LIKE 'search-%'", order_by=["name DESC"]) == [
        "search-c",
        "search-b",
        "search-a",
    ]
    assert names(filter_string="tags.team = 'vision' AND name LIKE 'search%'", order_by=["name"]) == [
        "search-a",
        "search-c",
    ]
    assert names(filter_string="name = 'other-d'") == ["other-d"]
    assert names(filter_string="name ILIKE 'SEARCH-B'") == ["search-b"]
    first = client.search_registered_models(
        filter_string="name LIKE 'search-%'", max_results=2, order_by=["name"]
    )
    assert [m.name for m in first] == ["search-a", "search-b"] and first.token
    rest = client.search_registered_models(
        filter_string="name LIKE 'search-%'", max_results=2, order_by=["name"], page_token=first.token
    )
    assert [m.name for m in rest] == ["search-c"] and not rest.token
    # The fluent API pages through everything itself.
    assert sorted(m.name for m in mlflow.search_registered_models(filter_string="name LIKE 'search-%'")) == [
        "search-a",
        "search-b",
        "search-c",
    ]
    by_run = client.search_model_versions(f"run_id = '{run_id}'")
    assert sorted((v.name, v.version) for v in by_run) == [
        ("search-a", "1"),
        ("search-b", "1"),
        ("search-b", "2"),
    ]
    assert sorted(v.version for v in client.search_model_versions("name = 'search-b'")) == ["1", "2"]
    client.set_model_version_tag("search-b", "2", "validated", "yes")
    tagged = client.search_model_versions("name = 'search-b' AND tags.validated = 'yes'")
    assert [(v.name, v.version, v.tags) for v in tagged] == [("search-b", "2", {"validated": "yes"})]
    client.delete_model_version_tag("search-b", "2", "validated")
    assert client.get_model_version("search-b", "2").tags == {}
    client.set_registered_model_tag("search-c", "team", "nlp")
    assert names(filter_string="tags.team = 'nlp'", order_by=["name"]) == ["search-b", "search-c"]
    client.delete_registered_model_tag("search-c", "team")
    assert client.get_registered_model("search-c").tags == {}
    client.update_registered_model("search-a", description="better")
    client.update_model_version("search-a", "1", description="first cut")
    assert client.get_registered_model("search-a").description == "better"
    assert client.get_model_version("search-a", "1").description == "first cut"


@pytest.mark.filterwarnings("ignore:.*is deprecated since 2.9.0:FutureWarning")
def test_stages_latest_versions_and_deletes(mlflow: Any) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    model = trained(slope=4.0)
    run_id, info = logged_run(mlflow, model, experiment="registry-stages")
    client.create_registered_model("staged")
    for _ in range(3):
        client.create_model_version("staged", info.model_uri, run_id=run_id, model_id=info.model_id)
    promoted = client.transition_model_version_stage("staged", "1", "Production")
    assert promoted.current_stage == "Production"
    staged = client.transition_model_version_stage("staged", "2", "Staging")
    assert staged.current_stage == "Developing"  # Submarine's name for MLflow's Staging
    latest = client.get_latest_versions("staged", stages=["Production"])
    assert [(v.version, v.current_stage) for v in latest] == [("1", "Production")]
    assert sorted((v.current_stage, v.version) for v in client.get_latest_versions("staged")) == [
        ("Developing", "2"),
        ("None", "3"),
        ("Production", "1"),
    ]
    loaded = mlflow.pyfunc.load_model("models:/staged/Production")
    assert np.allclose(loaded.predict(PROBE), model.predict(PROBE))
    # archive_existing_versions moves the old Production version out.
    client.transition_model_version_stage("staged", "3", "Production", archive_existing_versions=True)
    assert client.get_model_version("staged", "1").current_stage == "Archived"
    assert client.get_model_version("staged", "3").current_stage == "Production"
    # Deleting the model while a version is in Production is refused, and nothing is deleted.
    with pytest.raises(MlflowException) as refused:
        client.delete_registered_model("staged")
    assert error_code(refused) == "INVALID_STATE"
    assert "Production" in refused.value.message
    assert len(client.search_model_versions("name = 'staged'")) == 3
    client.delete_model_version("staged", "2")
    with pytest.raises(MlflowException) as missing:
        client.get_model_version("staged", "2")
    assert error_code(missing) == "RESOURCE_DOES_NOT_EXIST"
    client.transition_model_version_stage("staged", "3", "Archived")
    client.delete_registered_model("staged")
    with pytest.raises(MlflowException) as deleted:
        client.get_registered_model("staged")
    assert error_code(deleted) == "RESOURCE_DOES_NOT_EXIST"
    assert client.search_model_versions("name = 'staged'") == []


def test_rename_keeps_versions_and_a_duplicate_is_refused(mlflow: Any) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    run_id, info = logged_run(mlflow, trained(), experiment="registry-rename")
    client.create_registered_model("before")
    client.create_model_version("before", info.model_uri, run_id=run_id, model_id=info.model_id)
    with pytest.raises(MlflowException) as twice:
        client.create_registered_model("before")
    assert error_code(twice) == "RESOURCE_ALREADY_EXISTS"
    client.rename_registered_model("before", "after")
    assert client.get_registered_model("after").name == "after"
    assert client.get_model_version("after", "1").name == "after"
    with pytest.raises(MlflowException) as old:
        client.get_registered_model("before")
    assert error_code(old) == "RESOURCE_DOES_NOT_EXIST"
    client.create_registered_model("taken")
    with pytest.raises(MlflowException) as clash:
        client.rename_registered_model("after", "taken")
    assert error_code(clash) == "RESOURCE_ALREADY_EXISTS"


@pytest.mark.filterwarnings("ignore:.*is deprecated since 2.9.0:FutureWarning")
def test_one_store_behind_mlflow_and_submarine(mlflow: Any, tracking: Broker, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from tests.model_folders import MODEL_FILES, model_folder

    client = MlflowClient()
    model = trained(slope=0.25)
    run_id, info = logged_run(mlflow, model, experiment="registry-cross")
    mlflow.register_model(info.model_uri, "cross")
    client.transition_model_version_stage("cross", "1", "Production")
    client.set_registered_model_tag("cross", "team", "vision")
    # Registered through MLflow, read through Submarine's API.
    submarine = tracking.client
    registered = submarine.get("/registered-model/cross")
    assert registered.status_code == 200, registered.text
    assert (registered.json()["result"]["name"], registered.json()["result"]["tags"]) == (
        "cross",
        ["team=vision"],
    )
    first = submarine.get("/model-version/cross/1").json()["result"]
    assert (first["version"], first["currentStage"], first["runId"]) == (1, "Production", run_id)
    assert first["source"] == info.model_uri
    changes = submarine.get("/model-version/cross/1/history").json()["result"]
    stages = [
        (e["action"], e["from"], e["to"], e["actor"]) for e in changes if e["action"] == "stage_changed"
    ]
    assert stages == [("stage_changed", "None", "Production", "admin")]
    # Registered through Submarine's API, read through MLflow.
    base_dir = model_folder(tracking.url, experiment="registry-cross-files")
    made = submarine.post(
        "/model-version",
        params={"baseDir": base_dir},
        json={"name": "cross", "description": "from submarine", "tags": ["tf"]},
    )
    assert made.status_code == 200, made.text
    moved = submarine.patch(
        "/model-version", json={"name": "cross", "version": 2, "currentStage": "Developing"}
    )
    assert moved.status_code == 200, moved.text
    second = client.get_model_version("cross", "2")
    assert (second.current_stage, second.description, second.tags) == (
        "Developing",
        "from submarine",
        {"tf": ""},
    )
    assert [v.version for v in client.get_latest_versions("cross", stages=["Staging"])] == ["2"]
    files = Path(mlflow.artifacts.download_artifacts("models:/cross/2", dst_path=str(tmp_path / "v2")))
    for name, content in MODEL_FILES.items():
        assert (files / name).read_bytes() == content
    assert (
        submarine.post(
            "/registered-model", json={"name": "made-by-submarine", "description": "d"}
        ).status_code
        == 200
    )
    assert client.get_registered_model("made-by-submarine").description == "d"
    # Submarine's 406 and MLflow's INVALID_STATE are the same refusal.
    assert submarine.delete("/registered-model/cross").status_code == 406
    with pytest.raises(mlflow.exceptions.MlflowException) as refused:
        client.delete_registered_model("cross")
    assert error_code(refused) == "INVALID_STATE"
    assert np.allclose(mlflow.pyfunc.load_model("models:/cross/1").predict(PROBE), model.predict(PROBE))
