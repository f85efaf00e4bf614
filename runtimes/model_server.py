"""The model server every serving replica runs: one registered MLflow model version over HTTP.

``python -m runtimes.model_server --host H --port P --model-uri URL`` (the contract of
:mod:`runtimes.serving`) listens at once and downloads the version's files from
the broker's MLflow artifact API (``URL`` is the version folder's address there, e.g.
``http://broker/api/2.0/mlflow-artifacts/artifacts/registry/3/1``: the folder is listed
recursively with ``GET .../artifacts?path=<folder>`` and each file fetched with ``GET
.../artifacts/<folder>/<file>``) into ``--dir`` (default ``model`` in the working directory),
loads it with ``mlflow.pyfunc.load_model`` and serves MLflow's scoring protocol, so MLflow's
clients work unchanged:

- ``POST /invocations``: JSON with one of ``dataframe_split``, ``dataframe_records``,
  ``instances`` or ``inputs`` (and optional ``params``), or CSV; the answer is
  ``{"predictions": [...]}``. Input is parsed and scored by MLflow's own scoring helpers
  (:func:`mlflow.pyfunc.scoring_server.invocations`); a body they cannot use is a 400 with
  MLflow's ``{"error_code", "message"}``, never a 500.
- ``GET /ping`` and ``GET /health``: 200 once the model is loaded, 503 before; when it cannot be
  fetched or loaded the process exits 3 with the reason on stderr.
- ``GET /version``: the MLflow version serving.

``--model-uri`` may also be a ``file://`` URI or a local path: that folder is loaded as it is.

Environment: ``SUBMARINE_SERVE_TOKEN``, when set, must arrive as ``Authorization: Bearer`` on
every request but ``/ping`` and ``/health`` (the broker's proxy adds it; nobody else knows it);
unset (someone running the server by hand), nothing is checked. ``SUBMARINE_MODEL_FETCH_TOKEN``
(optional) is sent to the broker as ``Authorization: Bearer`` while downloading. Neither is ever
logged.

What the replica's Python needs (the broker runs it with the cluster's ``notebook_python``):
this package (``runtimes``) with ``pydantic``, ``starlette`` and ``uvicorn`` (the broker's own
dependencies), ``mlflow`` (the ``serving`` extra: ``pip install 'submarine-broker[serving]'``;
``mlflow-skinny`` with ``pandas`` and ``numpy`` would do), and whatever the model's flavour loads
with (``scikit-learn`` for an sklearn model). The download uses the standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import posixpath
import shutil
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse

from runtimes.serving import FETCH_TOKEN_ENV, OPEN_PATHS, TOKEN_ENV

log = logging.getLogger("runtimes.model_server")

#: The marker of the artifact API in a model URI: what precedes it (and it) is the API's base.
_ARTIFACTS = "/mlflow-artifacts/artifacts"
_FETCH_TIMEOUT = 60.0
_CHUNK = 1 << 20


class FetchError(Exception):
    """The version's files could not be downloaded; the message says which and why (no secret)."""


# -- download --------------------------------------------------------------------------------


