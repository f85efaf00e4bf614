"""``/ui/templates``: the experiment templates the caller may read (their teams' and the shared
ones), a template's page (parameters, the experiment spec), and forms to create, edit and delete
one. The form edits the ExperimentTemplateSpec as a YAML (or JSON) document, as the CLI's spec
files do; every change is the template service's, with the caller's guard."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from broker.api.access import guard_of
from broker.errors import ApiError
from broker.templates.service import TemplateService
from broker.web.pages.environments import as_yaml
from broker.web.pages.posted import document_field, form_fields
from broker.web.render import page
from broker.web.routes import PREFIX, html_page

HOME = f"{PREFIX}/templates"
#: What the create form starts from: one parameter, used in the experiment's command.
EXAMPLE: dict[str, Any] = {
    "name": "my-template",
    "description": "What it runs",
    "parameters": [
        {"name": "learning_rate", "value": "0.01", "required": "false", "description": "step size"}
    ],
    "experimentSpec": {
        "meta": {
            "name": "from-template",
            "framework": "TensorFlow",
            "cmd": "python train.py --lr {{learning_rate}}",
        },
        "spec": {"Worker": {"replicas": 1, "resources": "cpu=1,memory=1Gi"}},
    },
}


def _service(request: Request) -> TemplateService:
    return TemplateService(request.app.state.broker.experiments)


def editable(spec_json: dict[str, Any]) -> dict[str, Any]:
    """The spec as the form edits it (the broker's ``shared`` kept; null fields left out)."""
    return {k: v for k, v in spec_json.items() if v is not None}


@html_page
async def list_page(request: Request) -> Response:
    found = await _service(request).list(guard_of(request))
    return page(request, "templates/list.html", templates=[spec.to_json() for spec in found])


@html_page
async def detail(request: Request) -> Response:
    spec = await _service(request).get(request.path_params["name"], guard_of(request))
    shown = spec.to_json()
    return page(request, "templates/detail.html", item=shown, experiment=as_yaml(shown["experimentSpec"]))


async def _form(
    request: Request, *, name: str | None, text: str, problem: str | None = None, status: int = 200
) -> Response:
    return page(request, "templates/form.html", status=status, name=name, text=text, problem=problem)


@html_page
async def new_page(request: Request) -> Response:
    return await _form(request, name=None, text=as_yaml(EXAMPLE))


@html_page
async def edit_page(request: Request) -> Response:
    spec = await _service(request).get(request.path_params["name"], guard_of(request))
    return await _form(request, name=spec.name, text=as_yaml(editable(spec.to_json())))


@html_page
async def create(request: Request) -> Response:
    fields = await form_fields(request)
    try:
        _, spec = await _service(request).create(document_field(fields), guard_of(request))
    except ApiError as exc:
        if exc.code in (400, 409, 422):
            return await _form(
                request, name=None, text=fields.get("document", ""), problem=exc.message, status=exc.code
            )
        raise
    return RedirectResponse(f"{HOME}/{quote(spec.name, safe='')}", status_code=303)


@html_page
async def update(request: Request) -> Response:
    fields = await form_fields(request)
    name = request.path_params["name"]
    try:
        _, spec = await _service(request).update(name, document_field(fields), guard_of(request))
    except ApiError as exc:
        if exc.code in (400, 409, 422):
            return await _form(
                request, name=name, text=fields.get("document", ""), problem=exc.message, status=exc.code
            )
        raise
    return RedirectResponse(f"{HOME}/{quote(spec.name, safe='')}", status_code=303)


@html_page
async def delete(request: Request) -> Response:
    await form_fields(request)
    await _service(request).delete(request.path_params["name"], guard_of(request))
    return RedirectResponse(HOME, status_code=303)


routes: list[BaseRoute] = [
    Route(HOME, list_page, methods=["GET"]),
    Route(HOME, create, methods=["POST"]),
    Route(HOME + "/new", new_page, methods=["GET"]),
    Route(HOME + "/{name}", detail, methods=["GET"]),
    Route(HOME + "/{name}", update, methods=["POST"]),
    Route(HOME + "/{name}/edit", edit_page, methods=["GET"]),
    Route(HOME + "/{name}/delete", delete, methods=["POST"]),
]
