"""Policy lines as policy editors write them, validated.

A line is a Casbin CSV line: the type, then its fields, separated by commas::

    p, alice, vision, cluster/gpu-*, place, allow     # sub, dom, obj, act, eft
    p2, vision, cluster/gpu-*, 3                      # dom, obj, weight (a placement weight)
    g, alice, member, vision                          # user, role, dom

Patterns (namespaces, objects, g's domain) use Casbin's ``keyMatch``: a ``*`` matches whatever
follows it, to the end of the string, so ``cluster/gpu-*`` matches ``cluster/gpu-east`` and
``cluster/gpu-east/experiment``. Text after the ``*`` would be ignored, so it is refused
(``cluster/*/notebook`` would mean ``cluster/*``). A value cannot contain spaces, quotes,
commas or control characters.

Validation refuses unknown line types, a wrong number of fields, empty fields, unknown actions and
object kinds, effects other than allow/deny, weights that are not numbers >= 0 and values with
characters no name or pattern may hold, and ``place`` lines that could never match a placement
(placement asks about ``cluster/<name>/<workload kind>``, so ``cluster/gpu-east`` alone never
matches; ``cluster/gpu-east/*`` does). The error names the line (number and text) and the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

#: The fields of each line type, in order.
FIELDS: dict[str, tuple[str, ...]] = {
    "p": ("sub", "dom", "obj", "act", "eft"),
    "p2": ("dom", "obj", "weight"),
    "g": ("user", "role", "dom"),
}
ACTIONS = frozenset(
    {"submit", "read", "write", "logs", "kill", "delete", "place", "edit", "admin", "promote", "invoke"}
)
OBJECT_KINDS = frozenset(
    {
        "experiment",
        "notebook",
        "serve",
        "cluster",
        "policy",
        "user",
        "tracking",
        "model",
        "environment",
        "template",
    }
)
WORKLOAD_KINDS = frozenset({"experiment", "notebook", "serve"})
EFFECTS = frozenset({"allow", "deny"})

_ALLOWED = re.compile(r"^[\w.@:+=~/*-]+$")
_WEIGHT = re.compile(r"^(\d+(\.\d*)?|\.\d+)$")
#: The largest placement weight: weights score as w / (1 + w), so anything past this is 1 anyway.
MAX_WEIGHT = 1_000_000
_ALLOWED_TEXT = "letters, digits, . _ @ : + = ~ / - (and * in patterns)"


class PolicyLineError(ValueError):
    """An invalid policy line. ``index`` is its 0-based position (``None`` for a lone line)."""

    def __init__(self, index: int | None, text: str, reason: str) -> None:
        self.index = index
        self.text = text
        self.reason = reason
        where = "line" if index is None else f"line {index + 1}"
        super().__init__(f"{where} {text.strip()!r}: {reason}")


@dataclass(frozen=True)
class PolicyLine:
    """One policy line: its type (``p``, ``p2``, ``g``) and its values, stripped of whitespace."""

    ptype: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ptype", self.ptype.strip())
        object.__setattr__(self, "values", tuple(v.strip() for v in self.values))

    def csv(self) -> str:
        """The canonical text: ``p, alice, vision, cluster/gpu-*, place, allow``."""
        return ", ".join((self.ptype, *self.values))

    def __str__(self) -> str:
        return self.csv()

    @property
    def fields(self) -> dict[str, str]:
        """The values by field name (``sub``, ``dom``, ...)."""
        return dict(zip(FIELDS.get(self.ptype, ()), self.values, strict=False))


def _check_chars(name: str, value: str) -> str | None:
    if _ALLOWED.match(value):
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{name} {value!r} contains a control character"
    if any(c.isspace() for c in value):
        return f"{name} {value!r} contains a space"
    bad = next(c for c in value if not _ALLOWED.match(c))
    return f"{name} {value!r} contains {bad!r} (allowed: {_ALLOWED_TEXT})"


def _check_name(name: str, value: str, *, star: bool = False) -> str | None:
    """A user or role name; ``star`` allows the whole value ``*`` (everyone)."""
    if star and value == "*":
        return None
    if "*" in value:
        what = "a user, a role or * (everyone)" if star else "a user or role name, not a pattern"
        return f"{name} {value!r} must be {what}"
    return _check_chars(name, value)


def _check_star(name: str, value: str) -> str | None:
    """keyMatch ignores whatever follows the first ``*``: refuse text there rather than let an
    editor believe ``cluster/*/notebook`` limits a rule to notebooks (it covers every kind)."""
    star = value.find("*")
    if star != -1 and star != len(value) - 1:
        return (
            f"{name} {value!r}: text after '*' would be ignored (a * matches the whole rest of the "
            f"value, so this means {value[: star + 1]!r})"
        )
    return None


def _check_namespace(name: str, value: str) -> str | None:
    return _check_chars(name, value) or _check_star(name, value)


def _check_object(name: str, value: str, *, cluster_only: bool = False) -> str | None:
    """An object pattern: ``*``, or a known kind, alone or followed by ``/`` and the object's path."""
    if reason := _check_chars(name, value) or _check_star(name, value):
        return reason
    if value == "*":
        return None
    kind, slash, rest = value.partition("/")
    if kind not in OBJECT_KINDS:
        known = ", ".join(sorted(OBJECT_KINDS))
        return f"{name} {value!r}: unknown object kind {kind!r} (known: {known}, or * for all)"
    if cluster_only and kind != "cluster":
        return f"{name} {value!r}: a weight applies to clusters (cluster/<name pattern> or *)"
    # keyMatch ignores everything after the first *, so only the segments up to it have a shape.
    segments: list[str] = []
    for segment in rest.split("/") if slash else []:
        segments.append(segment)
        if "*" in segment:
            break
    if any(not segment for segment in segments):
        return f"{name} {value!r}: empty path segment"
    if kind == "cluster" and not cluster_only:
        if len(segments) > 2:
            return f"{name} {value!r}: cluster objects are cluster/<name> or cluster/<name>/<workload kind>"
        if len(segments) == 2 and "*" not in segments[1] and segments[1] not in WORKLOAD_KINDS:
            kinds = ", ".join(sorted(WORKLOAD_KINDS))
            return f"{name} {value!r}: unknown workload kind {segments[1]!r} (known: {kinds})"
    elif len(segments) > 1 and cluster_only:
        return f"{name} {value!r}: a weight names a cluster (cluster/<name pattern>), not a workload kind"
    elif len(segments) > 1:
        return f"{name} {value!r}: {kind} objects are {kind}/<{'id' if kind in WORKLOAD_KINDS else 'name'}>"
    return None


def _check_action(name: str, value: str) -> str | None:
    if value == "*" or value in ACTIONS:
        return None
    return f"{name} {value!r}: unknown action (known: {', '.join(sorted(ACTIONS))}, or * for all)"


def _check_effect(name: str, value: str) -> str | None:
    return None if value in EFFECTS else f"{name} {value!r}: the effect must be allow or deny"


def _check_weight(name: str, value: str) -> str | None:
    if not _WEIGHT.match(value):
        return f"{name} {value!r}: the weight must be a number >= 0"
    if float(value) > MAX_WEIGHT:  # a huge weight scores as inf/inf = NaN
        shown = value if len(value) <= 20 else value[:20] + "…"
        return f"{name} {shown!r}: the weight must be at most {MAX_WEIGHT}"
    return None


_CHECKS = {
    "p": (
        lambda n, v: _check_name(n, v, star=True),
        _check_namespace,
        _check_object,
        _check_action,
        _check_effect,
    ),
    "p2": (_check_namespace, lambda n, v: _check_object(n, v, cluster_only=True), _check_weight),
    "g": (_check_name, _check_name, _check_namespace),
}


def parse_line(text: str, index: int | None = None) -> PolicyLine:
    """Parse and validate one line; raises :class:`PolicyLineError` saying what is wrong where.

    Lines are immutable, so valid texts are remembered: re-reading a stored policy after an edit
    only parses the lines that are new.
    """
    if not isinstance(text, str):
        raise PolicyLineError(index, repr(text), "a policy line must be a string")
    try:
        return _parse(text)
    except PolicyLineError as exc:
        raise PolicyLineError(index, exc.text, exc.reason) from None


@lru_cache(maxsize=1 << 16)
def _parse(text: str) -> PolicyLine:
    if not text.strip():
        raise PolicyLineError(None, text, "the line is empty")
    if '"' in text or "'" in text:
        raise PolicyLineError(None, text, "quotes are not allowed (a value cannot hold a comma or a quote)")
    ptype, *values = (part.strip() for part in text.strip().split(","))
    fields = FIELDS.get(ptype)
    if fields is None:
        raise PolicyLineError(None, text, f"unknown line type {ptype!r} (known: p, p2, g)")
    if len(values) != len(fields):
        expected = f"{len(fields)} fields after the type ({', '.join(fields)})"
        raise PolicyLineError(None, text, f"{ptype} lines have {expected}; got {len(values)}")
    for position, (field, value, check) in enumerate(zip(fields, values, _CHECKS[ptype], strict=True), 1):
        label = f"field {position} ({field})"
        if not value:
            raise PolicyLineError(None, text, f"{label} is empty")
        if reason := check(label, value):
            raise PolicyLineError(None, text, reason)
    if ptype == "p" and values[3] == "place" and (reason := _check_place(values[2])):
        raise PolicyLineError(None, text, f"field 3 (obj) {values[2]!r}: {reason}")
    return PolicyLine(ptype, tuple(values))


def _check_place(obj: str) -> str | None:
    """A place line that could never match a placement request is refused, not silently kept."""
    kind = obj.split("/", 1)[0]
    if obj != "*" and kind != "cluster":
        return "place applies to clusters: cluster/<name>/<workload kind> or a pattern"
    if kind == "cluster" and "*" not in obj and obj.count("/") < 2:
        name = obj.partition("/")[2] or "<name>"
        return (
            "placement asks about cluster/<name>/<workload kind>, which this never matches; "
            f"write cluster/{name}/* (any kind) or cluster/{name}/experiment"
        )
    return None


def parse_lines(texts: Iterable[str]) -> list[PolicyLine]:
    """Parse every line or none: the first invalid one raises, naming its position (1-based)."""
    return [parse_line(text, index) for index, text in enumerate(texts)]


def parse_csv(text: str) -> list[PolicyLine]:
    """Parse a policy file: one line per row; blank lines and ``#`` comments are skipped."""
    lines = []
    for index, row in enumerate(text.splitlines()):
        stripped = row.strip()
        if stripped and not stripped.startswith("#"):
            lines.append(parse_line(stripped, index))
    return lines
