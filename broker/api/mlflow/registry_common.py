"""What the MLflow registry handlers share: the registry and the caller of a request, reading
names, versions and tags, MLflow's RegisteredModel and ModelVersion JSON, and the translation of
the registry's errors into MLflow's codes (../shared/reference/mlflow-rest.md §3, §4.6)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request

from broker.api.mlflow.common import page_size
from broker.api.mlflow.request import Args, Handler, endpoint
from broker.api.mlflow_errors import MlflowError, invalid
from broker.api.registry_caller import caller_of
from broker.artifacts.store import ArtifactNotFound, ArtifactStoreUnavailable, InvalidArtifactPath
from broker.errors import ApiError
from broker.model_registry import checks
from broker.model_registry.service import Caller, ModelRegistry
from broker.model_registry.views import ModelView, VersionView
from broker.tracking.validation import check_key, check_value

#: The MLflow code (and HTTP status) of each status the registry raises. The client reads a
#: duplicate as RESOURCE_ALREADY_EXISTS with HTTP 400 (that is how ``register_model`` goes on to
#: add a version), and an illegal state (deleting a model while a version is in Production) as
#: INVALID_STATE, also 400.
_CODES: dict[int, tuple[str, int]] = {
    400: ("INVALID_PARAMETER_VALUE", 400),
    401: ("UNAUTHENTICATED", 401),
    403: ("PERMISSION_DENIED", 403),
    404: ("RESOURCE_DOES_NOT_EXIST", 404),
    406: ("INVALID_STATE", 400),
    409: ("RESOURCE_ALREADY_EXISTS", 400),
    413: ("INVALID_PARAMETER_VALUE", 400),
    429: ("RESOURCE_EXHAUSTED", 429),
    503: ("TEMPORARILY_UNAVAILABLE", 503),
}


def as_mlflow(exc: ApiError) -> MlflowError:
    """``exc`` in MLflow's terms: a 4xx stays a 4xx (another 4xx is INVALID_PARAMETER_VALUE)."""
    code, status = _CODES.get(
        exc.code, ("INVALID_PARAMETER_VALUE", 400) if exc.code < 500 else ("INTERNAL_ERROR", 500)
    )
    return MlflowError(code, exc.message, status)


def registry_endpoint(handler: Callable[[Request, Args], Awaitable[Any]]) -> Handler:
    """:func:`~broker.api.mlflow.request.endpoint` for a registry handler: the registry's
    :class:`ApiError` and the artifact store's errors become MLflow's error answer too."""

    @functools.wraps(handler)
    async def mapped(request: Request, args: Args) -> Any:
        try:
            return await handler(request, args)
        except ApiError as exc:
            raise as_mlflow(exc) from None
        except InvalidArtifactPath as exc:
            raise invalid(str(exc)) from None
        except ArtifactNotFound as exc:
            raise MlflowError("RESOURCE_DOES_NOT_EXIST", str(exc)) from None
        except ArtifactStoreUnavailable as exc:
            raise MlflowError("TEMPORARILY_UNAVAILABLE", str(exc), 503) from None

    return endpoint(mapped)


def registry(request: Request) -> ModelRegistry:
    models: ModelRegistry = request.app.state.broker.models
    return models


def caller(request: Request) -> Caller:
    return caller_of(request)


# arguments ------------------------------------------------------------------------------------
def name_of(args: Args, field: str = "name") -> str:
    """A required model name (its rules are the registry's: it names the field when refusing)."""
    return args.required(field)


def version_of(args: Args, field: str = "version") -> int:
    """A version number, sent as a string (or a number): ``"3"``."""
    raw = args.raw(field)
    if raw is None or raw == "":
        raise invalid(f"Missing value for required parameter '{field}'")
    return checks.version(raw, field)


def tag_value(value: Any, field: str) -> str:
    """A registry tag's value: a missing value is ``""`` (as MLflow reads it); too long is refused."""
    return check_value("" if value is None else value, field, checks.MAX_TAG_VALUE, truncate=False)


def tags_in(args: Args, field: str = "tags") -> list[tuple[str, str]]:
    """``[{key, value}]`` of a create request, checked."""
    return [
        (check_key(item.get("key"), f"{field}[{i}].key"), tag_value(item.get("value"), f"{field}[{i}].value"))
        for i, item in enumerate(args.objects(field))
    ]


def tag_of(args: Args) -> tuple[str, str]:
    """The ``key`` and ``value`` of a set-tag request."""
    return check_key(args.raw("key"), "key"), tag_value(args.raw("value"), "value")


def search_options(args: Args, default: int, cap: int) -> dict[str, Any]:
    """A search's ``filter``, repeated ``order_by``, ``max_results`` (``default``, at most
    ``cap``) and ``page_token``, as the registry's search methods take them."""
    return {
        "filter": args.text("filter") or None,
        "order_by": args.texts("order_by"),
        "max_results": page_size(args, "max_results", default, cap),
        "page_token": args.text("page_token") or None,
    }


# answers --------------------------------------------------------------------------------------
def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in sorted(tags.items())]


def version_json(version: VersionView) -> dict[str, Any]:
    """MLflow's ModelVersion: ``version`` as a string, ``status`` READY (a missing status would
    make the client poll for minutes), the stored stage as ``current_stage``."""
    answer: dict[str, Any] = {
        "name": version.model_name,
        "version": str(version.version),
        "creation_timestamp": version.creation_timestamp,
        "last_updated_timestamp": version.last_updated_timestamp,
        "user_id": version.user_id,
        "current_stage": version.current_stage,
        "description": version.description,
        "source": version.source,
        "status": version.status or "READY",
        "tags": _tags(version.tags),
        "run_link": version.run_link,
        "aliases": sorted(version.aliases),
    }
    if version.lineage.run_id:
        answer["run_id"] = version.lineage.run_id
    if version.logged_model_id:
        answer["model_id"] = version.logged_model_id
    if version.served_on:
        # A broker field (MLflow's client ignores fields it does not know): where it is served.
        answer["served_on"] = version.served_on
    return answer


def page_json(field: str, items: list[dict[str, Any]], next_page_token: str | None) -> dict[str, Any]:
    """One page of a search: ``{<field>: [...], next_page_token}`` (no token on the last page)."""
    answer: dict[str, Any] = {field: items}
    if next_page_token:
        answer["next_page_token"] = next_page_token
    return answer


def model_json(model: ModelView) -> dict[str, Any]:
    """MLflow's RegisteredModel, with ``latest_versions`` and ``aliases`` as ``[{alias, version}]``."""
    return {
        "name": model.name,
        "creation_timestamp": model.creation_timestamp,
        "last_updated_timestamp": model.last_updated_timestamp,
        "user_id": model.user_id,
        "description": model.description,
        "latest_versions": [version_json(v) for v in model.latest_versions],
        "tags": _tags(model.tags),
        "aliases": [{"alias": alias, "version": str(v)} for alias, v in sorted(model.aliases.items())],
    }