def split_model_uri(uri: str) -> tuple[str, str]:
    """``(api_base, folder)`` of a version folder's artifact-API URL: ``http://h/api/2.0/
    mlflow-artifacts/artifacts`` and ``registry/3/1``. Raises ``ValueError`` for anything else."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"--model-uri must be an http(s) URL of the broker's artifact API, not '{uri}'")
    head, marker, folder = parsed.path.partition(_ARTIFACTS)
    if not marker or (folder and not folder.startswith("/")):
        raise ValueError(f"--model-uri must name a folder under '{_ARTIFACTS}/', not '{uri}'")
    folder = urllib.parse.unquote(folder.strip("/"))
    if not folder:
        raise ValueError(f"--model-uri names no folder under '{_ARTIFACTS}/': '{uri}'")
    base = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, head + marker, "", ""))
    return base, folder


class ArtifactClient:
    """Lists and downloads a folder of the broker's MLflow artifact API (stdlib HTTP only)."""

    def __init__(self, base: str, token: str | None = None, *, timeout: float = _FETCH_TIMEOUT) -> None:
        self.base = base.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout

    def _open(self, url: str, what: str) -> Any:
        request = urllib.request.Request(url, headers=self._headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise FetchError(f"{what}: the broker answered {exc.code} {_mlflow_message(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FetchError(f"{what}: cannot reach {self.base}: {reason}") from None

    def files(self, folder: str) -> Iterator[str]:
        """Every file under ``folder`` (recursively), as paths relative to it."""
        pending = [""]
        while pending:
            sub = pending.pop()
            path = posixpath.join(folder, sub) if sub else folder
            query = urllib.parse.urlencode({"path": path})
            with self._open(f"{self.base}?{query}", f"listing '{path}'") as answer:
                try:
                    entries = json.load(answer).get("files", [])
                except (ValueError, AttributeError):
                    raise FetchError(
                        f"listing '{path}': the broker's answer is not MLflow's listing"
                    ) from None
            for entry in entries:
                # MLflow's server answers base names; some stores answer whole paths.
                name = posixpath.basename(str(entry.get("path", "")).rstrip("/"))
                if name in ("", ".", ".."):
                    continue
                rel = posixpath.join(sub, name) if sub else name
                if entry.get("is_dir"):
                    pending.append(rel)
                else:
                    yield rel

    def download(self, folder: str, target: Path) -> list[str]:
        """Every file of ``folder`` into ``target`` (created); returns their relative paths.

        Files land in a temporary folder beside ``target`` first, so a half-done download never
        looks like a model."""
        target = target.absolute()
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            names = sorted(self.files(folder))
            for rel in names:
                dest = staging / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                url = f"{self.base}/{urllib.parse.quote(posixpath.join(folder, rel))}"
                with self._open(url, f"downloading '{rel}'") as answer, dest.open("wb") as out:
                    shutil.copyfileobj(answer, out, _CHUNK)
            if not names:
                raise FetchError(f"the folder '{folder}' has no files (or the broker does not show it)")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
            return names
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _mlflow_message(exc: urllib.error.HTTPError) -> str:
    """The ``message`` of an MLflow error body, else the HTTP reason."""
    try:
        body = json.loads(exc.read(4096) or b"{}")
        return str(body.get("message") or exc.reason)
    except (ValueError, AttributeError, OSError):
        return str(exc.reason)


# -- the app ---------------------------------------------------------------------------------


class Loaded:
    """The model once loaded (the server listens before: probes answer 503 meanwhile)."""

    def __init__(self) -> None:
        self.model: Any = None
        self.input_schema: Any = None
        self.failure: str | None = None

    def set(self, model: Any) -> None:
        self.input_schema = model.metadata.get_input_schema()
        self.model = model


def _error(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


def _score(loaded: Loaded, data: bytes, content_type: str) -> tuple[bytes | str, int, str]:
    """``(body, status, media type)`` of MLflow's scoring of ``data``; bad input is a 400."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    try:
        result = scoring_server.invocations(  # type: ignore[no-untyped-call]
            data, content_type, loaded.model, loaded.input_schema
        )
    except MlflowException as exc:
        status: int = exc.get_http_status_code()  # type: ignore[no-untyped-call]
        # MLflow calls a model's own failure on the input BAD_REQUEST too; nothing here is the
        # server's fault, so no 5xx (the proxy would take the replica for a broken one).
        body: str = exc.serialize_as_json()  # type: ignore[no-untyped-call]
        return body, status if status < 500 else 400, "application/json"
    except Exception as exc:  # noqa: BLE001 - pandas/numpy refuse odd shapes in many ways
        message = f"the input could not be scored: {type(exc).__name__}: {exc}"
        return json.dumps({"error_code": "BAD_REQUEST", "message": message}), 400, "application/json"
    return result.response, result.status, result.mimetype


def build_app(loaded: Loaded, token: str | None) -> Any:
    """The Starlette app scoring with ``loaded.model``, guarded by ``token`` when there is one."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
    from starlette.types import ASGIApp, Receive, Scope, Send

    expected = f"Bearer {token}".encode() if token else None

    class TokenGuard:
        """401 for any request but the open paths without the server's token."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if expected is not None and scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
                sent = dict(scope["headers"]).get(b"authorization", b"")
                if not hmac.compare_digest(sent, expected):
                    answer = _error("UNAUTHENTICATED", "send 'Authorization: Bearer <the server token>'", 401)
                    await answer(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    def not_loaded() -> Response:
        return _error("TEMPORARILY_UNAVAILABLE", "the model is still loading", 503)

    async def ping(_request: Request) -> Response:
        if loaded.model is None:
            return not_loaded()
        return Response("\n", media_type="application/json")

    async def version(_request: Request) -> Response:
        from mlflow.version import VERSION

        return Response(VERSION, media_type="application/json")

    async def invocations(request: Request) -> Response:
        if loaded.model is None:
            return not_loaded()
        data = await request.body()
        content_type = request.headers.get("content-type") or "application/json"
        body, status, media_type = await asyncio.to_thread(_score, loaded, data, content_type)
        return Response(body, status_code=status, media_type=media_type)

    app = Starlette(
        routes=[
            Route("/ping", ping, methods=["GET"]),
            Route("/health", ping, methods=["GET"]),
            Route("/version", version, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
        ]
    )
    return TokenGuard(app)


# -- main ------------------------------------------------------------------------------------


class LoadFailed(Exception):
    """The model could not be fetched or loaded; the message says why (no secret)."""


def fetch(model_uri: str, target: Path, fetch_token: str | None) -> Path:
    """The local folder of the model ``model_uri`` names: a ``file://`` URI or a path as it is,
    else the broker's version folder downloaded into ``target``."""
    parsed = urllib.parse.urlsplit(model_uri)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "":
        return Path(model_uri)
    try:
        base, folder = split_model_uri(model_uri)
    except ValueError as exc:
        raise LoadFailed(str(exc)) from None
    try:
        names = ArtifactClient(base, fetch_token).download(folder, target)
    except FetchError as exc:
        raise LoadFailed(f"cannot fetch the model from {base}/{folder}: {exc}") from None
    log.info("fetched %d files of %s into %s", len(names), folder, target.absolute())
    return target


def load(model_uri: str, target: Path, fetch_token: str | None) -> Any:
    """Fetch and load the pyfunc model; :class:`LoadFailed` says why not."""
    local = fetch(model_uri, target, fetch_token).absolute()
    if not (local / "MLmodel").is_file():
        raise LoadFailed(f"{model_uri} has no MLmodel file: not an MLflow model")
    try:
        import mlflow.pyfunc

        return mlflow.pyfunc.load_model(str(local))
    except Exception as exc:  # noqa: BLE001 - any flavour's loader; the replica fails with the reason
        raise LoadFailed(f"cannot load the model in {local}: {type(exc).__name__}: {exc}") from None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runtimes.model_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--model-uri",
        required=True,
        help="the version folder's URL in the broker's artifact API, or a local path",
    )
    parser.add_argument("--dir", default="model", help="where downloaded files go (default ./model)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Listen at once, fetch and load in a thread, then score. Exit 3 when the model cannot be
    fetched or loaded (the reason on stderr), 1 when the port cannot be bound."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = _parse(argv)
    token = os.environ.get(TOKEN_ENV) or None
    if token is None:
        log.warning("%s is not set: requests are not checked for a token", TOKEN_ENV)
    loaded = Loaded()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(loaded, token),
            host=args.host,
            port=args.port,
            lifespan="off",
            log_level="warning",
            access_log=False,
        )
    )

    def load_in_background() -> None:
        try:
            loaded.set(load(args.model_uri, Path(args.dir), os.environ.get(FETCH_TOKEN_ENV) or None))
        except LoadFailed as exc:
            loaded.failure = str(exc)
            server.should_exit = True
            return
        name = os.environ.get("SUBMARINE_MODEL_NAME", "the model")
        version = os.environ.get("SUBMARINE_MODEL_VERSION", "?")
        log.info("loaded %s version %s; ready on %s:%d", name, version, args.host, args.port)

    threading.Thread(target=load_in_background, name="load-model", daemon=True).start()
    server.run()
    if loaded.failure is not None:
        print(f"model server: {loaded.failure}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
