"""MLflow's error shape, ``{"error_code": "...", "message": "..."}``, for the MLflow-compatible APIs.

The MLflow client reads ``error_code`` and retries 5xx answers for minutes, so every refusal of
bad input is a 4xx with the code MLflow itself would send (see ../shared/reference/mlflow-rest.md §3).
"""

from __future__ import annotations

from starlette.responses import JSONResponse

#: MLflow's error codes and the HTTP status each goes with.
STATUS_OF = {
    "INVALID_PARAMETER_VALUE": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "BAD_REQUEST": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "FEATURE_DISABLED": 404,
    "INVALID_STATE": 400,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL_ERROR": 500,
    "NOT_IMPLEMENTED": 501,
}


class MlflowError(Exception):
    """A refusal to show the MLflow client as ``{error_code, message}`` with its HTTP status."""

    def __init__(self, error_code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.status = status if status is not None else STATUS_OF.get(error_code, 400)

    def response(self) -> JSONResponse:
        return mlflow_error(self.error_code, self.message, self.status)


def mlflow_error(error_code: str, message: str, status: int | None = None) -> JSONResponse:
    """An MLflow-shaped error response."""
    code = status if status is not None else STATUS_OF.get(error_code, 400)
    return JSONResponse({"error_code": error_code, "message": message}, status_code=code)


def invalid(message: str) -> MlflowError:
    return MlflowError("INVALID_PARAMETER_VALUE", message)


def not_found(message: str) -> MlflowError:
    return MlflowError("RESOURCE_DOES_NOT_EXIST", message)
