"""An ExperimentTemplateSpec as Submarine's API carries it, checked, and filled for a submission.

Fields: ``name``, ``author``, ``description``, ``parameters`` (also read as
``experimentTemplateParamSpec``, Submarine's other name for the list) of ``{name, value,
required, description}``, and ``experimentSpec``; the broker adds ``namespace`` (the team the
template belongs to) and ``shared`` (every team may read it; set by an admin). ``value`` and
``required`` are strings in Submarine's JSON; numbers and booleans are read as their text, as
Jackson did.

Like Submarine, storing a template adds to its parameters ``spec.<Role>.replicas`` and
``spec.<Role>.resourceMap.cpu|memory`` for every role (optional, showing the spec's own values,
which is what a submission that does not give them gets) unless it declares them, and refuses a
placeholder no parameter fills and a parameter nothing uses. The experimentSpec is also
validated as an experiment would be, except the fields a parameter decides: those are checked
when an experiment is submitted from the template.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from broker.config.models import LimitsConfig
from broker.errors import BadRequest, FieldProblem, problems_message
from broker.experiments.validation import parse_experiment_spec
from broker.templates.substitute import render, targets
from runtimes.resources import resource_map

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Submarine's per-role parameters (:func:`with_role_params`).
ROLE_PARAM = re.compile(r"^spec\.([^.]+)\.(?:replicas|resourceMap\.cpu|resourceMap\.memory)$")
FIELDS = frozenset(
    {"name", "author", "description", "parameters", "experimentTemplateParamSpec", "experimentSpec"}
    | {"namespace", "shared"}  # the broker's
)
PARAM_FIELDS = frozenset({"name", "value", "required", "description"})
MAX_TEXT = 10_000
#: What a parameter that lands in a secret field (a git password) is recorded as.
SECRET_MASK = "******"


@dataclass(frozen=True)
class Param:
    """One template parameter; ``required`` ones must be given at submission, the others default
    to ``value`` (None: no default)."""

    name: str
    value: str | None = None
    required: bool = False
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "required": "true" if self.required else "false",
            "description": self.description,
        }


@dataclass(frozen=True)
class TemplateSpec:
    """A checked template: what the API shows as ``experimentTemplateSpec``."""

    name: str
    experiment_spec: dict[str, Any]
    parameters: tuple[Param, ...] = ()
    author: str | None = None
    description: str | None = None
    namespace: str | None = None
    shared: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "author": self.author,
            "description": self.description,
            "parameters": [p.to_json() for p in self.parameters],
            "experimentSpec": self.experiment_spec,
            "namespace": self.namespace,
            "shared": bool(self.shared),
        }

    @property
    def declared(self) -> set[str]:
        return {p.name for p in self.parameters}


@dataclass
class _Problems:
    found: list[FieldProblem] = field(default_factory=list)

    def add(self, where: str, problem: str) -> None:
        self.found.append(FieldProblem(where, problem))


def _text(value: Any, where: str, problems: _Problems, *, limit: int = MAX_TEXT) -> str | None:
    """A string field (numbers and booleans read as their JSON text), or None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        problems.add(where, f"must be a string, not {type(value).__name__}")
        return None
    if len(value) > limit:
        problems.add(where, f"at most {limit} characters")
        return None
    if "\x00" in value:
        problems.add(where, "must not contain a NUL character")
        return None
    return value


def _flag(value: Any, where: str, problems: _Problems) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    problems.add(where, f"must be true or false, not {str(value)[:40]!r}")
    return False


