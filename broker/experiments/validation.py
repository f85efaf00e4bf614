"""Turn a submitted document into a validated spec, or a 400 that names every bad field."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from broker.config.models import LimitsConfig
from broker.errors import BadRequest, FieldProblem, problems_message
from broker.workloads.kind import Kind
from runtimes.notebook import NotebookSpec
from runtimes.spec import ExperimentSpec, SpecFieldError, cross_field_problems

M = TypeVar("M", bound=BaseModel)


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


def _count(value: object) -> int | None:
    """A replica count as pydantic reads it (an int, a whole float, a string of digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    digits = value.strip() if isinstance(value, str) else ""
    if digits.isascii() and digits.isdigit() and len(digits) <= 18:
        return int(digits)
    return None


def _replica_problems(document: dict[str, Any], limits: LimitsConfig) -> list[FieldProblem]:
    """Roles with more replicas than ``limits.max_replicas_per_role``, and an experiment with more
    than ``limits.max_replicas_per_workload`` in all (a role without ``replicas`` has one)."""
    roles = document.get("spec")
    if not isinstance(roles, dict):
        return []
    problems: list[FieldProblem] = []
    total = 0
    for role, task in roles.items():
        count = _count(task.get("replicas", 1)) if isinstance(task, dict) else None
        if count is None or count < 1:
            continue  # the field check names it
        total += count
        if count > limits.max_replicas_per_role:
            problems.append(
                FieldProblem(
                    f"spec.{role}.replicas",
                    f"at most {limits.max_replicas_per_role} replicas per role "
                    f"(limits.max_replicas_per_role), not {count}",
                )
            )
    if total > limits.max_replicas_per_workload:
        problems.append(
            FieldProblem(
                "spec",
                f"{total} replicas in all; at most {limits.max_replicas_per_workload} per experiment "
                "(limits.max_replicas_per_workload)",
            )
        )
    return problems


def _all_problems(
    model: type[BaseModel], document: dict[str, Any], exc: ValidationError
) -> list[FieldProblem]:
    """Every problem of ``document`` as ``model``, in document order.

    An experiment's checks across fields (roles, commands) are added even when other fields are
    refused, which stops pydantic before it gets to them.
    """
    problems = [p for error in exc.errors(include_url=False) for p in _problems(error)]
    if issubclass(model, ExperimentSpec):
        named = {p.field for p in problems}
        problems += [
            FieldProblem(p.field, p.reason) for p in cross_field_problems(document) if p.field not in named
        ]
    return list(dict.fromkeys(problems))


def validate_document(
    model: type[M],
    document: dict[str, Any],
    what: str,
    *,
    clusters: Collection[str] | None = None,
    limits: LimitsConfig | None = None,
) -> M:
    """Validate ``document`` as ``model``; a :class:`BadRequest` naming every bad field.

    ``what`` names the document in the message (``experiment``, ``notebook``):
    ``Invalid experiment spec: meta.foo: unknown field; spec.Worker.replicas: ...``, with each
    problem also in the error's ``problems`` (the envelope's ``attributes.errors``). With
    ``clusters`` (the registered names), ``meta.placement.cluster`` must be one of them; with
    ``limits``, an experiment's replicas must be within them.
    """
    spec: M | None = None
    try:
        spec = model.model_validate(document)
    except ValidationError as exc:
        problems = _all_problems(model, document, exc)
    else:
        problems = []
    problems += _cluster_problem(document, clusters)
    if limits is not None and issubclass(model, ExperimentSpec):
        problems += [p for p in _replica_problems(document, limits) if p not in problems]
    if spec is None or problems:
        raise BadRequest(problems_message(f"Invalid {what} spec", problems), problems=problems)
    return spec


def parse_experiment_spec(
    document: dict[str, Any],
    *,
    clusters: Collection[str] | None = None,
    limits: LimitsConfig | None = None,
) -> ExperimentSpec:
    """Validate a Submarine ExperimentSpec; raises :class:`BadRequest` naming every bad field
    (replicas past ``limits`` too)."""
    return validate_document(ExperimentSpec, document, Kind.EXPERIMENT, clusters=clusters, limits=limits)


def parse_notebook_spec(document: dict[str, Any], *, clusters: Collection[str] | None = None) -> NotebookSpec:
    """Validate a Submarine NotebookSpec; raises :class:`BadRequest` naming every bad field."""
    return validate_document(NotebookSpec, document, Kind.NOTEBOOK, clusters=clusters)
