"""``/api/v1/model-version``: Submarine's model-version endpoints on the model registry, plus the
broker's ``/{name}/{version}/history``.

``POST ?baseDir=`` registers every file under that prefix of the broker's artifact store (where
``description.json`` says ``id`` and ``model_type``) as the model's next version; the body's
``userId`` is ignored (the caller is the version's user). ``PATCH`` takes the broker's optional
``message`` (recorded in the history) and ``archiveExisting`` (move the model's other versions
in the new stage to Archived) beside Submarine's fields. The tag endpoints take an optional
``value`` like the registered model's.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from broker.api.access import public
from broker.api.body import read_document
from broker.api.envelope import EnvelopeResponse, ok
from broker.api.registered_models import path_name, query_text, registry
from broker.api.registry_caller import caller_of
from broker.api.registry_json import (
    event_json,
    optional_text,
    required_text,
    stored_tag_key,
    tag_list,
    version_json,
    whole_number,
)
from broker.errors import BadRequest
from broker.model_registry.stages import canonical_stage

PREFIX = "/api/v1/model-version"


def path_version(request: Request) -> int:
    return whole_number(request.path_params["version"], "version")


def _flag(document: dict[str, Any], field: str) -> bool:
    value = document.get(field, False)
    if value is None or isinstance(value, bool):
        return bool(value)
    raise BadRequest(f"{field}: must be true or false", field=field)


@public
async def ping(request: Request) -> EnvelopeResponse:
    return ok("Pong")


async def create(request: Request) -> EnvelopeResponse:
    """``?baseDir=`` + ModelVersionEntity: ``name`` (required), ``experimentId``,
    ``description``, ``tags``, ``dataset``."""
    document = await read_document(request, request.app.state.broker.config.max_body_bytes)
    base_dir = query_text(request, "baseDir")
    name = required_text(document, "name")
    await registry(request).create_version_from_base_dir(
        caller_of(request),
        name,
        base_dir=base_dir,
        experiment_id=optional_text(document, "experimentId") or None,
        description=optional_text(document, "description") or "",
        tags=tag_list(document),
        dataset=optional_text(document, "dataset"),
    )
    return ok(None, message="Create a model version instance")


async def list_versions(request: Request) -> EnvelopeResponse:
    """Every version of the model, oldest first."""
    found = await registry(request).list_versions(caller_of(request), path_name(request))
    return ok([version_json(v) for v in found], message="List model versions")


async def get(request: Request) -> EnvelopeResponse:
    version = path_version(request)
    found = await registry(request).get_version(caller_of(request), path_name(request), version)
    return ok(version_json(found), message="Get the model version instance")


async def update(request: Request) -> EnvelopeResponse:
    """``name`` + ``version`` name the version; ``currentStage`` moves it (``promote``),
    ``description`` and ``dataset`` describe it (``edit``)."""
    document = await read_document(request, request.app.state.broker.config.max_body_bytes)
    name = required_text(document, "name")
    if document.get("version") is None:
        raise BadRequest("version: is required", field="version")
    version = whole_number(document["version"], "version")
    raw_stage = document.get("currentStage")
    message = optional_text(document, "message") or ""
    await registry(request).update_version(
        caller_of(request),
        name,
        version,
        description=optional_text(document, "description"),
        dataset=optional_text(document, "dataset"),
        stage=None if raw_stage is None else canonical_stage(raw_stage, "currentStage"),
        archive_existing=_flag(document, "archiveExisting"),
        message=message,
    )
    return ok(None, message="Update the model version instance")


async def delete(request: Request) -> EnvelopeResponse:
    """The version, its aliases and the files no other version shares."""
    version = path_version(request)
    await registry(request).delete_version(caller_of(request), path_name(request), version)
    return ok(None, message="Delete the model version instance")


def _tag_target(request: Request) -> tuple[str, int, str]:
    name, version = query_text(request, "name"), whole_number(query_text(request, "version"), "version")
    return name, version, query_text(request, "tag")


async def add_tag(request: Request) -> EnvelopeResponse:
    """``?name=&version=&tag=`` (and the broker's optional ``value``)."""
    name, version, tag = _tag_target(request)
    value = request.query_params.get("value") or ""
    await registry(request).set_version_tag(caller_of(request), name, version, tag, value)
    return ok(None, message="Create a model version tag")


async def delete_tag(request: Request) -> EnvelopeResponse:
    """``tag`` as the version shows it (``key`` or ``key=value``); 404 when absent."""
    name, version, tag = _tag_target(request)
    service, caller = registry(request), caller_of(request)
    found = await service.get_version(caller, name, version)
    await service.delete_version_tag(caller, name, version, stored_tag_key(found.tags, tag))
    return ok(None, message="Delete a model version tag")


async def history(request: Request) -> EnvelopeResponse:
    """Broker extension: the version's audited changes, oldest first."""
    version = path_version(request)
    events = await registry(request).history(caller_of(request), path_name(request), version)
    return ok([event_json(event) for event in events])


routes = [
    Route(f"{PREFIX}/ping", ping, methods=["GET"]),
    Route(f"{PREFIX}/tag", add_tag, methods=["POST"]),
    Route(f"{PREFIX}/tag", delete_tag, methods=["DELETE"]),
    Route(PREFIX, create, methods=["POST"]),
    Route(PREFIX, update, methods=["PATCH"]),
    Route(f"{PREFIX}/{{name}}/{{version}}/history", history, methods=["GET"]),
    Route(f"{PREFIX}/{{name}}/{{version}}", get, methods=["GET"]),
    Route(f"{PREFIX}/{{name}}/{{version}}", delete, methods=["DELETE"]),
    Route(f"{PREFIX}/{{name}}", list_versions, methods=["GET"]),
]
