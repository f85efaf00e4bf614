"""Input rules for registry requests; every refusal is a 400 naming the field."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from broker.errors import BadRequest

MAX_NAME = 256
MAX_KEY = 250
MAX_TAG_VALUE = 100_000  # MLflow's registry tag values (tracking tags stop at 8,000)
MAX_DESCRIPTION = 100_000
MAX_TEXT = 5000
MAX_TAGS = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ALIAS = re.compile(r"^[\w-]{1,255}$")
_RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "…"


def _bad(field: str, problem: str) -> BadRequest:
    return BadRequest(f"{field}: {problem}", field=field)


def name(value: Any, field: str = "name") -> str:
    """A registered model's name: 1..256 characters, no ``/``, ``:`` or control characters (a
    name is part of ``models:/<name>/<version>`` URIs and of ``model/<name>`` policy objects)."""
    if not isinstance(value, str) or not value.strip():
        raise _bad(field, "a registered model name is required")
    if len(value) > MAX_NAME:
        raise _bad(field, f"longer than {MAX_NAME} characters")
    if "/" in value or ":" in value or _CONTROL.search(value):
        raise _bad(field, f"{_shown(value)} may not contain '/', ':' or control characters")
    return value


def namespace(value: Any, field: str = "namespace") -> str:
    if not isinstance(value, str) or not _NAMESPACE.match(value):
        raise _bad(
            field, f"{_shown(value)} is not a namespace (a team name: lower-case letters, digits, '-')"
        )
    return value


def version(value: Any, field: str = "version") -> int:
    """A version number: a whole number >= 1 (or its text)."""
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 9:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
        raise _bad(field, f"{_shown(value)} is not a version number (a whole number from 1)")
    return value


def text(value: Any, field: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise _bad(field, f"expected a string, got {_shown(value)}")
    if len(value) > limit:
        raise _bad(field, f"longer than {limit} characters")
    return value


def tag_key(value: Any, field: str = "key") -> str:
    if not isinstance(value, str) or not value:
        raise _bad(field, "a tag key is required")
    if len(value) > MAX_KEY:
        raise _bad(field, f"longer than {MAX_KEY} characters")
    if _CONTROL.search(value):
        raise _bad(field, f"{_shown(value)} contains a control character")
    return value


def tag_value(value: Any, field: str = "value") -> str:
    if value is None:
        return ""
    return text(value, field, MAX_TAG_VALUE)


def tags(values: Sequence[tuple[str, str]], field: str = "tags") -> dict[str, str]:
    if len(values) > MAX_TAGS:
        raise _bad(field, f"at most {MAX_TAGS} tags")
    return {
        tag_key(k, f"{field}[{i}].key"): tag_value(v, f"{field}[{i}].value")
        for i, (k, v) in enumerate(values)
    }


def alias(value: Any, field: str = "alias") -> str:
    """MLflow's alias rule: ``[\\w-]{1,255}``, and not ``latest`` or ``v<digits>`` (reserved for
    version references)."""
    if not isinstance(value, str) or not _ALIAS.match(value):
        raise _bad(field, f"{_shown(value)} is not an alias (1 to 255 letters, digits, '_' or '-')")
    if _RESERVED_ALIAS.match(value):
        raise _bad(field, f"{_shown(value)} is reserved ('latest' and 'v<number>' name versions)")
    return value