def check_name(value: Any, where: str = "name") -> str:
    """A template name (letters, digits, ``.``, ``_``, ``-``; at most 128), else a 400 naming ``where``."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{where}: a template name is required", field=where)
    if not NAME.match(value):
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise BadRequest(
            f"{where}: '{shown}' is not a template name (letters, digits, '.', '_', '-'; "
            "starting with a letter or digit; at most 128 characters)",
            field=where,
        )
    return value


def _params(raw: Any, key: str, problems: _Problems) -> list[Param]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.add(key, "must be a list of {name, value, required, description}")
        return []
    params: list[Param] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"{key}.{index}"
        if not isinstance(item, dict):
            problems.add(where, "must be an object {name, value, required, description}")
            continue
        for unknown in sorted(set(item) - PARAM_FIELDS):
            problems.add(f"{where}.{unknown}", "unknown field")
        name = _text(item.get("name"), f"{where}.name", problems, limit=400)
        if not name or not name.strip():
            problems.add(f"{where}.name", "is required")
            continue
        if name in seen:
            problems.add(f"{where}.name", f"parameter '{name}' is declared twice")
            continue
        seen.add(name)
        params.append(
            Param(
                name=name,
                value=_text(item.get("value"), f"{where}.value", problems),
                required=_flag(item.get("required"), f"{where}.required", problems),
                description=_text(item.get("description"), f"{where}.description", problems) or "",
            )
        )
    return params


def parse_template(document: Mapping[str, Any]) -> TemplateSpec:
    """Read a template document; a 400 naming every bad field (the name first, on its own)."""
    problems = _Problems()
    for unknown in sorted(set(document) - FIELDS):
        problems.add(unknown, "unknown field")
    name = check_name(document.get("name"))
    key = "parameters" if document.get("parameters") is not None else "experimentTemplateParamSpec"
    params = _params(document.get(key), key, problems)
    experiment = document.get("experimentSpec")
    if not isinstance(experiment, dict):
        problems.add("experimentSpec", "is required: an ExperimentSpec object with {{param}} placeholders")
        experiment = {}
    shared = document.get("shared")
    spec = TemplateSpec(
        name=name,
        experiment_spec=experiment,
        parameters=tuple(params),
        author=_text(document.get("author"), "author", problems, limit=256),
        description=_text(document.get("description"), "description", problems),
        namespace=_text(document.get("namespace"), "namespace", problems, limit=63) or None,
        shared=None if shared is None else _flag(shared, "shared", problems),
    )
    if problems.found:
        raise BadRequest(
            problems_message("Invalid experimentTemplate spec", problems.found), problems=problems.found
        )
    return spec


def with_role_params(spec: TemplateSpec) -> TemplateSpec:
    """``spec`` with Submarine's per-role parameters, ``spec.<Role>.replicas`` and
    ``spec.<Role>.resourceMap.cpu|memory``, optional, their values the spec's own (none where
    that value is itself a placeholder), after the others.

    Stored again from a template read back and edited, such a parameter takes the spec's value
    as it is now (its description is kept), and one of a role the spec no longer has is dropped;
    one the author made required is the author's own and stays as written."""
    roles = spec.experiment_spec.get("spec")
    if not isinstance(roles, dict):
        return spec
    mirrors = {p.name: p for p in spec.parameters if not p.required and ROLE_PARAM.match(p.name)}
    own = [p for p in spec.parameters if p.name not in mirrors]
    declared = {p.name for p in own}
    added: list[Param] = []
    for role, task in roles.items():
        if not isinstance(task, dict):
            continue
        current = resource_map(task.get("resources")) if isinstance(task.get("resources"), str) else {}
        replicas = task.get("replicas", 1)
        values = {
            f"spec.{role}.replicas": None if isinstance(replicas, dict | list) else str(replicas),
            f"spec.{role}.resourceMap.cpu": current.get("cpu"),
            f"spec.{role}.resourceMap.memory": current.get("memory"),
        }
        for name, value in values.items():
            if name not in declared:
                shown = None if value is None or "{{" in value else value
                before = mirrors.get(name)
                described = before.description if before is not None else ""
                added.append(Param(name=name, value=shown, required=False, description=described))
    return replace(spec, parameters=(*own, *added))


def _related(problem_field: str, decided: set[str]) -> bool:
    """Whether a validation problem is about a field a parameter decides (or contains one)."""
    return any(
        problem_field == path or problem_field.startswith(path + ".") or path.startswith(problem_field + ".")
        for path in decided
    )


