"""Experiment specs: validated as every kind's (:mod:`broker.workloads.validation`), plus their
checks across fields and this broker's replica limits."""

from __future__ import annotations

from collections.abc import Collection
from functools import partial
from typing import Any

from broker.config.models import LimitsConfig
from broker.errors import FieldProblem
from broker.workloads.kind import Kind
from broker.workloads.validation import validate_document
from runtimes.spec import ExperimentSpec, cross_field_problems


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


def _across(document: dict[str, Any]) -> list[FieldProblem]:
    """An experiment's checks across fields (roles, commands)."""
    return [FieldProblem(p.field, p.reason) for p in cross_field_problems(document)]


def parse_experiment_spec(
    document: dict[str, Any],
    *,
    clusters: Collection[str] | None = None,
    limits: LimitsConfig | None = None,
) -> ExperimentSpec:
    """Validate a Submarine ExperimentSpec; raises :class:`BadRequest` naming every bad field
    (replicas past ``limits`` too)."""
    return validate_document(
        ExperimentSpec,
        document,
        Kind.EXPERIMENT,
        clusters=clusters,
        across=_across,
        beyond=partial(_replica_problems, limits=limits) if limits is not None else None,
    )
