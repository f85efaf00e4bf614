"""``/api/v1/template``: Submarine's experiment templates, and ``POST /api/v1/experiment/{name}``,
an experiment submitted from the template ``name`` with ``{"name": ..., "params": {...}}``.

Answers are Submarine's ExperimentTemplate ``{experimentTemplateId, experimentTemplateSpec}``: the
id is an object ``{id, serverTimestamp}`` (Submarine's has no string form) on create and patch, and
null on list, get and delete, as Submarine answered from its database. The spec carries the
broker's ``namespace`` and ``shared`` beside Submarine's fields.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from broker.api.access import guard_of
from broker.api.body import read_document
from broker.api.envelope import EnvelopeResponse, ok
from broker.errors import BadRequest
from broker.experiments.views import experiment_json
from broker.templates.model import TemplateRow
from broker.templates.service import TemplateService
from broker.templates.spec import TemplateSpec

PREFIX = "/api/v1/template"


def _service(request: Request) -> TemplateService:
    return TemplateService(request.app.state.broker.experiments)


def template_json(spec: TemplateSpec, row: TemplateRow | None = None) -> dict[str, Any]:
    """Submarine's ExperimentTemplate; ``row`` gives the id (create and patch answers)."""
    ident = None if row is None else {"id": row.id, "serverTimestamp": row.updated_ms}
    return {"experimentTemplateId": ident, "experimentTemplateSpec": spec.to_json()}


async def _document(request: Request) -> dict[str, Any]:
    return await read_document(request, request.app.state.broker.config.max_body_bytes)


async def create(request: Request) -> EnvelopeResponse:
    """ExperimentTemplateSpec: ``name``, ``author``, ``description``, ``parameters``,
    ``experimentSpec`` (with ``{{param}}`` placeholders); broker's ``namespace``, ``shared``."""
    row, spec = await _service(request).create(await _document(request), guard_of(request))
    return ok(template_json(spec, row))


async def list_templates(request: Request) -> EnvelopeResponse:
    """The templates the caller may read: their teams' and the shared ones (``?status`` ignored)."""
    found = await _service(request).list(guard_of(request))
    return ok([template_json(spec) for spec in found])


async def get(request: Request) -> EnvelopeResponse:
    return ok(template_json(await _service(request).get(request.path_params["name"], guard_of(request))))


async def patch(request: Request) -> EnvelopeResponse:
    """Replace the template's spec (the whole ExperimentTemplateSpec, as Submarine's PATCH)."""
    row, spec = await _service(request).update(
        request.path_params["name"], await _document(request), guard_of(request)
    )
    return ok(template_json(spec, row))


async def delete(request: Request) -> EnvelopeResponse:
    spec = await _service(request).delete(request.path_params["name"], guard_of(request))
    return ok(template_json(spec))


async def submit(request: Request) -> EnvelopeResponse:
    """An experiment from the template named in the path (it wins over the body's ``name``), with
    the body's ``params``; answers the Experiment, which records ``template``."""
    body = await _document(request)
    key = request.headers.get("idempotency-key") or None
    if key is not None and (len(key) > 128 or not key.isprintable()):
        raise BadRequest("Idempotency-Key: at most 128 printable characters", field="Idempotency-Key")
    row = await _service(request).submit(
        request.path_params["name"], body, guard_of(request), idempotency_key=key
    )
    return ok(experiment_json(row))


routes = [
    Route(PREFIX, create, methods=["POST"]),
    Route(PREFIX, list_templates, methods=["GET"]),
    Route(PREFIX + "/{name}", get, methods=["GET"]),
    Route(PREFIX + "/{name}", patch, methods=["PATCH"]),
    Route(PREFIX + "/{name}", delete, methods=["DELETE"]),
    # No other POST is /experiment/<one segment>: /experiment/{id}/stop has two.
    Route("/api/v1/experiment/{name}", submit, methods=["POST"]),
]
