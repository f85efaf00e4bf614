"""The model server alone (``python -m runtimes.model_server``): it fetches a version's files
from the broker's MLflow artifact API, loads the pyfunc model and answers MLflow's scoring
protocol, guarded by its token."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtimes.model_server import split_model_uri
from tests.serving_support import FEATURES, ROWS, expected, fake_broker, save_sklearn_model, wait_ready
from tests.support import REPO, free_port, wait_for

TOKEN = "serve-secret-1"
FETCH_TOKEN = "fetch-secret-2"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def start(model_uri: str, cwd: Path, port: int, **env: str) -> subprocess.Popen[str]:
    full = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "runtimes.model_server", "--port", str(port), "--model-uri", model_uri],
        cwd=cwd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    out, _ = proc.communicate()
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sklearn_model(tmp_path_factory.mktemp("saved") / "model")


#: What the probes and a prediction answered while the download was held back.
BEFORE_LOAD: dict[str, int] = {}


def status_of(method: str, url: str, **kwargs: Any) -> int:
    try:
        return httpx.request(method, url, timeout=5, **kwargs).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    workdir = tmp_path_factory.mktemp("replica")
    port = free_port()
    gate = threading.Event()
    with fake_broker(model_dir, token=FETCH_TOKEN, gate=gate) as uri:
        proc = start(uri, workdir, port, SUBMARINE_SERVE_TOKEN=TOKEN, SUBMARINE_MODEL_FETCH_TOKEN=FETCH_TOKEN)
        try:
            url = f"http://127.0.0.1:{port}"
            try:
                wait_for(lambda: status_of("GET", f"{url}/ping"), timeout=60, what="the port to open")
                BEFORE_LOAD["ping"] = status_of("GET", f"{url}/ping")
                BEFORE_LOAD["health"] = status_of("GET", f"{url}/health")
                body = {"dataframe_split": {"columns": FEATURES, "data": ROWS}}
                BEFORE_LOAD["invocations"] = status_of("POST", f"{url}/invocations", json=body, headers=AUTH)
                gate.set()
                wait_ready(url)
            except AssertionError:
                raise AssertionError(f"model server did not start: {stop(proc)}") from None
            yield url, workdir
        finally:
            gate.set()
            out = stop(proc)
    assert TOKEN not in out and FETCH_TOKEN not in out


def test_probes_answer_503_until_the_model_is_loaded(server: tuple[str, Path]) -> None:
    assert BEFORE_LOAD == {"ping": 503, "health": 503, "invocations": 503}


def predict(url: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/invocations", json=body, headers={**AUTH, **headers}, timeout=30)


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": FEATURES, "data": ROWS}},
        {"dataframe_records": [dict(zip(FEATURES, row, strict=True)) for row in ROWS]},
        {"instances": [dict(zip(FEATURES, row, strict=True)) for row in ROWS]},
        {"inputs": {name: [row[i] for row in ROWS] for i, name in enumerate(FEATURES)}},
    ],
    ids=["dataframe_split", "dataframe_records", "instances", "inputs"],
)
def test_every_input_format_predicts(server: tuple[str, Path], body: dict[str, Any]) -> None:
    url, _ = server
    answer = predict(url, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == pytest.approx(expected(ROWS))


def test_csv_is_accepted_as_mlflow_does(server: tuple[str, Path]) -> None:
    url, _ = server
    csv = "a,b\n1.0,2.0\n3.0,5.0\n"
    answer = httpx.post(
        f"{url}/invocations", content=csv, headers={**AUTH, "Content-Type": "text/csv"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == pytest.approx(expected(ROWS))


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[1, 2, 3]",
        b'"a string"',
        b'{"rows": [[1, 2]]}',
        b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}, "instances": [[1, 2]]}',
        b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2, 3]]}}',
        b'{"dataframe_records": [{"x": 1, "y": 2}]}',
        b'{"dataframe_split": {"columns": ["a", "b"], "data": [["one", "two"]]}}',
        b'{"dataframe_split": 5}',
        b'{"inputs": {"a": [1, 2], "b": [1]}}',
        b"\xff\xfe",
    ],
)
def test_malformed_bodies_are_400_with_an_mlflow_error(server: tuple[str, Path], content: bytes) -> None:
    url, _ = server
    answer = httpx.post(
        f"{url}/invocations",
        content=content,
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE")
    assert error["message"]


def test_unsupported_content_type_is_415(server: tuple[str, Path]) -> None:
    url, _ = server
    answer = httpx.post(
        f"{url}/invocations", content=b"x", headers={**AUTH, "Content-Type": "image/png"}, timeout=30
    )
    assert answer.status_code == 415
    assert "content types" in answer.text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_the_token_is_required_except_for_the_probes(
    server: tuple[str, Path], headers: dict[str, str]
) -> None:
    url, _ = server
    body = {"dataframe_split": {"columns": FEATURES, "data": ROWS}}
    answer = httpx.post(f"{url}/invocations", json=body, headers=headers, timeout=30)
    assert answer.status_code == 401
    assert answer.json()["error_code"] == "UNAUTHENTICATED"
    assert TOKEN not in answer.text
    assert httpx.get(f"{url}/version", headers=headers, timeout=5).status_code == 401
    for probe in ("/ping", "/health"):
        assert httpx.get(f"{url}{probe}", timeout=5).status_code == 200


def test_files_land_in_the_working_directory(server: tuple[str, Path], model_dir: Path) -> None:
    _, workdir = server
    fetched = sorted(p.relative_to(workdir / "model") for p in (workdir / "model").rglob("*") if p.is_file())
    saved = sorted(p.relative_to(model_dir) for p in model_dir.rglob("*") if p.is_file())
    assert fetched == saved
    assert Path("MLmodel") in fetched
    assert not [p for p in workdir.iterdir() if p.name != "model"], "no staging folder is left behind"


def test_without_a_serve_token_nothing_is_checked_and_a_local_folder_serves(
    model_dir: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SUBMARINE_SERVE_TOKEN"}
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtimes.model_server",
            "--port",
            str(port),
            "--model-uri",
            model_dir.as_uri(),
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        body = {"dataframe_split": {"columns": FEATURES, "data": ROWS}}
        answer = httpx.post(f"{url}/invocations", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == pytest.approx(expected(ROWS))
    finally:
        out = stop(proc)
    assert "SUBMARINE_SERVE_TOKEN is not set" in out
    assert not (tmp_path / "model").exists(), "a local folder is loaded where it is"


def test_a_refused_download_fails_with_the_brokers_answer_and_no_secret(
    model_dir: Path, tmp_path: Path
) -> None:
    with fake_broker(model_dir, token=FETCH_TOKEN) as uri:
        proc = start(
            uri,
            tmp_path,
            free_port(),
            SUBMARINE_SERVE_TOKEN=TOKEN,
            SUBMARINE_MODEL_FETCH_TOKEN="not-the-token",
        )
        proc.wait(timeout=60)
        out = stop(proc)
    assert proc.returncode == 3
    assert "cannot fetch the model" in out and "401" in out
    assert "not-the-token" not in out and TOKEN not in out
    assert not (tmp_path / "model").exists()


def test_a_folder_without_mlmodel_is_refused(tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "weights.bin").write_bytes(b"123")
    (tmp_path / "run").mkdir()
    with fake_broker(tmp_path / "files") as uri:
        proc = start(uri, tmp_path / "run", free_port(), SUBMARINE_SERVE_TOKEN=TOKEN)
        proc.wait(timeout=60)
        out = stop(proc)
    assert proc.returncode == 3
    assert "no MLmodel file" in out


@pytest.mark.parametrize(
    ("uri", "base", "folder"),
    [
        (
            "http://127.0.0.1:8080/api/2.0/mlflow-artifacts/artifacts/registry/3/1",
            "http://127.0.0.1:8080/api/2.0/mlflow-artifacts/artifacts",
            "registry/3/1",
        ),
        (
            "https://b.example/prefix/api/2.0/mlflow-artifacts/artifacts/registry/3/1/",
            "https://b.example/prefix/api/2.0/mlflow-artifacts/artifacts",
            "registry/3/1",
        ),
    ],
)
def test_model_uri_split(uri: str, base: str, folder: str) -> None:
    assert split_model_uri(uri) == (base, folder)


@pytest.mark.parametrize(
    "uri",
    [
        "mlflow-artifacts:/registry/3/1",
        "http://h/api/2.0/mlflow-artifacts/artifacts",
        "http://h/api/2.0/mlflow-artifacts/artifactsX/y",
        "http://h/other/registry/3/1",
    ],
)
def test_bad_model_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="--model-uri"):
        split_model_uri(uri)
