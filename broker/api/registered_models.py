"""``/api/v1/registered-model``: Submarine's registered-model endpoints on the model registry,
plus the broker's ``/{name}/history`` and ``/{name}/alias``.

Submarine answers a change with a null ``result``; so does the broker. Its own additions: the
tag endpoints take an optional ``value`` (Submarine's tags have none: the SDK never sends it),
an alias is set with ``POST /{name}/alias?alias=&version=`` and removed with ``DELETE
/{name}/alias?alias=``. The fixed paths (``/ping``, ``/tag``) are declared before ``/{name}``,
so for their methods they are never read as a model's name.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from broker.api.access import public
from broker.api.body import read_document
from broker.api.envelope import EnvelopeResponse, ok
from broker.api.registry_caller import caller_of
from broker.api.registry_json import (
    event_json,
    model_json,
    optional_text,
    required_text,
    stored_tag_key,
    tag_list,
    whole_number,
)
from broker.errors import BadRequest
from broker.model_registry.service import ModelRegistry

PREFIX = "/api/v1/registered-model"
#: Models per page while listing them all.
LIST_PAGE = 1000


def registry(request: Request) -> ModelRegistry:
    """The broker's model registry."""
    return request.app.state.broker.models


def query_text(request: Request, field: str) -> str:
    """A required, non-blank query parameter, else a 400 naming it."""
    value = request.query_params.get(field)
    if value is None or not value.strip():
        raise BadRequest(f"{field}: the query parameter is required", field=field)
    return value


def path_name(request: Request) -> str:
    name: str = request.path_params["name"]
    return name


@public
async def ping(request: Request) -> EnvelopeResponse:
    return ok("Pong")


async def create(request: Request) -> EnvelopeResponse:
    """RegisteredModelEntity: ``name`` (required), ``description``, ``tags`` (strings)."""
    document = await read_document(request, request.app.state.broker.config.max_body_bytes)
    name = required_text(document, "name")
    description = optional_text(document, "description") or ""
    tags = [(tag, "") for tag in tag_list(document)]
    await registry(request).create_model(caller_of(request), name, description=description, tags=tags)
    return ok(None, message="Create a registered model instance")


async def list_models(request: Request) -> EnvelopeResponse:
    """Every model the caller may read, by name."""
    service, caller = registry(request), caller_of(request)
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = await service.search_models(
            caller, order_by=["name ASC"], max_results=LIST_PAGE, page_token=token
        )
        found.extend(model_json(model) for model in page.items)
        token = page.next_page_token
        if not token:
            break
    return ok(found, message="List registered models")


async def get(request: Request) -> EnvelopeResponse:
    model = await registry(request).get_model(caller_of(request), path_name(request))
    return ok(model_json(model), message="Get the registered model instance")


async def update(request: Request) -> EnvelopeResponse:
    """A different ``name`` renames the model; ``description`` (when given) replaces its own."""
    document = await read_document(request, request.app.state.broker.config.max_body_bytes)
    name = path_name(request)
    new_name = optional_text(document, "name")
    if new_name is not None and not new_name.strip():
        raise BadRequest("name: must not be blank (leave it out to keep the name)", field="name")
    description = optional_text(document, "description")
    await registry(request).update_model(
        caller_of(request),
        name,
        new_name=new_name if new_name is not None and new_name != name else None,
        description=description,
    )
    return ok(None, message="Update the registered model instance")


async def delete(request: Request) -> EnvelopeResponse:
    """406 while a version is in Production; the model's history stays."""
    await registry(request).delete_model(caller_of(request), path_name(request))
    return ok(None, message="Delete the registered model instance")


async def add_tag(request: Request) -> EnvelopeResponse:
    """``?name=&tag=`` (and the broker's optional ``value``)."""
    name, tag = query_text(request, "name"), query_text(request, "tag")
    value = request.query_params.get("value") or ""
    await registry(request).set_model_tag(caller_of(request), name, tag, value)
    return ok(None, message="Create a registered model tag")


async def delete_tag(request: Request) -> EnvelopeResponse:
    """``?name=&tag=``: ``tag`` as the model shows it (``key`` or ``key=value``); 404 when absent."""
    name, tag = query_text(request, "name"), query_text(request, "tag")
    service, caller = registry(request), caller_of(request)
    model = await service.get_model(caller, name)
    await service.delete_model_tag(caller, name, stored_tag_key(model.tags, tag))
    return ok(None, message="Delete a registered model tag")


async def history(request: Request) -> EnvelopeResponse:
    """Broker extension: every audited change of the model and its versions, oldest first."""
    events = await registry(request).history(caller_of(request), path_name(request))
    return ok([event_json(event) for event in events])


async def set_alias(request: Request) -> EnvelopeResponse:
    """Broker extension: ``?alias=&version=`` points the alias at that version."""
    alias = query_text(request, "alias")
    version = whole_number(query_text(request, "version"), "version")
    await registry(request).set_alias(caller_of(request), path_name(request), alias, version)
    return ok(None, message="Set the alias")


async def delete_alias(request: Request) -> EnvelopeResponse:
    """Broker extension: ``?alias=``."""
    alias = query_text(request, "alias")
    await registry(request).delete_alias(caller_of(request), path_name(request), alias)
    return ok(None, message="Delete the alias")


routes = [
    Route(f"{PREFIX}/ping", ping, methods=["GET"]),
    Route(f"{PREFIX}/tag", add_tag, methods=["POST"]),
    Route(f"{PREFIX}/tag", delete_tag, methods=["DELETE"]),
    Route(PREFIX, create, methods=["POST"]),
    Route(PREFIX, list_models, methods=["GET"]),
    Route(f"{PREFIX}/{{name}}/history", history, methods=["GET"]),
    Route(f"{PREFIX}/{{name}}/alias", set_alias, methods=["POST"]),
    Route(f"{PREFIX}/{{name}}/alias", delete_alias, methods=["DELETE"]),
    Route(f"{PREFIX}/{{name}}", get, methods=["GET"]),
    Route(f"{PREFIX}/{{name}}", update, methods=["PATCH"]),
    Route(f"{PREFIX}/{{name}}", delete, methods=["DELETE"]),
]
