"""Submarine's experiment asset endpoints: where MLflow and TensorBoard are, and an experiment's
artifacts (``GET /api/v1/experiment/mlflow|tensorboard|artifacts/{id}``).

Submarine 0.8.0 pointed at its own MLflow and TensorBoard services; the broker *is* the MLflow
tracking server (its base URL is ``MLFLOW_TRACKING_URI``), and lists artifacts from its own store.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from broker.api import tensorboard
from broker.api.access import guard_of
from broker.api.envelope import EnvelopeResponse, ok
from broker.tracking.model import TrackingRun

#: The most artifact paths one listing returns (a listing walks the store folder by folder).
MAX_LISTED = 10_000


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def mlflow_info(request: Request) -> EnvelopeResponse:
    """``{available, url}``: the broker serves MLflow's tracking API itself."""
    return ok({"available": True, "url": _base(request)})


async def tensorboard_info(request: Request) -> EnvelopeResponse:
    """``{available, url}``: TensorBoard is available where its package is installed; an
    experiment's is at ``<url><experiment id>/`` (:mod:`broker.api.tensorboard`)."""
    available = tensorboard.installed()
    return ok({"available": available, "url": f"{_base(request)}/tensorboard/" if available else ""})


async def artifacts(request: Request) -> EnvelopeResponse:
    """The artifact paths of the experiment's current attempt, relative to its run's artifact
    root; ``attributes.location`` is that root as the artifact API names it."""
    broker = request.app.state.broker
    experiment_id = request.path_params["id"]
    row = await broker.experiments.get(experiment_id, guard_of(request), deleted=True)
    run = await broker.db.run(lambda s: s.get(TrackingRun, row.uid))
    if run is None:
        return ok([], attributes={"location": None, "runId": None})
    location = run.artifact_uri.removeprefix("mlflow-artifacts:/").strip("/")
    paths: list[str] = []
    folders = [""]
    while folders and len(paths) < MAX_LISTED:
        folder = folders.pop(0)
        for entry in await broker.artifacts.list(f"{location}/{folder}".rstrip("/")):
            relative = f"{folder}/{entry.path}".lstrip("/")
            if entry.is_dir:
                folders.append(relative)
            else:
                paths.append(relative)
    return ok(sorted(paths)[:MAX_LISTED], attributes={"location": location, "runId": run.run_id})


#: Before ``/api/v1/experiment/{id}``, which would take these paths for ids.
routes = [
    Route("/api/v1/experiment/mlflow", mlflow_info, methods=["GET"]),
    Route("/api/v1/experiment/tensorboard", tensorboard_info, methods=["GET"]),
    Route("/api/v1/experiment/artifacts/{id}", artifacts, methods=["GET"]),
]
