"""``/ui/models``: the registered models the caller may read; a model's page with its versions
(stage, aliases, where each is served), its audited history, and the promote and alias actions.
Every read and change is the model registry's, with the caller's permissions (``promote``,
``edit``): a refused one is a 403 page, a model the caller may not read a 404 page."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from broker.api.registry_caller import caller_of
from broker.api.registry_json import event_json, model_json, version_json, whole_number
from broker.errors import BadRequest
from broker.model_registry.service import ModelRegistry
from broker.model_registry.stages import STAGES, canonical_stage
from broker.model_registry.views import ModelView
from broker.web.pages.posted import form_fields
from broker.web.render import page
from broker.web.routes import PREFIX, html_page

HOME = f"{PREFIX}/models"
#: Models per page of the registry's search while listing them all.
_PAGE = 1000


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.broker.models


def model_path(name: str) -> str:
    """The model's page."""
    return f"{HOME}/{quote(name, safe='')}"


@html_page
async def list_page(request: Request) -> Response:
    registry, caller = _registry(request), caller_of(request)
    models: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        found = await registry.search_models(
            caller, order_by=["name ASC"], max_results=_PAGE, page_token=token
        )
        models.extend(model_json(m) | {"latest": _latest(m)} for m in found.items)
        token = found.next_page_token
        if not token:
            break
    return page(request, "models/list.html", models=models)


def _latest(model: ModelView) -> list[tuple[str, int]]:
    """(stage, version) of the newest version in each stage."""
    return [(v.current_stage, v.version) for v in model.latest_versions]


@html_page
async def detail(request: Request) -> Response:
    registry, caller = _registry(request), caller_of(request)
    name = request.path_params["name"]
    model = await registry.get_model(caller, name)
    versions = [version_json(v) for v in await registry.list_versions(caller, name)]
    versions.reverse()  # newest first
    events = [event_json(e) for e in await registry.history(caller, name)]
    events.reverse()
    return page(
        request,
        "models/detail.html",
        model=model_json(model),
        versions=versions,
        events=events,
        stages=STAGES,
        path=model_path(name),
    )


@html_page
async def promote(request: Request) -> Response:
    fields = await form_fields(request)
    name = request.path_params["name"]
    version = whole_number(request.path_params["version"], "version")
    if not fields.get("stage"):
        raise BadRequest("stage: choose a stage", field="stage")
    await _registry(request).update_version(
        caller_of(request),
        name,
        version,
        stage=canonical_stage(fields["stage"], "stage"),
        archive_existing=fields.get("archive") == "on",
        message=fields.get("message", ""),
    )
    return RedirectResponse(model_path(name), status_code=303)


@html_page
async def set_alias(request: Request) -> Response:
    fields = await form_fields(request)
    name = request.path_params["name"]
    version = whole_number(fields.get("version", ""), "version")
    alias = fields.get("alias", "").strip()
    if not alias:
        raise BadRequest("alias: give the alias a name", field="alias")
    await _registry(request).set_alias(caller_of(request), name, alias, version)
    return RedirectResponse(model_path(name), status_code=303)


@html_page
async def delete_alias(request: Request) -> Response:
    fields = await form_fields(request)
    name = request.path_params["name"]
    await _registry(request).delete_alias(caller_of(request), name, fields.get("alias", ""))
    return RedirectResponse(model_path(name), status_code=303)


routes: list[BaseRoute] = [
    Route(HOME, list_page, methods=["GET"]),
    Route(HOME + "/{name}", detail, methods=["GET"]),
    Route(HOME + "/{name}/versions/{version}/stage", promote, methods=["POST"]),
    Route(HOME + "/{name}/alias", set_alias, methods=["POST"]),
    Route(HOME + "/{name}/alias/delete", delete_alias, methods=["POST"]),
]
