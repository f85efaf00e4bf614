"""``/ui/environments``: the environments the caller may read, one environment's page (its spec at
the current revision and its builds per cluster), and forms to create, edit and delete one. The
form edits the EnvironmentSpec as a YAML (or JSON) document, as the CLI's spec files do; every
change is the environment service's, with the caller's guard."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import yaml
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from broker.api.access import guard_of
from broker.environments.service import EnvironmentService
from broker.errors import ApiError
from broker.web.pages.posted import document_field, form_fields
from broker.web.render import page
from broker.web.routes import PREFIX, html_page

HOME = f"{PREFIX}/environments"
#: What the create form starts from.
EXAMPLE = {
    "name": "my-env",
    "kernelSpec": {
        "name": "python3",
        "channels": ["defaults"],
        "condaDependencies": [],
        "pipDependencies": [],
    },
}


def _service(request: Request) -> EnvironmentService:
    return request.app.state.broker.environments


def as_yaml(document: Any) -> str:
    """A spec as the page and the form show it (its unset fields left out)."""
    if isinstance(document, dict):
        document = {key: value for key, value in document.items() if value is not None}
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


@html_page
async def list_page(request: Request) -> Response:
    found = await _service(request).list(guard_of(request))
    return page(request, "environments/list.html", environments=found)


@html_page
async def detail(request: Request) -> Response:
    found = await _service(request).get(request.path_params["name"], guard_of(request))
    return page(request, "environments/detail.html", env=found, spec=as_yaml(found.spec))


async def _form(
    request: Request, *, name: str | None, text: str, problem: str | None = None, status: int = 200
) -> Response:
    return page(request, "environments/form.html", status=status, name=name, text=text, problem=problem)


@html_page
async def new_page(request: Request) -> Response:
    return await _form(request, name=None, text=as_yaml(EXAMPLE))


@html_page
async def edit_page(request: Request) -> Response:
    found = await _service(request).get(request.path_params["name"], guard_of(request))
    return await _form(request, name=found.name, text=as_yaml(found.spec))


@html_page
async def create(request: Request) -> Response:
    fields = await form_fields(request)
    try:
        made = await _service(request).create(document_field(fields), guard_of(request))
    except ApiError as exc:
        if exc.code in (400, 409, 422):
            return await _form(
                request, name=None, text=fields.get("document", ""), problem=exc.message, status=exc.code
            )
        raise
    return RedirectResponse(f"{HOME}/{quote(made.name, safe='')}", status_code=303)


@html_page
async def update(request: Request) -> Response:
    fields = await form_fields(request)
    name = request.path_params["name"]
    try:
        await _service(request).update(name, document_field(fields), guard_of(request))
    except ApiError as exc:
        if exc.code in (400, 409, 422):
            return await _form(
                request, name=name, text=fields.get("document", ""), problem=exc.message, status=exc.code
            )
        raise
    return RedirectResponse(f"{HOME}/{quote(name, safe='')}", status_code=303)


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
