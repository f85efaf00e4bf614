"""``/api/2.0/mlflow-artifacts``: MLflow's proxied artifact API (upload, download, list, delete).

The MLflow client sends ``mlflow-artifacts:/<path>`` URIs here (../shared/reference/mlflow-rest.md
§4.5, §6), so it never needs storage credentials. Paths under ``registry/<model_key>/<version>``
are the model registry's read-only view of a version's files (what a version's download URI
names): listed and read through :class:`~broker.model_registry.service.ModelRegistry` (read on the
model), never written or deleted. Bodies stream both ways: an upload goes from
the request to the store as it arrives (no body limit applies, nothing buffers it whole) and a
download from the store to the socket. Errors are MLflow-shaped; bad input is a 4xx, never a 5xx
(the client retries those for minutes).
"""

from __future__ import annotations

import functools
import logging
import mimetypes
from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from broker.api.mlflow_errors import MlflowError, mlflow_error
from broker.api.registry_caller import caller_of
from broker.artifacts.gate import ArtifactGate
from broker.artifacts.store import (
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreUnavailable,
    InvalidArtifactPath,
    clean_path,
)
from broker.errors import ApiError
from broker.model_registry.records import REGISTRY_VIEW

log = logging.getLogger(__name__)

#: Where the API is mounted: the client's path, and the web UI's.
PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")

Handler = Callable[[Request], Awaitable[Response]]
_CODES = {
    400: "INVALID_PARAMETER_VALUE",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_ALREADY_EXISTS",
    503: "TEMPORARILY_UNAVAILABLE",
}


def _mlflow_shaped(handler: Handler) -> Handler:
    """Every refusal of ``handler`` as MLflow's ``{error_code, message}``."""

    @functools.wraps(handler)
    async def answer(request: Request) -> Response:
        try:
            return await handler(request)
        except MlflowError as exc:
            return exc.response()
        except ApiError as exc:
            return mlflow_error(_CODES.get(exc.code, "INVALID_PARAMETER_VALUE"), exc.message, exc.code)
        except InvalidArtifactPath as exc:
            return mlflow_error("INVALID_PARAMETER_VALUE", str(exc))
        except ArtifactNotFound as exc:
            return mlflow_error("RESOURCE_DOES_NOT_EXIST", str(exc))
        except ArtifactStoreUnavailable as exc:
            return mlflow_error("TEMPORARILY_UNAVAILABLE", str(exc), 503)
        except ClientDisconnect:
            return mlflow_error("BAD_REQUEST", "the client went away before sending the whole body")

    return answer


def _store(request: Request) -> ArtifactStore:
    return request.app.state.broker.artifacts


def _gate(request: Request) -> ArtifactGate:
    return request.app.state.broker.artifact_gate


def _path(request: Request) -> str:
    return clean_path(request.path_params["path"])


def _registry_view(path: str) -> tuple[int, int, str] | None:
    """``(model_key, version, rest)`` of a path in the registry's view, None for any other path;
    404 for a path under ``registry`` that names no version."""
    head, _, rest = path.partition("/")
    if head != REGISTRY_VIEW:
        return None
    key, _, rest = rest.partition("/")
    version, _, rest = rest.partition("/")
    if not (key.isdigit() and version.isdigit() and len(key) <= 18 and len(version) <= 9):
        raise MlflowError("RESOURCE_DOES_NOT_EXIST", f"no artifact at '{path}'")
    return int(key), int(version), rest


def _immutable(path: str) -> None:
    if _registry_view(path) is not None:
        raise MlflowError("PERMISSION_DENIED", f"registered model versions are immutable: '{path}'")


@_mlflow_shaped
async def upload(request: Request) -> Response:
    """PUT: the raw body is the file; any earlier file at the path is replaced whole."""
    path = _path(request)
    _immutable(path)
    await _gate(request).check(request, path, write=True)
    size = await _store(request).put(path, request.stream())
    log.info("artifact %s stored (%d bytes)", path, size)
    return JSONResponse({})


@_mlflow_shaped
async def download(request: Request) -> Response:
    """GET: the file's bytes, streamed; 404 when there is no file at the path. ``artifacts/``
    with no path is the listing (a client that joins its base URL and ``?path=`` sends that)."""
    if request.path_params["path"] == "":
        return await listing(request)
    path = _path(request)
    view = _registry_view(path)
    if view is not None:
        blob = await request.app.state.broker.models.open_file(caller_of(request), *view)
    else:
        await _gate(request).check(request, path, write=False)
        blob = await _store(request).open(path)
    media_type = mimetypes.guess_type(path.rsplit("/", 1)[-1])[0] or "application/octet-stream"
    headers = {"Content-Length": str(blob.size)} if blob.size is not None else None
    return StreamingResponse(blob.chunks, media_type=media_type, headers=headers)


@_mlflow_shaped
async def listing(request: Request) -> Response:
    """GET ``?path=<dir>``: ``{files: [{path, is_dir, file_size}]}``, or ``{}`` for a missing
    folder or a file (MLflow's answer)."""
    raw = request.query_params.get("path", "")
    path = clean_path(raw, folder=True)
    view = _registry_view(path)
    if view is not None:
        files = await request.app.state.broker.models.list_files(caller_of(request), *view)
    else:
        await _gate(request).check(request, path, write=False)
        files = await _store(request).list(path)
    return JSONResponse({"files": [f.to_json() for f in files]} if files else {})


@_mlflow_shaped
async def delete(request: Request) -> Response:
    """DELETE: the file, or the folder with everything in it; ``{}`` also when nothing was there."""
    path = _path(request)
    _immutable(path)
    await _gate(request).check(request, path, write=True)
    await _store(request).delete(path)
    return JSONResponse({})


def _routes(prefix: str) -> list[BaseRoute]:
    return [
        Route(f"{prefix}/artifacts", listing, methods=["GET"]),
        Route(f"{prefix}/artifacts/{{path:path}}", upload, methods=["PUT"]),
        Route(f"{prefix}/artifacts/{{path:path}}", download, methods=["GET"]),
        Route(f"{prefix}/artifacts/{{path:path}}", delete, methods=["DELETE"]),
    ]


routes: list[BaseRoute] = [route for prefix in PREFIXES for route in _routes(prefix)]
