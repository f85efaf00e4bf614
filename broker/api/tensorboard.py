"""``/tensorboard/{experiment_id}/...``: an experiment's TensorBoard, through the broker.

Whoever may ``read`` the experiment (a deleted one too: its files stay for audit) gets a
TensorBoard over the event files its replicas wrote to ``SUBMARINE_TENSORBOARD_LOG_DIR``, which
reached the artifact store under ``<tracking experiment>/<run>/tensorboard/<replica>/`` (every
attempt's run: each is a TensorBoard run ``attempt-<n>/<replica>``). Anyone else gets 404. Needs
the ``tensorboard`` package on the broker's host (``pip install 'submarine-broker[tensorboard]'``).
"""

from __future__ import annotations

import html
import importlib.util
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from broker.api.access import guard_of
from broker.api.envelope import error
from broker.errors import ApiError
from broker.notebooks.proxy import Upstream
from broker.tensorboard.mirror import mirror
from broker.tensorboard.servers import PREFIX
from broker.tracking.model import TrackingRun
from runtimes.tensorboard_sync import ARTIFACT_FOLDER

_METHODS = ["GET", "HEAD", "POST", "OPTIONS"]  # TensorBoard posts some of its queries


def installed() -> bool:
    """Whether the ``tensorboard`` package is importable here."""
    return importlib.util.find_spec("tensorboard") is not None


_Runs = list[tuple[str, int, int | None]]


def _runs(workload_id: str) -> Callable[[Connection], _Runs]:
    """The (run id, tracking experiment id, attempt) of every run of the broker experiment."""

    def query(conn: Connection) -> _Runs:
        rows = conn.execute(
            select(TrackingRun.run_id, TrackingRun.experiment_id, TrackingRun.attempt).where(
                TrackingRun.workload_id == workload_id
            )
        )
        return [(str(r.run_id), int(r.experiment_id), r.attempt) for r in rows]

    return query


async def _board(request: Request) -> Upstream:
    """The experiment's TensorBoard, once the caller may read the experiment."""
    broker = request.app.state.broker
    row = await broker.experiments.get(request.path_params["id"], guard_of(request), deleted=True)
    if not installed():
        raise ApiError(
            503, "TensorBoard is not installed on this broker: pip install 'submarine-broker[tensorboard]'"
        )
    runs = await broker.db.read(_runs(row.id))

    async def fetch(logs: Path) -> None:
        sources = [
            (f"{experiment}/{run}/{ARTIFACT_FOLDER}", logs / f"attempt-{run if attempt is None else attempt}")
            for run, experiment, attempt in runs
        ]
        await mirror(broker.artifacts, sources)

    url, token = await broker.tensorboards.upstream(row.id, fetch)
    return Upstream(url, token)


async def proxy(request: Request) -> Response:
    """Forward the request to the experiment's TensorBoard (path and query unchanged)."""
    try:
        upstream = await _board(request)
    except ApiError as exc:
        return error(exc.code, exc.message)
    label = f"the TensorBoard of {request.path_params['id']}"
    return await request.app.state.broker.proxy.forward_http(request, upstream, label=label)


async def to_board(request: Request) -> Response:
    """``/tensorboard/<id>`` → ``/tensorboard/<id>/`` (TensorBoard's page)."""
    return RedirectResponse(request.url.path + "/", status_code=307)


async def index(request: Request) -> Response:
    """``/tensorboard/``: a page linking the TensorBoard of each experiment the caller may read."""
    if not installed():
        return error(503, "TensorBoard is not installed on this broker")
    rows = await request.app.state.broker.experiments.readable(guard_of(request))
    items = "".join(
        f'<li><a href="{html.escape(r.id)}/">{html.escape(r.name)}</a> ({html.escape(r.id)}, {r.status})</li>'
        for r in rows
    )
    return HTMLResponse(f"<!doctype html><title>TensorBoard</title><h1>TensorBoard</h1><ul>{items}</ul>")


routes = [
    Route(f"{PREFIX}/", index, methods=["GET"]),
    Route(f"{PREFIX}/{{id}}", to_board, methods=["GET"]),
    Route(f"{PREFIX}/{{id}}/{{path:path}}", proxy, methods=_METHODS),
]