def check_template(spec: TemplateSpec, limits: LimitsConfig | None = None) -> None:
    """Refuse a template that no parameter values could make a valid experiment (400 naming why)."""
    experiment = spec.experiment_spec
    declared = spec.declared
    rendered = render(experiment, {p.name: p.value for p in spec.parameters}, declared, strict=False)
    if rendered.unmapped:
        unmapped = list(dict.fromkeys(rendered.unmapped))
        problems = []
        for item in unmapped:
            path, _, name = item.rpartition(":")
            reason = f"{{{{{name}}}}} names no declared parameter"
            problems.append(FieldProblem(f"experimentSpec.{path}", reason))
        raise BadRequest(
            problems_message(f"Template contains unmapped value: [{', '.join(unmapped)}]", problems),
            problems=problems,
        )
    changes = targets(experiment)
    unused = [(i, p.name) for i, p in enumerate(spec.parameters) if not changes(p.name)]
    if unused:
        problems = [
            FieldProblem(
                f"parameters.{i}.name",
                f"'{name}' is neither a {{{{placeholder}}}} nor a path (meta.cmd, spec.Worker.replicas) "
                "of experimentSpec",
            )
            for i, name in unused
        ]
        listed = ", ".join(name for _, name in unused)
        raise BadRequest(
            problems_message(f"Parameters contains unused key: [{listed}]", problems), problems=problems
        )
    try:
        parse_experiment_spec(rendered.document, limits=limits)
    except BadRequest as exc:
        problems = [
            FieldProblem(f"experimentSpec.{p.field}", p.problem)
            for p in exc.problems
            if not _related(p.field, rendered.parameterised)
        ]
        if problems:
            message = problems_message("Invalid experimentSpec", problems)
            raise BadRequest(message, problems=problems) from None


@dataclass(frozen=True)
class Filled:
    """A submission's experiment spec and what the experiment records of its template."""

    document: dict[str, Any]
    params: dict[str, str]


def given_params(raw: Any) -> dict[str, str]:
    """A submission's ``params``: names to text (numbers and booleans as their text, null: not
    given), else a 400 naming the bad entry."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadRequest("params: must be an object of parameter names to values", field="params")
    out: dict[str, str] = {}
    problems = _Problems()
    for key, value in raw.items():
        text = _text(value, f"params.{key}", problems)
        if text is not None:
            out[str(key)] = text
    if problems.found:
        raise BadRequest(problems_message("Invalid params", problems.found), problems=problems.found)
    return out


def fill(spec: TemplateSpec, given: Mapping[str, str]) -> Filled:
    """The experiment spec of a submission with ``given`` values, by Submarine's rules.

    400 for a key the template does not declare (``Parameters contains illegal key``), a required
    parameter not given (``Missing required parameter``) and a placeholder left without a value
    (``Template contains unmapped value``), each naming them.
    """
    declared = spec.declared
    illegal = sorted(k for k in given if k not in declared)
    if illegal:
        known = ", ".join(p.name for p in spec.parameters) or "none"
        reason = f"not a parameter of template {spec.name} (its parameters: {known})"
        problems = [FieldProblem(f"params.{k}", reason) for k in illegal]
        raise BadRequest(
            problems_message(f"Parameters contains illegal key: [{', '.join(illegal)}]", problems),
            problems=problems,
        )
    missing = [p.name for p in spec.parameters if p.required and given.get(p.name) is None]
    if missing:
        problems = [FieldProblem(f"params.{k}", f"is required by template {spec.name}") for k in missing]
        raise BadRequest(
            problems_message(f"Missing required parameter: [{', '.join(missing)}]", problems),
            problems=problems,
        )
    # A per-role parameter's default mirrors the spec (and may be stale after an edit of the
    # spec): the spec's own value is the default, so only a given value changes anything.
    values = {
        p.name: given.get(p.name) if ROLE_PARAM.match(p.name) else given.get(p.name, p.value)
        for p in spec.parameters
    }
    rendered = render(spec.experiment_spec, values, declared, strict=True)
    if rendered.unmapped:
        listed = ", ".join(dict.fromkeys(rendered.unmapped))
        raise BadRequest(
            f"Template contains unmapped value: [{listed}]: give the parameter a value in params",
            field="params",
        )
    record = {k: SECRET_MASK if k in rendered.secret else v for k, v in given.items()}
    return Filled(rendered.document, record)
