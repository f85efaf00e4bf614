"""MLflow's capability endpoint, answered statically, and MLflow-shaped 404s for the rest.

``/api/3.0/mlflow/server-info`` says: no workspaces, no multipart or presigned transfers, artifacts
served by the proxy. Traces (v3 and v2), workspaces, gateway, scorers and the other GenAI endpoints
are not served: the catch-all answers 404 ``ENDPOINT_NOT_FOUND``, on which the client's trace
exporter only warns. ``/version`` is not served either (a 404 makes the OTLP exporter skip spans).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from broker.api.mlflow_errors import mlflow_error

SERVER_INFO = {
    "workspaces_enabled": False,
    "multipart_uploads_enabled": False,
    "multipart_downloads_enabled": False,
    "artifacts_presigned_only": False,
    "artifact_serving_enabled": True,
}


async def server_info(request: Request) -> JSONResponse:
    return JSONResponse(SERVER_INFO)


async def not_served(request: Request) -> JSONResponse:
    return mlflow_error(
        "ENDPOINT_NOT_FOUND", f"This broker does not serve {request.method} {request.url.path[:200]}"
    )
