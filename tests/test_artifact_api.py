"""MLflow's artifact proxy (``/api/2.0/mlflow-artifacts``) through a real broker: upload, download,
list and delete on the folder and S3 backends, MLflow-shaped refusals, who may reach which path,
the artifacts: section of broker.yaml, and a 200 MB file streamed both ways with the broker's
memory measured."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from broker.accounts import add_user, create_token
from broker.config import ConfigError, load_broker_config
from broker.policy_store import seed_default_policy
from broker.store.database import Database
from broker.store.migrate import upgrade
from broker.tracking.model import TrackingExperiment, TrackingLoggedModel, TrackingRun
from broker.tracking.scope import RunScope
from tests.inprocess import InProcessBroker
from tests.moto_s3 import CREDENTIALS, moto_server, s3_client, s3_env
from tests.support import REPO, Broker, python_spec

API = "/api/2.0/mlflow-artifacts/artifacts"
MB = 1024 * 1024


# -- tracking rows, as the tracking API would write them --------------------------------------


def experiment(id: int, namespace: str) -> TrackingExperiment:
    return TrackingExperiment(
        id=id,
        name=f"exp-{id}",
        namespace=namespace,
        artifact_location=f"mlflow-artifacts:/{id}",
        creation_time=0,
        last_update_time=0,
    )


def run_row(run_id: str, experiment_id: int, namespace: str, workload_id: str | None = None) -> TrackingRun:
    return TrackingRun(
        run_id=run_id,
        experiment_id=experiment_id,
        namespace=namespace,
        status="RUNNING",
        start_time=0,
        artifact_uri=f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
        workload_id=workload_id,
        attempt=1 if workload_id else None,
    )


def model_row(
    model_id: str, experiment_id: int, namespace: str, source_run_id: str | None
) -> TrackingLoggedModel:
    return TrackingLoggedModel(
        model_id=model_id,
        experiment_id=experiment_id,
        namespace=namespace,
        name="model",
        artifact_uri=f"mlflow-artifacts:/{experiment_id}/models/{model_id}/artifacts",
        status="READY",
        source_run_id=source_run_id,
        creation_timestamp_ms=0,
        last_updated_timestamp_ms=0,
    )


def open_db(broker: Broker) -> Database:
    """The broker's database, migrated (before its first start too)."""
    config = load_broker_config(broker.config_path)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.effective_database_url)
    upgrade(db.engine)
    return db


def add_rows(broker: Broker, *rows: Any) -> None:
    db = open_db(broker)
    try:
        db.call(lambda s: s.add_all(list(rows)))
    finally:
        db.dispose()


def rid() -> str:
    return uuid.uuid4().hex


