"""``/api/v1/environment``: Submarine's environment endpoints (the name is the key), plus the
broker's ``POST /{name}/prepare?cluster=`` that builds one ahead of time on a cluster.

Answers are Submarine's Environment ``{environmentId, environmentSpec}`` with the broker's
``revision`` and ``hash`` beside them; a single environment also lists its ``builds``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from broker.api.access import guard_of
from broker.api.body import read_document
from broker.api.envelope import EnvelopeResponse, ok
from broker.environments.service import EnvironmentService
from broker.errors import BadRequest

PREFIX = "/api/v1/environment"


def service(request: Request) -> EnvironmentService:
    """The broker's environments."""
    return request.app.state.broker.environments


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    return name


async def create(request: Request) -> EnvelopeResponse:
    """An EnvironmentSpec; 409 when the name is taken."""
    document = await read_document(request, request.app.state.broker.config.max_body_bytes)
    made = await service(request).create(document, guard_of(request))
    return ok(made.to_json(), message="Create an environment")


async def list_environments(request: Request) -> EnvelopeResponse:
    """Every environment the caller may read (Submarine's ``?status=`` is accepted and ignored)."""
    found = await service(request).list(guard_of(request))
    return ok([v.to_json() for v in found])


async def get(request: Request) -> EnvelopeResponse:
    found = await service(request).get(_name(request), guard_of(request))
    return ok(found.to_json(with_builds=True))


async def update(request: Request) -> EnvelopeResponse:
    """The whole EnvironmentSpec; a change of content is a new revision."""
    document = await read_document(request, request.app.state.broker.config.max_body_bytes)
    changed = await service(request).update(_name(request), document, guard_of(request))
    return ok(changed.to_json(), message="Update the environment")


async def delete(request: Request) -> EnvelopeResponse:
    """409 while work that has not ended uses it."""
    gone = await service(request).delete(_name(request), guard_of(request))
    return ok(gone.to_json(), message="Delete the environment")


async def prepare(request: Request) -> EnvelopeResponse:
    """Build the current revision on ``?cluster=`` now; answers the build record when done."""
    cluster = request.query_params.get("cluster")
    if cluster is None or not cluster.strip():
        raise BadRequest("cluster: the query parameter is required", field="cluster")
    built = await service(request).prepare(_name(request), cluster.strip(), guard_of(request))
    return ok(built, message=f"Environment built on {built['cluster']}")


routes = [
    Route(PREFIX, create, methods=["POST"]),
    Route(PREFIX, list_environments, methods=["GET"]),
    Route(PREFIX + "/{name}", get, methods=["GET"]),
    Route(PREFIX + "/{name}", update, methods=["PATCH"]),
    Route(PREFIX + "/{name}", delete, methods=["DELETE"]),
    Route(PREFIX + "/{name}/prepare", prepare, methods=["POST"]),
]
