"""Helpers for the model-serving tests: a small sklearn MLflow model, a stand-in for the broker's
MLflow artifact API that serves it, and waiting for a model server to answer."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from tests.support import serve_in_thread, wait_for

#: The version folder the fake broker serves the model under (the registry view's shape).
FOLDER = "registry/7/1"
API = "/api/2.0/mlflow-artifacts/artifacts"
FEATURES = ["a", "b"]
#: The rows every input format of the tests encodes, and what the model answers for them.
ROWS = [[1.0, 2.0], [3.0, 5.0]]


def save_sklearn_model(path: Path, *, offset: float = 0.0) -> Path:
    """A linear model ``y = a + 2b + offset`` saved with ``mlflow.sklearn.save_model`` in
    ``path``, with a signature naming its columns ``a`` and ``b``."""
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from mlflow.sklearn import save_model
    from sklearn.linear_model import LinearRegression

    x = pd.DataFrame(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 3.0]]), columns=FEATURES)
    y = x["a"] + 2 * x["b"] + offset
    model = LinearRegression().fit(x, y)
    save_model(model, str(path), signature=infer_signature(x, y))
    return path


def expected(rows: list[list[float]], offset: float = 0.0) -> list[float]:
    return [a + 2 * b + offset for a, b in rows]


def fake_artifact_api(
    model_dir: Path, *, token: str | None = None, folder: str = FOLDER, gate: threading.Event | None = None
) -> Starlette:
    """The broker's MLflow artifact API listing/serving ``model_dir`` as ``folder`` (base names in
    listings, as MLflow answers), refusing requests without ``Bearer <token>`` when one is set;
    with a ``gate``, file downloads wait until it is set."""

    def refused(request: Request) -> Response | None:
        if token is not None and request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"error_code": "UNAUTHENTICATED", "message": "no token"}, status_code=401)
        return None

    def local(path: str) -> Path | None:
        if path != folder and not path.startswith(folder + "/"):
            return None
        found = model_dir / path[len(folder) :].lstrip("/")
        return found if found.resolve().is_relative_to(model_dir.resolve()) else None

    async def listing(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        where = local(request.query_params.get("path", "").rstrip("/"))
        if where is None or not where.is_dir():
            return JSONResponse({})
        files: list[dict[str, Any]] = []
        for entry in sorted(where.iterdir()):
            info: dict[str, Any] = {"path": entry.name, "is_dir": entry.is_dir()}
            if entry.is_file():
                info["file_size"] = entry.stat().st_size
            files.append(info)
        return JSONResponse({"files": files})

    async def download(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        if gate is not None:
            await run_in_threadpool(gate.wait, 60)
        where = local(request.path_params["path"])
        if where is None or not where.is_file():
            return JSONResponse(
                {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "nothing"}, status_code=404
            )
        return FileResponse(where)

    return Starlette(
        routes=[
            Route(API, listing, methods=["GET"]),
            Route(f"{API}/{{path:path}}", download, methods=["GET"]),
        ]
    )


@contextlib.contextmanager
def fake_broker(
    model_dir: Path, *, token: str | None = None, gate: threading.Event | None = None
) -> Iterator[str]:
    """:func:`fake_artifact_api` on a free port; yields the model URI of :data:`FOLDER`."""
    with serve_in_thread(fake_artifact_api(model_dir, token=token, gate=gate)) as url:
        yield f"{url}{API}/{FOLDER}"


def wait_ready(url: str, *, timeout: float = 90.0) -> None:
    """Wait until the model server at ``url`` answers ``/ping`` with 200."""

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/ping", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=timeout, what=f"the model server at {url}")


def sklearn_files(tmp: Path, *, requirements: bool = True) -> dict[str, bytes]:
    """The files MLflow saves for a LinearRegression ``y = 2x + 1`` (``MLmodel``,
    ``requirements.txt``, ``python_env.yaml``, ...), without ``requirements.txt`` when asked."""
    import numpy as np
    from mlflow.sklearn import save_model
    from sklearn.linear_model import LinearRegression

    features = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LinearRegression().fit(features, 2 * features[:, 0] + 1)
    save_model(model, str(tmp / "saved"))
    files = {
        str(p.relative_to(tmp / "saved")): p.read_bytes() for p in (tmp / "saved").rglob("*") if p.is_file()
    }
    if not requirements:
        files.pop("requirements.txt")
    return files


def register_files(url: str, token: str | None, name: str, files: dict[str, bytes]) -> int:
    """Version N of registered model ``name`` (created when new) holding ``files``: PUT into a
    run's ``model`` folder through the artifact API, then registered from ``runs:/<run>/model``
    (MLflow's REST calls, as a user without MLflow's client makes them). Returns N."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        experiment = f"files-{name}"
        found = http.get("/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment})
        if found.status_code == 200:
            experiment_id = found.json()["experiment"]["experiment_id"]
        else:
            made = http.post("/api/2.0/mlflow/experiments/create", json={"name": experiment})
            assert made.status_code == 200, made.text
            experiment_id = made.json()["experiment_id"]
        run = http.post("/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id})
        assert run.status_code == 200, run.text
        run_id = run.json()["run"]["info"]["run_id"]
        for path, content in files.items():
            put = http.put(f"{API}/{experiment_id}/{run_id}/artifacts/model/{path}", content=content)
            assert put.status_code == 200, put.text
        model = http.post("/api/2.0/mlflow/registered-models/create", json={"name": name})
        assert model.status_code == 200 or "already exists" in model.text, model.text
        version = http.post(
            "/api/2.0/mlflow/model-versions/create", json={"name": name, "source": f"runs:/{run_id}/model"}
        )
        assert version.status_code == 200, version.text
        return int(version.json()["model_version"]["version"])
