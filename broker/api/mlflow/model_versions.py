"""MLflow's model-version endpoints (``model-versions/*``) on the broker's model registry
(:mod:`broker.model_registry`); see ../shared/reference/mlflow-rest.md §4.6.

A version's files are copied into the registry's own area when it is created, so it is READY at
once and its download URI (``mlflow-artifacts:/registry/<model>/<version>``) outlives the run it
came from. Adding a version to a model that does not exist is 404, as in MLflow.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from broker.api.mlflow.registry_common import (
    caller,
    name_of,
    page_json,
    registry,
    registry_endpoint,
    search_options,
    tag_of,
    tags_in,
    version_json,
    version_of,
)
from broker.api.mlflow.request import Args
from broker.tracking.validation import check_key

MAX_SEARCH = 200000


@registry_endpoint
async def create(request: Request, args: Args) -> dict[str, Any]:
    name = name_of(args)
    source = args.required("source")
    version = await registry(request).create_version(
        caller(request),
        name,
        source=source,
        run_id=args.text("run_id") or None,
        model_id=args.text("model_id") or None,
        description=args.text("description", default="") or "",
        tags=tags_in(args),
        run_link=args.text("run_link", default="") or "",
    )
    return {"model_version": version_json(version)}


@registry_endpoint
async def get(request: Request, args: Args) -> dict[str, Any]:
    version = await registry(request).get_version(caller(request), name_of(args), version_of(args))
    return {"model_version": version_json(version)}


@registry_endpoint
async def update(request: Request, args: Args) -> dict[str, Any]:
    """PATCH: the description (MLflow reads a missing one as empty)."""
    name, number = name_of(args), version_of(args)
    description = args.text("description", default="") or ""
    version = await registry(request).update_version(caller(request), name, number, description=description)
    return {"model_version": version_json(version)}


@registry_endpoint
async def transition_stage(request: Request, args: Args) -> dict[str, Any]:
    """Deprecated by MLflow but still called: the stage (MLflow's or Submarine's names)."""
    name, number = name_of(args), version_of(args)
    stage = args.required("stage")
    version = await registry(request).update_version(
        caller(request),
        name,
        number,
        stage=stage,
        archive_existing=args.flag("archive_existing_versions"),
    )
    return {"model_version": version_json(version)}


@registry_endpoint
async def delete(request: Request, args: Args) -> dict[str, Any]:
    await registry(request).delete_version(caller(request), name_of(args), version_of(args))
    return {}


@registry_endpoint
async def search(request: Request, args: Args) -> dict[str, Any]:
    options = search_options(args, 10000, MAX_SEARCH)
    page = await registry(request).search_versions(caller(request), **options)
    return page_json("model_versions", [version_json(v) for v in page.items], page.next_page_token)


@registry_endpoint
async def download_uri(request: Request, args: Args) -> dict[str, Any]:
    """The version's own copy in the registry's area, served by the artifact proxy."""
    version = await registry(request).get_version(caller(request), name_of(args), version_of(args))
    return {"artifact_uri": version.download_uri}


@registry_endpoint
async def set_tag(request: Request, args: Args) -> dict[str, Any]:
    name, number = name_of(args), version_of(args)
    key, value = tag_of(args)
    await registry(request).set_version_tag(caller(request), name, number, key, value)
    return {}


@registry_endpoint
async def delete_tag(request: Request, args: Args) -> dict[str, Any]:
    name, number = name_of(args), version_of(args)
    key = check_key(args.raw("key"), "key")
    await registry(request).delete_version_tag(caller(request), name, number, key)
    return {}
