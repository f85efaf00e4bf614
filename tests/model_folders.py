"""Helpers for the Submarine registry tests: a model folder in the broker's artifact store, made the way
a user makes one (an MLflow run, its files PUT through the artifact API), for Submarine's
``POST /api/v1/model-version?baseDir=``."""

from __future__ import annotations

import json

import httpx

#: The files of a model folder beside its ``description.json``.
MODEL_FILES = {"saved_model.pb": b"\x08\x01graph", "variables/variables.index": b"index-bytes"}


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def model_folder(
    url: str,
    token: str | None = None,
    *,
    experiment: str = "registry-files",
    folder: str = "model",
    description: dict[str, str] | None = None,
) -> str:
    """A run of the MLflow experiment ``experiment`` holding ``<folder>/description.json`` (unless
    ``description`` is ``{}``) and :data:`MODEL_FILES`; returns the folder's artifact path (the
    ``baseDir``)."""
    with httpx.Client(base_url=url, headers=auth(token), timeout=30) as http:
        found = http.get("/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": experiment})
        if found.status_code == 200:
            experiment_id = found.json()["experiment"]["experiment_id"]
        else:
            created = http.post("/api/2.0/mlflow/experiments/create", json={"name": experiment})
            assert created.status_code == 200, created.text
            experiment_id = created.json()["experiment_id"]
        run = http.post("/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id})
        assert run.status_code == 200, run.text
        run_id = run.json()["run"]["info"]["run_id"]
        base_dir = f"{experiment_id}/{run_id}/artifacts/{folder}"
        files = dict(MODEL_FILES)
        described = {"id": "9b1c0ffee", "model_type": "tensorflow"} if description is None else description
        if described:
            files["description.json"] = json.dumps(described).encode()
        for name, content in files.items():
            put = http.put(f"/api/2.0/mlflow-artifacts/artifacts/{base_dir}/{name}", content=content)
            assert put.status_code == 200, put.text
    return base_dir
