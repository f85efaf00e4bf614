"""Turn a submitted document into a validated spec of its kind, or a 400 that names every bad field."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from broker.errors import BadRequest, FieldProblem, problems_message
from runtimes.spec import SpecFieldError

M = TypeVar("M", bound=BaseModel)
#: Problems of a document that its model does not report.
Check = Callable[[dict[str, Any]], list[FieldProblem]]


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _problems(error: ErrorDetails) -> list[FieldProblem]:
    """The problems one pydantic error stands for (a :class:`SpecFieldError` may carry several)."""
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, SpecFieldError):
        return [FieldProblem(p.field, p.reason) for p in cause.problems]
    field = _path(tuple(error["loc"])) or "body"
    kind = error["type"]
    if kind == "extra_forbidden":
        return [FieldProblem(field, "unknown field")]
    if kind == "missing":
        return [FieldProblem(field, "is required")]
    return [FieldProblem(field, error["msg"].removeprefix("Value error, "))]


def _cluster_problem(document: dict[str, Any], clusters: Collection[str] | None) -> list[FieldProblem]:
    """``meta.placement.cluster`` naming no registered cluster (checked when ``clusters`` is given)."""
    meta = document.get("meta")
    placement = meta.get("placement") if isinstance(meta, dict) else None
    wanted = placement.get("cluster") if isinstance(placement, dict) else None
    if clusters is None or not isinstance(wanted, str) or wanted in clusters:
        return []
    known = ", ".join(sorted(clusters)) or "none"
    return [FieldProblem("meta.placement.cluster", f"unknown cluster '{wanted}' (known: {known})")]


def validate_document(
    model: type[M],
    document: dict[str, Any],
    what: str,
    *,
    clusters: Collection[str] | None = None,
    across: Check | None = None,
    beyond: Check | None = None,
) -> M:
    """Validate ``document`` as ``model``; a :class:`BadRequest` naming every bad field.

    ``what`` names the document in the message (``experiment``, ``notebook``):
    ``Invalid experiment spec: meta.foo: unknown field; spec.Worker.replicas: ...``, with each
    problem also in the error's ``problems`` (the envelope's ``attributes.errors``). With
    ``clusters`` (the registered names), ``meta.placement.cluster`` must be one of them.
    ``across`` finds what the model checks across fields, which pydantic never reaches once a
    field is refused: added then, for the fields not named yet. ``beyond`` finds what the model
    does not check at all (limits of this broker): always added.
    """
    spec: M | None = None
    try:
        spec = model.model_validate(document)
    except ValidationError as exc:
        problems = [p for error in exc.errors(include_url=False) for p in _problems(error)]
        if across is not None:
            named = {p.field for p in problems}
            problems += [p for p in across(document) if p.field not in named]
        problems = list(dict.fromkeys(problems))
    else:
        problems = []
    problems += _cluster_problem(document, clusters)
    if beyond is not None:
        problems += [p for p in beyond(document) if p not in problems]
    if spec is None or problems:
        raise BadRequest(problems_message(f"Invalid {what} spec", problems), problems=problems)
    return spec
