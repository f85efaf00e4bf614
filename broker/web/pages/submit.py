"""``/ui/submit``: submit an experiment from a form, or from a template with its parameters, and
see the placement explain first ("it would go to <cluster> because ...", every cluster's verdict).

The form posts to the same experiment and template services the REST API calls: they alone
validate, so a bad field comes back as their 400 message, shown on the form (naming the field)
with everything typed kept. ``?clone=<id>`` fills the form from an experiment's spec.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from broker.api.access import guard_of
from broker.errors import ApiError
from broker.experiments.views import public_spec
from broker.templates.service import TemplateService
from broker.templates.spec import TemplateSpec, fill, given_params
from broker.web.pages.posted import posted_fields
from broker.web.render import page
from broker.web.routes import PREFIX, html_page
from broker.web.spec_form import FRAMEWORKS, ROLES, document_of, field_errors, values_of
from runtimes.spec import FRAMEWORK_ROLES

#: What a new form starts with.
DEFAULTS = {"framework": "python", "Worker.replicas": "1", "Worker.resources": "cpu=1,memory=512M"}
PARAM = "param."


def _templates(request: Request) -> TemplateService:
    return TemplateService(request.app.state.broker.experiments)


async def _render(
    request: Request,
    values: dict[str, str],
    *,
    status: int = 200,
    error: ApiError | None = None,
    explained: dict[str, Any] | None = None,
    template: TemplateSpec | None = None,
) -> Response:
    broker = request.app.state.broker
    guard = guard_of(request)
    environments = await broker.environments.list(guard)
    templates = await _templates(request).list(guard)
    return page(
        request,
        "submit/page.html",
        status=status,
        values=values,
        error=error.message if error else "",
        errors=field_errors(error.problems) if error else {},
        explained=explained,
        frameworks=FRAMEWORKS,
        roles=ROLES,
        framework_roles={k: list(v) for k, v in FRAMEWORK_ROLES.items()},
        environments=[e.name for e in environments],
        clusters=broker.experiments.cluster_names(),
        templates=templates,
        chosen=template,
    )


async def _posted(request: Request) -> dict[str, str]:
    """The form's fields once its CSRF token is this browser's (403 otherwise)."""
    fields = await posted_fields(request)
    request.app.state.broker.csrf.require(request, guard_of(request).user, fields.pop("csrf", None))
    return fields


@html_page
async def show(request: Request) -> Response:
    """The form: empty, a clone of ``?clone=<id>``, or template ``?template=<name>``'s parameters."""
    query = request.query_params
    values = dict(DEFAULTS)
    template = None
    if query.get("clone"):
        row = await request.app.state.broker.experiments.get(query["clone"], guard_of(request), deleted=True)
        values = values_of(public_spec(row.spec))
    elif query.get("template"):
        template = await _templates(request).get(query["template"], guard_of(request))
        values = {PARAM + p.name: p.value or "" for p in template.parameters}
    return await _render(request, values, template=template)


def _explained(namespace: str, decision: Any, environment: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"namespace": namespace, **decision.to_json()}
    found["environment"] = environment.name if environment is not None else None
    chosen = next((v for v in decision.verdicts if v.cluster == decision.chosen), None)
    found["because"] = (
        ", ".join(f"{name} {score:.2f}" for name, score in chosen.scores.items()) if chosen else ""
    )
    return found


@html_page
async def submit(request: Request) -> Response:
    """Submit the form (``action=explain``: only show where it would go)."""
    fields = await _posted(request)
    broker = request.app.state.broker
    guard = guard_of(request)
    document = document_of(fields)
    try:
        if fields.get("action") == "explain":
            _, namespace, decision, environment = await broker.experiments.check_pinned(document, guard)
            return await _render(request, fields, explained=_explained(namespace, decision, environment))
        row = await broker.experiments.create(document, guard=guard)
    except ApiError as exc:
        if exc.code == 404:
            raise
        return await _render(request, fields, status=exc.code, error=exc)
    return RedirectResponse(f"{PREFIX}/experiments/{row.id}", status_code=303)


@html_page
async def submit_template(request: Request) -> Response:
    """Submit from template ``name`` with the ``param.<name>`` fields (``action=explain``: explain)."""
    fields = await _posted(request)
    broker = request.app.state.broker
    guard = guard_of(request)
    service = _templates(request)
    template = await service.get(request.path_params["name"], guard)
    params = {k.removeprefix(PARAM): v for k, v in fields.items() if k.startswith(PARAM) and v != ""}
    try:
        if fields.get("action") == "explain":
            filled = fill(template, given_params(params))
            _, namespace, decision, environment = await broker.experiments.check_pinned(
                filled.document, guard
            )
            explained = _explained(namespace, decision, environment)
            return await _render(request, fields, explained=explained, template=template)
        row = await service.submit(template.name, {"params": params}, guard)
    except ApiError as exc:
        if exc.code == 404:
            raise
        return await _render(request, fields, status=exc.code, error=exc, template=template)
    return RedirectResponse(f"{PREFIX}/experiments/{row.id}", status_code=303)


routes = [
    Route(f"{PREFIX}/submit", show, methods=["GET"]),
    Route(f"{PREFIX}/submit", submit, methods=["POST"]),
    Route(f"{PREFIX}/submit/template/{{name}}", submit_template, methods=["POST"]),
]