def mlflow_code(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json().get("error_code", "")


# -- the folder backend, auth: none ------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, str]]:
    root = tmp_path_factory.mktemp("artifacts-folder")
    broker = Broker(root, artifacts={"backend": "folder", "path": str(root / "store")})
    run_id = rid()
    broker.start()
    add_rows(broker, experiment(1, "default"), run_row(run_id, 1, "default"))
    yield broker, run_id
    broker.close()


def test_upload_download_list_and_delete_on_the_folder_backend(folder_broker: tuple[Broker, str]) -> None:
    broker, run_id = folder_broker
    base = f"{broker.url}{API}/1/{run_id}/artifacts"
    with httpx.Client(timeout=30) as http:
        assert http.put(f"{base}/notes.txt", content=b"hello artifacts").json() == {}
        assert http.put(f"{base}/model/MLmodel", content=b"flavors: {}\n").status_code == 200
        assert http.put(f"{base}/model/data/w.json", content=b'{"w": 1}').status_code == 200

        got = http.get(f"{base}/notes.txt")
        assert got.status_code == 200 and got.content == b"hello artifacts"
        assert got.headers["content-type"].startswith("text/plain")
        assert got.headers["content-length"] == "15"
        assert http.get(f"{base}/model/data/w.json").headers["content-type"] == "application/json"

        listed = http.get(f"{broker.url}{API}", params={"path": f"1/{run_id}/artifacts"}).json()
        assert listed == {
            "files": [
                {"path": "model", "is_dir": True},
                {"path": "notes.txt", "is_dir": False, "file_size": 15},
            ]
        }
        # MLflow's answers: a file and a missing folder list as {}.
        assert http.get(f"{broker.url}{API}", params={"path": f"1/{run_id}/artifacts/notes.txt"}).json() == {}
        assert http.get(f"{broker.url}{API}", params={"path": f"1/{run_id}/artifacts/none"}).json() == {}

        # The web UI's path serves the same store.
        ajax = http.get(
            f"{broker.url}/ajax-api/2.0/mlflow-artifacts/artifacts/1/{run_id}/artifacts/notes.txt"
        )
        assert ajax.content == b"hello artifacts"

        assert http.delete(f"{base}/model").json() == {}
        assert mlflow_code(http.get(f"{base}/model/MLmodel")) == (404, "RESOURCE_DOES_NOT_EXIST")
        assert http.delete(f"{base}/notes.txt").json() == {}
        missing = http.get(f"{base}/notes.txt")
        assert mlflow_code(missing) == (404, "RESOURCE_DOES_NOT_EXIST")
        assert "notes.txt" in missing.json()["message"]
    assert (Path(broker.root) / "store" / "1" / run_id / "artifacts").is_dir()  # where the config says


@pytest.mark.parametrize(
    "tail",
    ["..%2F..%2Fetc%2Fpasswd", "%2E%2E/x", "a/%2E%2E/%2E%2E/x", "a//b", "a/%2E/b", "a%00b", "a%5C..%5Cb", ""],
)
def test_bad_paths_are_400_invalid_parameter_value(folder_broker: tuple[Broker, str], tail: str) -> None:
    broker, run_id = folder_broker
    with httpx.Client(timeout=30) as http:
        for method in ("GET", "PUT", "DELETE"):
            answer = http.request(method, f"{broker.url}{API}/1/{run_id}/artifacts/{tail}", content=b"x")
            assert mlflow_code(answer) == (400, "INVALID_PARAMETER_VALUE"), (method, tail, answer.text)
            # Without the run's part, the same (but a GET of artifacts/ alone is the root's listing).
            if tail or method != "GET":
                answer = http.request(method, f"{broker.url}{API}/{tail}", content=b"x")
                assert mlflow_code(answer) == (400, "INVALID_PARAMETER_VALUE"), (method, tail, answer.text)
        listed = http.get(f"{broker.url}{API}?path=1/{run_id}/artifacts/{tail}")
        if tail:  # the empty tail is the run's folder itself
            assert mlflow_code(listed) == (400, "INVALID_PARAMETER_VALUE"), (tail, listed.text)
    assert "Traceback" not in broker.log()


def test_an_absolute_path_or_unknown_experiment_or_run_is_refused(folder_broker: tuple[Broker, str]) -> None:
    broker, run_id = folder_broker
    with httpx.Client(timeout=30) as http:
        assert mlflow_code(http.get(f"{broker.url}{API}?path=/etc")) == (400, "INVALID_PARAMETER_VALUE")
        assert mlflow_code(http.get(f"{broker.url}{API}?path=1//x")) == (400, "INVALID_PARAMETER_VALUE")
        assert mlflow_code(http.get(f"{broker.url}{API}?path=..")) == (400, "INVALID_PARAMETER_VALUE")
        for path in (
            f"99/{run_id}/artifacts/a.txt",
            f"1/{rid()}/artifacts/a.txt",
            "x/y.txt",
            "1/models/m-1/a",
        ):
            for method in ("GET", "PUT", "DELETE"):
                answer = http.request(method, f"{broker.url}{API}/{path}", content=b"x")
                assert mlflow_code(answer) == (404, "RESOURCE_DOES_NOT_EXIST"), (method, path, answer.text)
        # A folder is not a file to download; the root and an experiment list for the admin.
        http.put(f"{broker.url}{API}/1/{run_id}/artifacts/d/f.txt", content=b"f")
        folder = http.get(f"{broker.url}{API}/1/{run_id}/artifacts/d")
        assert mlflow_code(folder) == (404, "RESOURCE_DOES_NOT_EXIST")
        assert {"path": "1", "is_dir": True} in http.get(f"{broker.url}{API}").json()["files"]
        assert http.get(f"{broker.url}{API}?path=1").json() == {"files": [{"path": run_id, "is_dir": True}]}
        # Writing outside a run or model (the experiment's own folder) is not for anyone.
        outside = http.put(f"{broker.url}{API}/1/models", content=b"x")
        assert mlflow_code(outside) == (403, "PERMISSION_DENIED")


def test_a_body_larger_than_max_body_bytes_is_accepted(folder_broker: tuple[Broker, str]) -> None:
    """The JSON APIs' body limit (1 MB) is not the artifacts' limit."""
    broker, run_id = folder_broker
    body = os.urandom(3 * MB)
    url = f"{broker.url}{API}/1/{run_id}/artifacts/three-mb.bin"
    assert httpx.put(url, content=body, timeout=30).status_code == 200
    assert httpx.get(url, timeout=30).content == body


# -- the real mlflow client's artifact repository ---------------------------------------------


def test_the_mlflow_client_logs_lists_and_downloads_artifacts(
    folder_broker: tuple[Broker, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mlflow's own ``mlflow-artifacts:`` repository (what log_artifact(s), log_text and
    download_artifacts use under a run) against the broker."""
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    broker, run_id = folder_broker
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    repo = MlflowArtifactsRepository(f"mlflow-artifacts:/1/{run_id}/artifacts", tracking_uri=broker.url)
    source = tmp_path / "out"
    (source / "plots" / "deep").mkdir(parents=True)
    (source / "metrics.csv").write_text("step,loss\n0,1.0\n")
    (source / "plots" / "loss.svg").write_text("<svg/>")
    (source / "plots" / "deep" / "weights.bin").write_bytes(os.urandom(2 * MB + 7))
    single = tmp_path / "README.md"
    single.write_text("# run notes\n")

    repo.log_artifacts(str(source), "outputs")
    repo.log_artifact(str(single))
    listed = sorted(f.path for f in repo.list_artifacts("outputs"))
    assert listed == ["outputs/metrics.csv", "outputs/plots"]

    (tmp_path / "back").mkdir()
    (tmp_path / "one").mkdir()
    back = Path(repo.download_artifacts("outputs", dst_path=str(tmp_path / "back")))
    for relative in ("metrics.csv", "plots/loss.svg", "plots/deep/weights.bin"):
        assert (back / relative).read_bytes() == (source / relative).read_bytes()
    assert (
        Path(repo.download_artifacts("README.md", dst_path=str(tmp_path / "one"))).read_text()
        == "# run notes\n"
    )


# -- permissions under auth: token ---------------------------------------------------------------

POLICY_EXTRA = """
p, member, *, tracking/*, read, allow
p, member, *, tracking/*, write, allow
p, viewer, *, experiment/*, read, allow
g, dave, viewer, vision
"""


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Broker, dict[str, httpx.Client], dict[str, str]]]:
    root = tmp_path_factory.mktemp("artifacts-secured")
    policy = root / "policy.csv"
    policy.write_text((REPO / "broker" / "defaults" / "policy.csv").read_text() + POLICY_EXTRA)
    broker = Broker(root, auth="token", default_policy=str(policy))
    db = open_db(broker)
    config = load_broker_config(broker.config_path)
    seed_default_policy(db, config.default_policy)
    tokens = {}
    for name, teams, admin in (
        ("alice", ["vision"], False),
        ("bob", ["nlp"], False),
        ("root", [], True),
        ("dave", [], False),
    ):
        db.call(lambda s, n=name, t=teams, a=admin: add_user(s, n, teams=t, admin=a, author="test"))
        tokens[name] = db.call(lambda s, n=name: create_token(s, n)).token
    ids = {
        "vision_run": rid(),
        "nlp_run": rid(),
        "zero_nlp_run": rid(),
        "broker_run": rid(),
        "model": f"m-{rid()}",
    }
    db.call(
        lambda s: s.add_all(
            [
                experiment(1, "vision"),
                experiment(2, "nlp"),
                run_row(ids["vision_run"], 1, "vision"),
                run_row(ids["nlp_run"], 2, "nlp"),
                run_row(ids["zero_nlp_run"], 0, "nlp"),
                run_row(ids["broker_run"], 1, "vision", workload_id="experiment-1700000000000-0001"),
                model_row(ids["model"], 1, "vision", ids["vision_run"]),
            ]
        )
    )
    db.dispose()
    broker.start()
    clients = {
        name: httpx.Client(base_url=broker.url + API, headers={"Authorization": f"Bearer {tok}"}, timeout=30)
        for name, tok in tokens.items()
    }
    yield broker, clients, ids
    for client in clients.values():
        client.close()
    broker.close()


def test_a_team_reaches_its_runs_and_another_teams_are_404(secured) -> None:
    broker, c, ids = secured
    vision = f"/1/{ids['vision_run']}/artifacts"
    nlp = f"/2/{ids['nlp_run']}/artifacts"
    assert c["alice"].put(f"{vision}/a.txt", content=b"alice's").status_code == 200
    assert c["bob"].put(f"{nlp}/b.txt", content=b"bob's").status_code == 200
    assert c["alice"].get(f"{vision}/a.txt").content == b"alice's"
    assert c["root"].get(f"{nlp}/b.txt").content == b"bob's"  # the admin reads everything

    for method in ("GET", "PUT", "DELETE"):
        assert mlflow_code(c["bob"].request(method, f"{vision}/a.txt", content=b"x")) == (
            404,
            "RESOURCE_DOES_NOT_EXIST",
        )
        assert mlflow_code(c["alice"].request(method, f"{nlp}/b.txt", content=b"x")) == (
            404,
            "RESOURCE_DOES_NOT_EXIST",
        )
    assert mlflow_code(c["bob"].get("", params={"path": vision[1:]})) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert c["alice"].get(f"{vision}/a.txt").content == b"alice's"  # bob's PUT and DELETE did nothing

    # Experiment 0 is everyone's, but its runs keep their team's namespace.
    zero = f"/0/{ids['zero_nlp_run']}/artifacts/z.txt"
    assert c["bob"].put(zero, content=b"z").status_code == 200
    assert mlflow_code(c["alice"].get(zero)) == (404, "RESOURCE_DOES_NOT_EXIST")

    # Listing the root, or another team's experiment: only with read on it.
    assert mlflow_code(c["alice"].get("")) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert c["root"].get("").json()["files"]
    assert c["alice"].get("", params={"path": "1"}).json()["files"]
    assert mlflow_code(c["bob"].get("", params={"path": "1"})) == (404, "RESOURCE_DOES_NOT_EXIST")

    # Without a token: 401.
    assert httpx.get(broker.url + API + f"{vision}/a.txt").status_code == 401


def test_logged_models_follow_their_namespace(secured) -> None:
    _, c, ids = secured
    model = f"/1/models/{ids['model']}/artifacts/MLmodel"
    assert c["alice"].put(model, content=b"flavors: {}").status_code == 200
    assert c["alice"].get(model).content == b"flavors: {}"
    assert mlflow_code(c["bob"].get(model)) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_a_broker_opened_run_is_readable_by_who_may_read_its_experiment(secured) -> None:
    _, c, ids = secured
    path = f"/1/{ids['broker_run']}/artifacts/log.txt"
    assert c["alice"].put(path, content=b"from the replica").status_code == 200
    # dave may read vision's experiments but has no tracking rights: reads the run, cannot write it.
    assert c["dave"].get(path).content == b"from the replica"
    assert mlflow_code(c["dave"].put(path, content=b"x")) == (403, "PERMISSION_DENIED")
    # ...and only that run: a client's own run in the same experiment stays hidden.
    assert mlflow_code(c["dave"].get(f"/1/{ids['vision_run']}/artifacts/a.txt")) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )


# -- run-scoped callers (a replica's MLFLOW_TRACKING_TOKEN) -------------------------------------


def test_a_run_scoped_caller_reaches_only_its_run_and_its_models(tmp_path: Path) -> None:
    broker = InProcessBroker(tmp_path)
    mine, other, model, foreign_model = rid(), rid(), f"m-{rid()}", f"m-{rid()}"
    rows = [
        experiment(1, "default"),
        experiment(2, "default"),
        run_row(mine, 1, "default"),
        run_row(other, 1, "default"),
        model_row(model, 1, "default", mine),
        model_row(foreign_model, 1, "default", other),
    ]
    broker.context.db.call(lambda s: s.add_all(rows))
    scope = RunScope(run_id=mine, experiment_id=1, replica="worker-0")

    async def scoped(inner_scope: Any, receive: Any, send: Any) -> None:
        inner_scope["state"] = {"run_scope": scope}
        await broker.app(inner_scope, receive, send)

    async def call(method: str, path: str, body: bytes = b"x") -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=scoped), base_url="http://broker"
        ) as http:
            return await http.request(method, API + path, content=body if method == "PUT" else None)

    def ask(method: str, path: str) -> tuple[int, str]:
        answer = broker.run(call(method, path))
        if answer.headers["content-type"] != "application/json":
            return answer.status_code, ""
        return answer.status_code, answer.json().get("error_code", "")

    try:
        assert ask("PUT", f"/1/{mine}/artifacts/a.txt") == (200, "")
        assert ask("GET", f"/1/{mine}/artifacts/a.txt") == (200, "")
        assert ask("PUT", f"/1/models/{model}/artifacts/MLmodel") == (200, "")
        assert ask("GET", f"/1/models/{model}/artifacts/MLmodel") == (200, "")
        assert ask("DELETE", f"/1/{mine}/artifacts/a.txt") == (200, "")
        for method in ("GET", "PUT", "DELETE"):
            for path in (
                f"/1/{other}/artifacts/a.txt",
                f"/1/models/{foreign_model}/artifacts/MLmodel",
                "/2/x/a.txt",
                "/1/traces/tr-1/artifacts/traces.json",
            ):
                assert ask(method, path) == (404, "RESOURCE_DOES_NOT_EXIST"), (method, path)
        listed = broker.run(call("GET", f"?path=1/{mine}/artifacts"))
        assert listed.status_code == 200
        for folder in ("", "1", "1/models", f"1/{other}"):
            answer = broker.run(call("GET", f"?path={folder}"))
            assert (answer.status_code, answer.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST"), (
                folder
            )
    finally:
        broker.run(broker.client.aclose())
        broker.context.db.dispose()


# -- the artifacts: section of broker.yaml ------------------------------------------------------


def _config(tmp_path: Path, artifacts: Any) -> Path:
    path = tmp_path / "broker.yaml"
    path.write_text(yaml.safe_dump({"data_dir": "data", "artifacts": artifacts}))
    return path


@pytest.mark.parametrize(
    ("artifacts", "key", "says"),
    [
        ({"backend": "gcs"}, "artifacts.backend", "folder"),
        ({"backend": "s3"}, "artifacts.bucket", "required"),
        ({"backend": "s3", "bucket": "Bad_Bucket"}, "artifacts.bucket", "bucket name"),
        (
            {"backend": "s3", "bucket": "ok-bucket", "endpoint_url": "ftp://x"},
            "artifacts.endpoint_url",
            "http",
        ),
        ({"backend": "s3", "bucket": "ok-bucket", "prefix": "a/../b"}, "artifacts.prefix", "'..'"),
        ({"backend": "s3", "bucket": "ok-bucket", "path": "/tmp/x"}, "artifacts.path", "folder"),
        ({"backend": "folder", "bucket": "ok-bucket"}, "artifacts.bucket", "s3"),
        (
            {"backend": "s3", "bucket": "ok-bucket", "secret_access_key": "hunter2"},
            "artifacts",
            "environment",
        ),
        ({"backend": "folder", "colour": "red"}, "artifacts.colour", "unknown"),
    ],
)
def test_a_bad_artifacts_section_names_its_key(tmp_path: Path, artifacts: Any, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_broker_config(_config(tmp_path, artifacts))
    assert refused.value.key == key, str(refused.value)
    assert says in refused.value.reason
    assert "hunter2" not in str(refused.value)


def test_the_artifacts_section_defaults_to_a_folder_in_data_dir(tmp_path: Path) -> None:
    config = load_broker_config(_config(tmp_path, {}))
    assert config.artifacts.backend == "folder"
    assert config.artifacts_path == tmp_path / "data" / "artifacts"
    relative = load_broker_config(_config(tmp_path, {"path": "elsewhere"}))
    assert relative.artifacts_path == tmp_path / "elsewhere"
    s3 = load_broker_config(_config(tmp_path, {"backend": "s3", "bucket": "b-1", "prefix": "/team/x/"}))
    assert s3.artifacts.prefix == "team/x"


# -- S3 (moto) through the broker, and 200 MB both ways with the broker's memory measured ---------


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


def s3_broker(broker_factory: Callable[..., Broker], moto: str) -> tuple[Broker, str, Any]:
    bucket = f"broker-{uuid.uuid4().hex[:12]}"
    client = s3_client(moto)
    client.create_bucket(Bucket=bucket)
    broker = broker_factory(
        start=False, artifacts={"backend": "s3", "bucket": bucket, "prefix": "mlflow", "endpoint_url": moto}
    )
    broker.start(env=s3_env())
    return broker, bucket, client


def test_the_s3_backend_through_the_broker(broker_factory: Callable[..., Broker], moto: str) -> None:
    broker, bucket, client = s3_broker(broker_factory, moto)
    run_id = rid()
    add_rows(broker, experiment(1, "default"), run_row(run_id, 1, "default"))
    base = f"{broker.url}{API}/1/{run_id}/artifacts"
    with httpx.Client(timeout=30) as http:
        assert http.put(f"{base}/sub/notes.txt", content=b"in s3").status_code == 200
        assert http.get(f"{base}/sub/notes.txt").content == b"in s3"
        assert http.get(f"{broker.url}{API}", params={"path": f"1/{run_id}/artifacts"}).json() == {
            "files": [{"path": "sub", "is_dir": True}]
        }
        key = f"mlflow/1/{run_id}/artifacts/sub/notes.txt"
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"in s3"
        assert http.delete(f"{base}/sub").json() == {}
        assert mlflow_code(http.get(f"{base}/sub/notes.txt")) == (404, "RESOURCE_DOES_NOT_EXIST")
    log = broker.log()
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in log


def test_s3_that_does_not_answer_is_503_not_a_crash(broker_factory: Callable[..., Broker], moto: str) -> None:
    broker, _, _ = s3_broker(broker_factory, moto)
    broker.stop()
    config = yaml.safe_load(broker.config_path.read_text())
    config["artifacts"]["bucket"] = "no-such-bucket"
    broker.config_path.write_text(yaml.safe_dump(config))
    broker.start(env=s3_env())
    run_id = rid()
    add_rows(broker, experiment(1, "default"), run_row(run_id, 1, "default"))
    answer = httpx.put(f"{broker.url}{API}/1/{run_id}/artifacts/a.txt", content=b"x", timeout=30)
    assert mlflow_code(answer) == (503, "TEMPORARILY_UNAVAILABLE")
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in answer.text + broker.log()


class PeakRss:
    """The largest RSS of a process, sampled every 50 ms in a thread while in use."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / MB


def round_trip_200mb(broker: Broker, run_id: str, report: Callable[[str], None]) -> None:
    """Upload 200 MB from a generator and download it, measuring the broker's RSS both ways."""
    size = 200 * MB
    block = os.urandom(MB)
    sent = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for i in range(size // MB):
            chunk = i.to_bytes(8, "big") + block[8:]
            sent.update(chunk)
            yield chunk

    url = f"{broker.url}{API}/1/{run_id}/artifacts/big.bin"
    assert broker.proc is not None
    with httpx.Client(timeout=300) as http:
        # Warm up the code paths so the baseline includes them, not the transfer.
        http.put(url, content=b"warm")
        http.get(url)
        with PeakRss(broker.proc.pid) as upload:
            answer = http.put(url, content=body(), headers={"Content-Length": str(size)})
        assert answer.status_code == 200, answer.text
        received = hashlib.sha256()
        length = 0
        with PeakRss(broker.proc.pid) as download, http.stream("GET", url) as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["content-length"] == str(size)
            for chunk in streamed.iter_bytes():
                received.update(chunk)
                length += len(chunk)
    report(
        f"upload: baseline {upload.baseline / MB:.1f} MB, peak growth {upload.growth_mb:.1f} MB; "
        f"download: peak growth {download.growth_mb:.1f} MB"
    )
    assert length == size and received.hexdigest() == sent.hexdigest()
    assert upload.growth_mb < 60, f"the broker grew {upload.growth_mb:.1f} MB during a 200 MB upload"
    assert download.growth_mb < 60, f"the broker grew {download.growth_mb:.1f} MB during a 200 MB download"


def test_200_mb_streams_both_ways_on_the_folder_backend(
    broker_factory: Callable[..., Broker], capsys: pytest.CaptureFixture[str]
) -> None:
    broker = broker_factory()
    run_id = rid()
    add_rows(broker, experiment(1, "default"), run_row(run_id, 1, "default"))
    with capsys.disabled():
        round_trip_200mb(broker, run_id, lambda line: print(f"\nfolder backend, 200 MB: {line}"))
    stored = broker.data_dir / "artifacts" / "1" / run_id / "artifacts" / "big.bin"
    assert stored.stat().st_size == 200 * MB


def test_200_mb_streams_both_ways_on_s3(
    broker_factory: Callable[..., Broker], moto: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broker, bucket, client = s3_broker(broker_factory, moto)
    run_id = rid()
    add_rows(broker, experiment(1, "default"), run_row(run_id, 1, "default"))
    with capsys.disabled():
        round_trip_200mb(broker, run_id, lambda line: print(f"\nS3 backend, 200 MB: {line}"))
    head = client.head_object(Bucket=bucket, Key=f"mlflow/1/{run_id}/artifacts/big.bin")
    assert head["ContentLength"] == 200 * MB
    assert head["ETag"].strip('"').endswith("-25")  # 25 parts of 8 MB


# -- a replica's own run token, through a real experiment ------------------------------------------

REPLICA_CODE = """
import json, os, urllib.error, urllib.request
base = os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow-artifacts/artifacts"
token = os.environ["MLFLOW_TRACKING_TOKEN"]
exp, run = os.environ["MLFLOW_EXPERIMENT_ID"], os.environ["MLFLOW_RUN_ID"]
open(TOKEN_FILE, "w").write(token)

def call(method, path, body=None, url=base):
    request = urllib.request.Request(url + path, data=body, method=method, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()

results = {
    "put_own": call("PUT", f"/{exp}/{run}/artifacts/out.txt", b"from the replica")[0],
    "get_own": call("GET", f"/{exp}/{run}/artifacts/out.txt")[1],
    "list_own": call("GET", f"?path={exp}/{run}/artifacts")[1],
    "put_other": call("PUT", f"/0/{OTHER}/artifacts/x.txt", b"x"),
    "get_other": call("GET", f"/0/{OTHER}/artifacts/kept.txt")[0],
    "list_experiment": call("GET", f"?path={exp}")[0],
    "jobs_api": call("GET", "/api/v1/experiment", url=os.environ["MLFLOW_TRACKING_URI"])[0],
    "where": f"{exp}/{run}",
}
print("RESULT " + json.dumps(results))
"""


def test_a_replicas_run_token_reaches_its_own_runs_artifacts_only(
    broker_factory: Callable[..., Broker], tmp_path: Path
) -> None:
    broker = broker_factory()
    other = rid()
    add_rows(broker, run_row(other, 0, "default"))
    assert (
        httpx.put(f"{broker.url}{API}/0/{other}/artifacts/kept.txt", content=b"kept", timeout=30).status_code
        == 200
    )
    token_file = tmp_path / "token"
    code = f"TOKEN_FILE = {str(token_file)!r}\nOTHER = {other!r}\n" + REPLICA_CODE
    job = broker.submit(python_spec(code, name="artifact-replica"))
    broker.wait_status(job["experimentId"], "Succeeded", timeout=120)
    lines = [line for log in broker.logs(job["experimentId"]).values() for line in log if "RESULT " in line]
    assert lines, broker.logs(job["experimentId"])
    results = json.loads(lines[-1].split("RESULT ", 1)[1])
    assert results["put_own"] == 200
    assert results["get_own"] == "from the replica"
    assert json.loads(results["list_own"]) == {
        "files": [{"path": "out.txt", "is_dir": False, "file_size": 16}]
    }
    assert (
        results["put_other"][0] == 404
        and json.loads(results["put_other"][1])["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    )
    assert results["get_other"] == 404
    assert results["list_experiment"] == 404
    assert results["jobs_api"] == 403
    # What the replica wrote is the run's, for its owner to read; the token died with the attempt.
    exp, run = results["where"].split("/")
    assert (
        httpx.get(f"{broker.url}{API}/{exp}/{run}/artifacts/out.txt", timeout=30).content
        == b"from the replica"
    )
    dead = httpx.get(
        f"{broker.url}{API}/{exp}/{run}/artifacts/out.txt",
        headers={"Authorization": f"Bearer {token_file.read_text()}"},
        timeout=30,
    )
    assert dead.status_code == 401


# -- the mlflow client's fluent API, once the tracking API is on the branch -------------------------

needs_tracking_api = pytest.mark.skipif(
    importlib.util.find_spec("broker.api.mlflow") is None,
    reason="the MLflow tracking REST API (broker.api.mlflow, branch i16-api) is not on this branch yet",
)


@needs_tracking_api
def test_the_mlflow_client_logs_and_downloads_a_runs_artifacts(
    broker_factory: Callable[..., Broker], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.tracking import fluent

    broker = broker_factory()
    for name, value in {
        "MLFLOW_TRACKING_URI": broker.url,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    mlflow.set_tracking_uri(broker.url)
    fluent._active_experiment_id = None
    source = tmp_path / "outputs"
    (source / "plots").mkdir(parents=True)
    (source / "plots" / "loss.csv").write_text("step,loss\n0,1.0\n")
    (source / "weights.bin").write_bytes(os.urandom(3 * MB))
    single = tmp_path / "summary.txt"
    single.write_text("done\n")
    try:
        experiment_id = mlflow.set_experiment("artifact-client").experiment_id
        with mlflow.start_run() as active:
            run_id = active.info.run_id
            assert active.info.artifact_uri == f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"
            mlflow.log_artifact(str(single))
            mlflow.log_artifacts(str(source), "outputs")
            mlflow.log_text("hello", "notes/hello.txt")
            mlflow.log_dict({"a": 1}, "notes/config.json")
        client = mlflow.MlflowClient()
        assert sorted(f.path for f in client.list_artifacts(run_id)) == ["notes", "outputs", "summary.txt"]
        back = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "back")))
        assert (back / "summary.txt").read_text() == "done\n"
        assert (back / "outputs" / "weights.bin").read_bytes() == (source / "weights.bin").read_bytes()
        assert (back / "outputs" / "plots" / "loss.csv").read_text() == "step,loss\n0,1.0\n"
        assert (back / "notes" / "hello.txt").read_text() == "hello"
        assert mlflow.artifacts.load_dict(f"runs:/{run_id}/notes/config.json") == {"a": 1}
        stored = broker.data_dir / "artifacts" / experiment_id / run_id / "artifacts" / "summary.txt"
        assert stored.read_text() == "done\n"
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        fluent._active_experiment_id = None
