"""Turn a submitted document into a validated spec, or a 400 that names the field."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from broker.errors import BadRequest
from runtimes.notebook import NotebookSpec
from runtimes.spec import ExperimentSpec, SpecFieldError

M = TypeVar("M", bound=BaseModel)

_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _message(error: dict[str, Any]) -> tuple[str, str]:
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, SpecFieldError):
        return cause.field, cause.reason
    field = _path(tuple(error["loc"])) or "body"
    kind = error["type"]
    if kind == "extra_forbidden":
        return field, "unknown field"
    if kind == "missing":
        return field, "is required"
    return field, error["msg"].removeprefix("Value error, ")


def validate_document(model: type[M], document: dict[str, Any], what: str) -> M:
    """Validate ``document`` as ``model``; a :class:`BadRequest` naming the first bad field.

    ``what`` names the document in the message (``experiment``, ``notebook``). A model with
    ``meta.namespace`` gets it checked as a DNS label.
    """
    try:
        spec = model.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        field, reason = _message(errors[0])
        more = (
            f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
            if len(errors) > 1
            else ""
        )
        raise BadRequest(f"Invalid {what} spec: {field}: {reason}{more}", field=field) from None
    namespace = getattr(getattr(spec, "meta", None), "namespace", None)
    if namespace is not None and not _NAMESPACE.match(namespace):
        raise BadRequest(
            f"Invalid {what} spec: meta.namespace: must be a DNS label (lower-case letters, digits, dashes)",
            field="meta.namespace",
        )
    return spec


def parse_experiment_spec(document: dict[str, Any]) -> ExperimentSpec:
    """Validate a Submarine ExperimentSpec; raises :class:`BadRequest` naming the first bad field."""
    return validate_document(ExperimentSpec, document, "experiment")


def parse_notebook_spec(document: dict[str, Any]) -> NotebookSpec:
    """Validate a Submarine NotebookSpec; raises :class:`BadRequest` naming the first bad field."""
    return validate_document(NotebookSpec, document, "notebook")
