"""``/ui/experiments/<id>``: one experiment's page (spec, status and events, placement, logs,
metric charts, params and tags, artifacts) and its actions (stop, delete, register a model from an
artifact folder). Everything is read and changed through the services the REST API calls, with
the caller's guard: another team's experiment is a 404 page here as it is a 404 there.
"""

from __future__ import annotations

import json
import mimetypes
from urllib.parse import quote

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from broker.api.access import guard_of
from broker.api.mlflow_errors import MlflowError
from broker.api.registry_caller import caller_of
from broker.artifacts.store import ArtifactNotFound, InvalidArtifactPath, clean_path
from broker.errors import ApiError, BadRequest, NotFound
from broker.experiments.views import public_spec, replica_names
from broker.state import Status
from broker.web.pages import experiment_data as data
from broker.web.pages.posted import posted_fields
from broker.web.render import HEADERS, page
from broker.web.routes import PREFIX, html_page
from broker.workloads.listing import Filters
from broker.workloads.model import Workload
from broker.workloads.rows import events_of

#: The lines of each replica's log the page shows at first (the last ones; the follow script
#: appends the new ones).
FIRST_LINES = 500
ENDED = (Status.SUCCEEDED.value, Status.FAILED.value, Status.DELETED.value)


async def _row(request: Request, action: str = "read") -> Workload:
    """The experiment of the path the caller may ``action`` (deleted ones too: kept for audit)."""
    broker = request.app.state.broker
    row: Workload = await broker.experiments.get(
        request.path_params["id"], guard_of(request), action, deleted=True
    )
    return row


async def _csrf(request: Request) -> dict[str, str]:
    fields = await posted_fields(request)
    broker = request.app.state.broker
    broker.csrf.require(request, guard_of(request).user, fields.get("csrf"))
    return fields


def _url(row: Workload) -> str:
    return f"{PREFIX}/experiments/{row.id}"


async def _logs(
    request: Request, row: Workload, replica: str | None, tail: int | None
) -> list[tuple[str, list[str]]]:
    broker = request.app.state.broker
    found = await broker.experiments.logs(
        row.id, guard_of(request), replica=replica, tail=tail, deleted=row.status == Status.DELETED.value
    )
    return [(log.replica, list(log.lines)) for log in found]


@html_page
async def show(request: Request) -> Response:
    """The page; ``?part=status`` renders only the status block (what the live update fetches)."""
    broker = request.app.state.broker
    guard = guard_of(request)
    row = await _row(request)
    # The service's events() hides a deleted experiment; its history is kept for audit and the
    # caller may read the record (checked just above), so the same read is made for it here.
    events = await broker.db.run(events_of(row.id))
    if request.query_params.get("part") == "status":
        return page(request, "experiment/status.html", row=row, events=events, ended=row.status in ENDED)
    query = request.query_params
    by_time = query.get("x") == "time"
    runs = await data.tracking_of(broker, row.id)
    compare = data.compare_ids(query.get("compare"), row.id)
    others, compare_notes = await data.compared(broker, compare, guard)
    charts = data.metric_charts(row, runs, others, by_time=by_time)
    current = next((r for r in runs if r.run_id == row.uid), runs[-1] if runs else None)
    folder = query.get("path", "")
    try:
        folder = clean_path(folder, folder=True)
    except InvalidArtifactPath as exc:
        raise BadRequest(f"path: {exc}", field="path") from None
    artifacts = await data.artifact_folder(broker, current, folder) if current is not None else []
    try:
        # Whole logs: the follow script appends from the total count, so the page must know it.
        logs = await _logs(request, row, None, None)
    except ApiError as exc:
        logs, logs_note = [], exc.message
    else:
        logs_note = ""
    spec = public_spec(row.spec)
    # Runs of the same name are the natural comparison: a page of the list the database picks
    # (reading every run of that name in Python cost 200 ms with 100,000 experiments).
    similar = await broker.experiments.browse(guard, Filters(text=row.name), size=50)
    candidates = [c for c in similar.rows if c.name == row.name]
    return page(
        request,
        "experiment/page.html",
        row=row,
        events=events,
        ended=row.status in ENDED,
        spec_yaml=yaml.safe_dump(spec, sort_keys=False, allow_unicode=True),
        spec_json=json.dumps(spec, indent=2),
        decision=row.placement or {},
        replicas=replica_names(row.spec),
        logs=logs,
        first_lines=FIRST_LINES,
        logs_note=logs_note,
        charts=charts,
        by_time=by_time,
        compare=compare,
        compare_notes=compare_notes,
        candidates=[c for c in candidates if c.id != row.id],
        runs=runs,
        current=current,
        folder=folder,
        crumbs=data.breadcrumbs(folder),
        artifacts=artifacts,
        registered=query.get("registered", ""),
    )


