"""Filling a template's experimentSpec with parameter values, by Submarine's rules.

The spec is read as flattened paths (``meta.cmd``, ``spec.Worker.replicas``, ``meta.tags[0]``).
A parameter named exactly like a path replaces that value; otherwise every ``{{x}}`` in a text
value is replaced by the parameter named ``<path>:x``, else by the one named ``x``. A parameter
``spec.<Role>.resourceMap.<key>`` (Submarine adds ``cpu`` and ``memory`` ones to every template)
changes that one entry of the role's ``resources`` string and keeps the others: unlike Submarine,
which rebuilt the string from cpu and memory, a GPU request survives submission.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
RESOURCE_PARAM = re.compile(r"^spec\.([^.]+)\.resourceMap\.(.+)$")

Path = tuple[str | int, ...]


def path_text(path: Path) -> str:
    """``("spec", "Worker", "replicas")`` as ``spec.Worker.replicas``; list items as ``[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def dotted(path: Path) -> str:
    """The path as validation errors name fields (``meta.tags.0``)."""
    return ".".join(str(part) for part in path)


def leaves(document: Any, prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every leaf value of ``document`` with its path (an empty dict or list is a leaf too)."""
    if isinstance(document, dict) and document:
        for key, value in document.items():
            yield from leaves(value, (*prefix, str(key)))
    elif isinstance(document, list) and document:
        for index, value in enumerate(document):
            yield from leaves(value, (*prefix, index))
    elif prefix:
        yield prefix, document


def _set(document: Any, path: Path, value: Any) -> None:
    target = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def placeholders(text: str) -> list[str]:
    """The parameter names of the ``{{x}}`` placeholders in ``text``, stripped, in order."""
    return [name.strip() for name in PLACEHOLDER.findall(text)]


def _typed(original: Any, value: str) -> Any:
    """A parameter's text as the type of the value it replaces (``2`` for a number of replicas)."""
    if isinstance(original, bool):
        lowered = value.strip().lower()
        return lowered == "true" if lowered in ("true", "false") else value
    if isinstance(original, int):
        digits = value.strip()
        return int(digits) if digits.lstrip("-").isdigit() and len(digits) <= 18 else value
    if isinstance(original, float):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _with_resource(resources: Any, key: str, value: str) -> str:
    """``resources`` with ``key`` set to ``value``; the other entries (a GPU) kept as they are."""
    parts = [p.strip() for p in resources.split(",")] if isinstance(resources, str) else []
    parts = [p for p in parts if p]
    for index, part in enumerate(parts):
        if part.partition("=")[0].strip() == key:
            parts[index] = f"{key}={value}"
            break
    else:
        parts.append(f"{key}={value}")
    return ",".join(parts)


@dataclass
class Rendered:
    """A filled spec, what it used, and what it could not fill."""

    document: dict[str, Any]
    #: Parameter names that changed something.
    used: set[str] = field(default_factory=set)
    #: ``<path>:<name>`` of each placeholder no parameter value filled (Submarine's wording).
    unmapped: list[str] = field(default_factory=list)
    #: Paths (as validation names fields) whose value a parameter decides.
    parameterised: set[str] = field(default_factory=set)
    #: Parameter names whose value landed in a secret field (a git password).
    secret: set[str] = field(default_factory=set)


SECRET_PATHS = frozenset({"code.git.password"})


def render(
    spec: Mapping[str, Any], values: Mapping[str, str | None], declared: set[str], *, strict: bool
) -> Rendered:
    """Fill a copy of ``spec`` with ``values`` (parameter name to text; None: no value).

    ``declared`` are every parameter's names, values or not: a path or placeholder one of them
    names counts as parameterised even when it has no value now. ``strict`` (a submission): a
    placeholder left unfilled is unmapped; otherwise (a template being stored) only one that no
    declared parameter could ever fill is.
    """
    document: dict[str, Any] = copy.deepcopy(dict(spec))
    out = Rendered(document)
    for path, original in list(leaves(document)):
        name = path_text(path)
        secret = name in SECRET_PATHS
        if name in declared:
            out.parameterised.add(dotted(path))
            value = values.get(name)
            if value is not None:
                _set(document, path, _typed(original, value))
                out.used.add(name)
                if secret:
                    out.secret.add(name)
                continue
        if not isinstance(original, str) or "{{" not in original:
            continue
        out.parameterised.add(dotted(path))

        def fill(match: re.Match[str], name: str = name, secret: bool = secret) -> str:
            wanted = match.group(1).strip()
            for key in (f"{name}:{wanted}", wanted):
                found = values.get(key)
                if found is not None:
                    out.used.add(key)
                    if secret:
                        out.secret.add(key)
                    return found
            if strict or (f"{name}:{wanted}" not in declared and wanted not in declared):
                out.unmapped.append(f"{name}:{wanted}")
            return match.group(0)

        filled = PLACEHOLDER.sub(fill, original)
        if filled != original:
            _set(document, path, filled)
    _resource_params(document, values, declared, out)
    return out


def _resource_params(
    document: dict[str, Any], values: Mapping[str, str | None], declared: set[str], out: Rendered
) -> None:
    roles = document.get("spec")
    for name in sorted(declared):
        match = RESOURCE_PARAM.match(name)
        if match is None or not isinstance(roles, dict) or not isinstance(roles.get(match[1]), dict):
            continue
        role, key = match[1], match[2]
        out.parameterised.add(f"spec.{role}.resources")
        value = values.get(name)
        if value is not None:
            task = roles[role]
            task["resources"] = _with_resource(task.get("resources"), key, value)
            out.used.add(name)


def targets(spec: Mapping[str, Any]) -> Callable[[str], bool]:
    """Whether a parameter name can change ``spec``: a path in it, a ``<path>:x`` or ``x`` of a
    placeholder in it, or a resourceMap entry of one of its roles (the spec read once)."""
    names: set[str] = set()
    for path, value in leaves(spec):
        text = path_text(path)
        names.add(text)
        if isinstance(value, str):
            for wanted in placeholders(value):
                names.update((wanted, f"{text}:{wanted}"))
    roles = spec.get("spec")
    role_names = set()
    if isinstance(roles, dict):
        role_names = {str(role) for role, task in roles.items() if isinstance(task, dict)}

    def changes(name: str) -> bool:
        match = RESOURCE_PARAM.match(name)
        return name in names or (match is not None and match[1] in role_names)

    return changes
