"""The model server every serving replica runs: one registered MLflow model version over HTTP.

``python -m runtimes.model_server --port P --model-uri URL`` downloads the version's files from
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
- ``GET /ping`` and ``GET /health``: 200 once the model is loaded (the port only opens then).
- ``GET /version``: the MLflow version serving.

Environment: ``SUBMARINE_SERVE_TOKEN`` (required) must arrive as ``Authorization: Bearer`` on
every request but ``/ping`` and ``/health`` (the broker's proxy adds it; nobody else knows it);
``SUBMARINE_MODEL_FETCH_TOKEN`` (optional) is sent to the broker as ``Authorization: Bearer``
while downloading. Neither is ever logged.

What the replica's Python needs: ``mlflow`` (or ``mlflow-skinny`` with ``pandas``, ``numpy``),
``starlette`` and ``uvicorn`` (the broker's own dependencies), and whatever the model's flavour
loads with (``scikit-learn`` for an sklearn model). The download uses the standard library only.
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
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("runtimes.model_server")

TOKEN_ENV = "SUBMARINE_SERVE_TOKEN"
FETCH_TOKEN_ENV = "SUBMARINE_MODEL_FETCH_TOKEN"
#: The marker of the artifact API in a model URI: what precedes it (and it) is the API's base.
_ARTIFACTS = "/mlflow-artifacts/artifacts"
#: Paths answered without the token: a load balancer's or the broker's readiness probe.
OPEN_PATHS = frozenset({"/ping", "/health"})
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
                    raise FetchError(f"listing '{path}': the broker's answer is not MLflow's listing") from None
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


def _error(code: str, message: str, status: int) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error_code": code, "message": message}, status_code=status)


def build_app(model: Any, token: str) -> Any:
    """The Starlette app scoring with ``model`` (a loaded pyfunc model), guarded by ``token``."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server
    from mlflow.version import VERSION
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
    from starlette.types import ASGIApp, Receive, Scope, Send

    input_schema = model.metadata.get_input_schema()
    expected = f"Bearer {token}".encode()

    class TokenGuard:
        """401 for any request but the open paths without the server's token."""

        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
                sent = dict(scope["headers"]).get(b"authorization", b"")
                if not hmac.compare_digest(sent, expected):
                    answer = _error("UNAUTHENTICATED", "send 'Authorization: Bearer <the server token>'", 401)
                    await answer(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    async def ping(_request: Request) -> Response:
        return Response("\n", media_type="application/json")

    async def version(_request: Request) -> Response:
        return Response(VERSION, media_type="application/json")

    def score(data: bytes, content_type: str) -> Any:
        try:
            return scoring_server.invocations(data, content_type, model, input_schema)
        except MlflowException as exc:
            status = exc.get_http_status_code()
            # A model's own failure is the caller's input as far as the protocol goes (MLflow says
            # BAD_REQUEST too); only the server's own faults may be 5xx, and those are not here.
            return Response(exc.serialize_as_json(), status_code=status if status < 500 else 400,
                            media_type="application/json")
        except Exception as exc:  # noqa: BLE001 - pandas/numpy refuse odd shapes in many ways
            return _error("BAD_REQUEST", f"the input could not be scored: {type(exc).__name__}: {exc}", 400)

    async def invocations(request: Request) -> Response:
        data = await request.body()
        content_type = request.headers.get("content-type") or "application/json"
        result = await asyncio.to_thread(score, data, content_type)
        if isinstance(result, Response):
            return result
        return Response(result.response, status_code=result.status, media_type=result.mimetype)

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


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtimes.model_server", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--model-uri", required=True, help="the version folder's URL in the broker's artifact API")
    parser.add_argument("--dir", default="model", help="where the files go (default ./model)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Download, load, serve; exit 2 on a bad command line or environment, 3 when the model
    cannot be fetched or loaded (the message says why, on stderr)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = _parse(argv)
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        print(f"model server: {TOKEN_ENV} is not set; refusing to serve without a token", file=sys.stderr)
        return 2
    try:
        base, folder = split_model_uri(args.model_uri)
    except ValueError as exc:
        print(f"model server: {exc}", file=sys.stderr)
        return 2
    target = Path(args.dir)
    client = ArtifactClient(base, os.environ.get(FETCH_TOKEN_ENV) or None)
    try:
        names = client.download(folder, target)
    except FetchError as exc:
        print(f"model server: cannot fetch the model from {base}/{folder}: {exc}", file=sys.stderr)
        return 3
    log.info("fetched %d files of %s into %s", len(names), folder, target.absolute())
    if "MLmodel" not in names:
        print(f"model server: {folder} has no MLmodel file: not an MLflow model", file=sys.stderr)
        return 3
    import mlflow.pyfunc
    import uvicorn

    try:
        model = mlflow.pyfunc.load_model(str(target.absolute()))
    except Exception as exc:  # noqa: BLE001 - any flavour's loader; the replica fails with the reason
        print(f"model server: cannot load the model in {target}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    log.info("loaded %s; serving on %s:%d", folder, args.host, args.port)
    uvicorn.run(build_app(model, token), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