@html_page
async def logs(request: Request) -> Response:
    """``{replica: lines}`` of the experiment's logs (the page's follow script polls it)."""
    row = await _row(request)
    replica = request.query_params.get("replica") or None
    found = await _logs(request, row, replica, None)
    return JSONResponse({name: lines for name, lines in found}, headers=HEADERS)


@html_page
async def stop(request: Request) -> Response:
    await _csrf(request)
    row = await _row(request)
    await request.app.state.broker.experiments.stop(row.id, guard_of(request))
    return RedirectResponse(_url(row), status_code=303)


@html_page
async def delete(request: Request) -> Response:
    await _csrf(request)
    row = await _row(request)
    await request.app.state.broker.experiments.delete(row.id, guard_of(request))
    return RedirectResponse(_url(row), status_code=303)


@html_page
async def download(request: Request) -> Response:
    """One file of the current attempt's artifacts, through the artifact gate as the API's
    download (the caller must be able to read that path)."""
    broker = request.app.state.broker
    row = await _row(request)
    runs = await data.tracking_of(broker, row.id)
    current = next((r for r in runs if r.run_id == row.uid), None)
    if current is None:
        raise NotFound(f"experiment {row.id} has no artifacts")
    try:
        relative = clean_path(request.path_params["path"])
        path = f"{data.artifact_root(current)}/{relative}"
        await broker.artifact_gate.check(request, path, write=False)
        blob = await broker.artifacts.open(path)
    except InvalidArtifactPath as exc:
        raise BadRequest(f"path: {exc}", field="path") from None
    except ArtifactNotFound:
        raise NotFound(f"no artifact '{request.path_params['path']}' in experiment {row.id}") from None
    except MlflowError as exc:
        raise ApiError(exc.status, exc.message) from None
    name = relative.rsplit("/", 1)[-1]
    # An ASCII fallback name and the exact one (RFC 6266): a header holds latin-1 only.
    fallback = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    headers = {"Content-Disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"}
    if blob.size is not None:
        headers["Content-Length"] = str(blob.size)
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return StreamingResponse(blob.chunks, media_type=media, headers={**HEADERS, **headers})


@html_page
async def register(request: Request) -> Response:
    """A new version of a registered model from an artifact folder of the current attempt's run
    (the registry copies the files and records the run as the version's lineage)."""
    fields = await _csrf(request)
    row = await _row(request)
    name = fields.get("model", "").strip()
    if not name:
        raise BadRequest("model: the registered model's name is required", field="model")
    folder = fields.get("folder", "").strip().strip("/")
    source = f"runs:/{row.uid}/{folder}" if folder else f"runs:/{row.uid}"
    version = await request.app.state.broker.models.create_version(
        caller_of(request),
        name,
        source=source,
        run_id=row.uid,
        description=fields.get("description", ""),
        create_model=fields.get("create") == "on",
    )
    shown = quote(f"{version.model_name} version {version.version}")
    back = f"{_url(row)}?registered={shown}&path={quote(folder)}#artifacts"
    return RedirectResponse(back, status_code=303)


routes = [
    Route(f"{PREFIX}/experiments/{{id}}", show, methods=["GET"]),
    Route(f"{PREFIX}/experiments/{{id}}/logs", logs, methods=["GET"]),
    Route(f"{PREFIX}/experiments/{{id}}/stop", stop, methods=["POST"]),
    Route(f"{PREFIX}/experiments/{{id}}/delete", delete, methods=["POST"]),
    Route(f"{PREFIX}/experiments/{{id}}/register", register, methods=["POST"]),
    Route(f"{PREFIX}/experiments/{{id}}/artifacts/{{path:path}}", download, methods=["GET"]),
]
