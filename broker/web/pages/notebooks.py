"""``/ui/notebooks``: the caller's notebooks (status, owner, namespace, cluster, idle time), a form
to create one, a notebook's page (open it through the proxy, its history) and its actions (stop,
start, delete). Every read and action is the notebook service's, with the caller's guard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from broker.api.access import guard_of
from broker.errors import ApiError, BadRequest
from broker.notebooks.service import NotebookService
from broker.notebooks.views import notebook_json
from broker.state import now
from broker.web.pages.posted import form_fields
from broker.web.render import page
from broker.web.routes import PREFIX, html_page
from broker.workloads.views import event_json

HOME = f"{PREFIX}/notebooks"


def _service(request: Request) -> NotebookService:
    return request.app.state.broker.notebooks


def idle_for(item: dict[str, Any], at: datetime) -> str:
    """How long a running notebook has been idle (its Jupyter server's last activity), as text."""
    last = item.get("lastActivity")
    if item.get("status") != "running" or not last:
        return ""
    try:
        seconds = max(0, int((at - datetime.fromisoformat(str(last))).total_seconds()))
    except ValueError:
        return ""
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def idle_timeout(request: Request, item: dict[str, Any]) -> float:
    """The seconds of idleness after which the broker stops it (its spec's, else the broker's; 0 = never)."""
    own = (item.get("spec") or {}).get("spec", {}).get("idleTimeoutSeconds")
    return float(own) if own is not None else float(request.app.state.broker.config.notebooks.idle_timeout)


@html_page
async def list_page(request: Request) -> Response:
    rows = await _service(request).list(guard_of(request))
    at = now()
    items = [{**notebook_json(r), "idle": idle_for(notebook_json(r), at)} for r in rows]
    return page(request, "notebooks/list.html", items=items)


@html_page
async def new_page(request: Request) -> Response:
    return await _form_page(request, {}, None)


async def _form_page(
    request: Request, values: dict[str, str], problem: str | None, status: int = 200
) -> Response:
    broker = request.app.state.broker
    guard = guard_of(request)
    environments = [view.name for view in await broker.environments.list(guard)]
    return page(
        request,
        "notebooks/new.html",
        status=status,
        values=values,
        problem=problem,
        teams=broker.policy.teams_of(guard.user),
        environments=environments,
        default_idle=broker.config.notebooks.idle_timeout,
    )


def document_of(fields: dict[str, str]) -> dict[str, Any]:
    """A NotebookSpec from the form's fields (what ``notebook create``'s options build)."""
    meta: dict[str, Any] = {"name": fields.get("name", "").strip()}
    if fields.get("namespace", "").strip():
        meta["namespace"] = fields["namespace"].strip()
    spec: dict[str, Any] = {}
    if fields.get("resources", "").strip():
        spec["resources"] = fields["resources"].strip()
    if fields.get("idle", "").strip():
        try:
            spec["idleTimeoutSeconds"] = float(fields["idle"])
        except ValueError:
            raise BadRequest("idle timeout: must be a number of seconds", field="idle") from None
    document: dict[str, Any] = {"meta": meta, "spec": spec}
    if fields.get("environment", "").strip():
        document["environment"] = {"name": fields["environment"].strip()}
    return document


@html_page
async def create(request: Request) -> Response:
    fields = await form_fields(request)
    try:
        row = await _service(request).create(document_of(fields), guard=guard_of(request))
    except ApiError as exc:
        if exc.code in (400, 409, 422):  # the form again, with what was typed and why it failed
            return await _form_page(request, fields, exc.message, status=exc.code)
        raise
    return RedirectResponse(f"{HOME}/{row.id}", status_code=303)


@html_page
async def detail(request: Request) -> Response:
    service = _service(request)
    guard = guard_of(request)
    row = await service.get(request.path_params["id"], guard)
    item = notebook_json(row)
    events = [event_json(e) for e in await service.events(row.id, guard)]
    events.reverse()  # newest first
    return page(
        request,
        "notebooks/detail.html",
        item=item,
        idle=idle_for(item, now()),
        idle_timeout=idle_timeout(request, item),
        events=events,
    )


def _action(name: str) -> Any:
    async def act(request: Request) -> Response:
        await form_fields(request)
        service = _service(request)
        notebook_id = request.path_params["id"]
        await getattr(service, name)(notebook_id, guard_of(request))
        return RedirectResponse(HOME if name == "delete" else f"{HOME}/{notebook_id}", status_code=303)

    act.__name__ = name
    return html_page(act)


routes: list[BaseRoute] = [
    Route(HOME, list_page, methods=["GET"]),
    Route(HOME, create, methods=["POST"]),
    Route(f"{HOME}/new", new_page, methods=["GET"]),
    Route(HOME + "/{id}", detail, methods=["GET"]),
    *(Route(HOME + "/{id}/" + name, _action(name), methods=["POST"]) for name in ("stop", "start", "delete")),
]
