"""An ``environmentSpec`` document checked field by field: every problem named, nothing stored
half-way. What passes is stored in Submarine's shape (the keys the SDK sends and reads)."""

from __future__ import annotations

import re
from typing import Any

from broker.errors import BadRequest, FieldProblem, problems_message

#: Names are the key of an environment, part of its URL and of its policy object ``environment/<name>``.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Most dependencies (pip and conda together) one environment may list.
MAX_DEPENDENCIES = 500
MAX_TEXT = 1000
MAX_DESCRIPTION = 10_000
_SPEC_FIELDS = ("name", "dockerImage", "image", "kernelSpec", "description")
_KERNEL_FIELDS = ("name", "channels", "condaDependencies", "pipDependencies", "python")
_LISTS = ("channels", "condaDependencies", "pipDependencies")


def _text(value: Any, field: str, problems: list[FieldProblem], *, limit: int = MAX_TEXT) -> str | None:
    """A string without control characters (None when absent), else a problem."""
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(FieldProblem(field, f"must be a string, not {type(value).__name__}"))
        return None
    if len(value) > limit:
        problems.append(FieldProblem(field, f"is longer than {limit} characters"))
        return None
    if field != "description" and any(ord(c) < 32 or ord(c) == 127 for c in value):
        problems.append(FieldProblem(field, "contains a control character"))
        return None
    return value


def _word(value: Any, field: str, problems: list[FieldProblem]) -> str | None:
    """A non-blank string without spaces (an image, a package, a channel)."""
    text = _text(value, field, problems)
    if text is None:
        return None
    if not text.strip():
        problems.append(FieldProblem(field, "is blank"))
        return None
    return text.strip()


def _dependency(value: Any, field: str, problems: list[FieldProblem]) -> str | None:
    text = _word(value, field, problems)
    if text is not None and text.startswith("-"):
        # An installer option (--index-url, -e ...) would change where packages come from.
        problems.append(FieldProblem(field, f"{text!r} is an installer option, not a package"))
        return None
    return text


def _kernel(value: Any, problems: list[FieldProblem]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(FieldProblem("kernelSpec", f"must be an object, not {type(value).__name__}"))
        return None
    for key in value:
        if key not in _KERNEL_FIELDS:
            known = ", ".join(_KERNEL_FIELDS)
            problems.append(FieldProblem(f"kernelSpec.{key}", f"unknown field (known: {known})"))
    kernel: dict[str, Any] = {"name": _text(value.get("name"), "kernelSpec.name", problems)}
    count = 0
    for field in _LISTS:
        items = value.get(field)
        if items is None:
            kernel[field] = []
            continue
        if not isinstance(items, list):
            problems.append(FieldProblem(f"kernelSpec.{field}", "must be a list of strings"))
            continue
        count += len(items) if field != "channels" else 0
        check = _word if field == "channels" else _dependency
        kernel[field] = [
            found
            for i, item in enumerate(items)
            if (found := check(item, f"kernelSpec.{field}[{i}]", problems)) is not None
        ]
    if count > MAX_DEPENDENCIES:
        problems.append(FieldProblem("kernelSpec", f"lists {count} dependencies; at most {MAX_DEPENDENCIES}"))
    if value.get("python") is not None:
        kernel["python"] = _word(value.get("python"), "kernelSpec.python", problems)
    return kernel


def environment_spec(document: Any, *, name: str | None = None) -> dict[str, Any]:
    """The checked ``environmentSpec``; 400 naming every bad field. ``name`` is the environment a
    PATCH addresses: the body may omit its name, but not name another one."""
    if not isinstance(document, dict):
        raise BadRequest("the body must be an EnvironmentSpec object", field="environmentSpec")
    problems: list[FieldProblem] = []
    for key in document:
        if key not in _SPEC_FIELDS:
            problems.append(FieldProblem(key, f"unknown field (known: {', '.join(_SPEC_FIELDS)})"))
    given = _text(document.get("name"), "name", problems)
    if name is not None and given is not None and given != name:
        problems.append(FieldProblem("name", f"'{given}' is not '{name}': an environment cannot be renamed"))
    given = given if given is not None else name
    if given is None or not given.strip():
        problems.append(FieldProblem("name", "is required"))
    elif not NAME.match(given):
        problems.append(
            FieldProblem(
                "name",
                f"'{given[:140]}' must start with a letter or digit and hold only letters, digits, "
                ". _ - (at most 128 characters)",
            )
        )
    spec = {
        "name": given,
        "dockerImage": _word(document.get("dockerImage"), "dockerImage", problems),
        "image": _word(document.get("image"), "image", problems),
        "kernelSpec": _kernel(document.get("kernelSpec"), problems),
        "description": _text(document.get("description"), "description", problems, limit=MAX_DESCRIPTION),
    }
    if problems:
        raise BadRequest(problems_message("Invalid environment spec", problems), problems=problems)
    return spec
