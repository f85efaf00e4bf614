"""MLflow's registered-model endpoints (``registered-models/*``, aliases included) on the broker's
model registry (:mod:`broker.model_registry`); see ../shared/reference/mlflow-rest.md §4.6.

A replica's run token may read models, create one (in its run's namespace) and add versions of
its own run: what ``log_model(..., registered_model_name=...)`` does; anything else is 403.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from broker.api.mlflow.registry_common import (
    caller,
    model_json,
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

MAX_SEARCH = 1000


@registry_endpoint
async def create(request: Request, args: Args) -> dict[str, Any]:
    name = name_of(args)
    tags = tags_in(args)
    description = args.text("description", default="") or ""
    model = await registry(request).create_model(caller(request), name, description=description, tags=tags)
    return {"registered_model": model_json(model)}


@registry_endpoint
async def get(request: Request, args: Args) -> dict[str, Any]:
    model = await registry(request).get_model(caller(request), name_of(args))
    return {"registered_model": model_json(model)}


@registry_endpoint
async def update(request: Request, args: Args) -> dict[str, Any]:
    """PATCH: the description (MLflow reads a missing one as empty)."""
    name = name_of(args)
    description = args.text("description", default="") or ""
    model = await registry(request).update_model(caller(request), name, description=description)
    return {"registered_model": model_json(model)}


@registry_endpoint
async def rename(request: Request, args: Args) -> dict[str, Any]:
    name = name_of(args)
    new_name = name_of(args, "new_name")
    model = await registry(request).update_model(caller(request), name, new_name=new_name)
    return {"registered_model": model_json(model)}


@registry_endpoint
async def delete(request: Request, args: Args) -> dict[str, Any]:
    await registry(request).delete_model(caller(request), name_of(args))
    return {}


@registry_endpoint
async def search(request: Request, args: Args) -> dict[str, Any]:
    options = search_options(args, 100, MAX_SEARCH)
    page = await registry(request).search_models(caller(request), **options)
    return page_json("registered_models", [model_json(m) for m in page.items], page.next_page_token)


@registry_endpoint
async def latest_versions(request: Request, args: Args) -> dict[str, Any]:
    """POST (and GET): the newest version per stage asked, every stage when none is."""
    name = name_of(args)
    found = await registry(request).latest_versions(caller(request), name, args.texts("stages"))
    return {"model_versions": [version_json(v) for v in found]}


@registry_endpoint
async def set_tag(request: Request, args: Args) -> dict[str, Any]:
    name = name_of(args)
    key, value = tag_of(args)
    await registry(request).set_model_tag(caller(request), name, key, value)
    return {}


@registry_endpoint
async def delete_tag(request: Request, args: Args) -> dict[str, Any]:
    name = name_of(args)
    key = check_key(args.raw("key"), "key")
    await registry(request).delete_model_tag(caller(request), name, key)
    return {}


# aliases --------------------------------------------------------------------------------------
@registry_endpoint
async def set_alias(request: Request, args: Args) -> dict[str, Any]:
    name = name_of(args)
    alias = args.required("alias")
    version = version_of(args)
    await registry(request).set_alias(caller(request), name, alias, version)
    return {}


@registry_endpoint
async def delete_alias(request: Request, args: Args) -> dict[str, Any]:
    name = name_of(args)
    alias = args.required("alias")
    await registry(request).delete_alias(caller(request), name, alias)
    return {}


@registry_endpoint
async def get_by_alias(request: Request, args: Args) -> dict[str, Any]:
    name = name_of(args)
    alias = args.required("alias")
    version = await registry(request).version_by_alias(caller(request), name, alias)
    return {"model_version": version_json(version)}
