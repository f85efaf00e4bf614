"""Request bodies parsed into bounded JSON documents, refused before they cost more than their bytes.

A document holds JSON's types only (objects with string keys, lists, strings, finite numbers,
booleans, null), whatever the body's syntax, and stays within the configured ``limits``:

- YAML aliases and anchors are refused while the body is composed, at the first anchor, so an
  alias is never expanded (a few hundred bytes of nested aliases stand for millions of values).
  Submarine's clients never send them.
- Nesting deeper than ``limits.max_body_depth`` is a 400, more than ``limits.max_body_nodes``
  values (keys count) a 413. YAML is counted while it is composed. JSON is counted right after
  parsing: it cannot expand, so parsing costs what its bytes do (``max_body_bytes``), and the
  parser's own recursion guard, which trips on absurd depth, is answered with the same 400.
- Numbers are finite (no NaN, Infinity or 1e400) and integers fit in 64 bits; a 5,000-digit
  integer is refused before Python converts it.
- No string or key holds a NUL character (no name, command or value can pass one to a process,
  and PostgreSQL cannot store one) or a lone surrogate (``"\\ud800"`` is valid JSON but no text:
  it cannot be written as UTF-8, stored or shown).
- YAML timestamps stay the text they were written as; ``!!binary``, ``!!set``, ``!!omap`` and
  ``!!pairs`` are refused.

Every refusal names the limit or the field (``meta.maxRetries: ...``) with the problem.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from yaml.nodes import Node, ScalarNode
from yaml.resolver import Resolver

from broker.config.models import LimitsConfig
from broker.errors import ApiError, BadRequest, FieldProblem, problems_message

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: The longest YAML integer text worth converting (64 binary digits and a prefix, with some slack).
_MAX_YAML_INT_CHARS = 72
#: The most problems one refusal lists.
MAX_PROBLEMS = 20
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")

if yaml.__with_libyaml__:  # libyaml scans and parses in C; composing (with our checks) stays in Python
    from yaml._yaml import CParser as _EventSource
else:  # pragma: no cover - PyYAML wheels ship libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _EventSource(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream: Any) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


@dataclass(frozen=True)
class _Refused:
    """A value no document may hold, met while parsing; the walk names its field."""

    problem: str


def _shown(text: str, limit: int = 40) -> str:
    """``text`` for a message: control characters escaped, cut to ``limit`` characters."""
    escaped = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text[: limit + 1])
    return escaped if len(escaped) <= limit else escaped[:limit] + "…"


def _not_finite(text: str) -> _Refused:
    return _Refused(f"{_shown(text)} is not accepted: numbers must be finite")


def _out_of_range(text: str) -> _Refused:
    digits = text.lstrip("+-").replace("_", "")
    what = f"a {len(digits)}-digit integer" if len(digits) > 24 else text
    return _Refused(f"{what} is out of range: integers must fit in 64 bits")


def _json_int(text: str) -> int | _Refused:
    if len(text.lstrip("-")) > 19:
        return _out_of_range(text)
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else _out_of_range(text)


def _json_float(text: str) -> float | _Refused:
    value = float(text)
    return value if math.isfinite(value) else _not_finite(text)


def too_deep(limits: LimitsConfig, where: str = "") -> ApiError:
    at = f" at {where}" if where else ""
    return BadRequest(
        f"the request body nests deeper than {limits.max_body_depth} levels{at} (limits.max_body_depth)"
    )


def too_many(limits: LimitsConfig, where: str = "") -> ApiError:
    at = f" at {where}" if where else ""
    return ApiError(
        413, f"the request body holds more than {limits.max_body_nodes} values{at} (limits.max_body_nodes)"
    )


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


class _BodyLoader(Composer, _EventSource, SafeConstructor, Resolver):  # type: ignore[misc]
    """PyYAML's safe loader, composing with the checks a request body needs (see the module)."""

    def __init__(self, stream: bytes, limits: LimitsConfig) -> None:
        _EventSource.__init__(self, stream)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        Composer.__init__(self)
        self.limits = limits
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        mark = getattr(event, "start_mark", None)
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise BadRequest(
                f"YAML aliases/anchors are not accepted in request bodies ({_at(mark)}): write each value out"
            )
        self.nodes += 1
        if self.nodes > self.limits.max_body_nodes:
            raise too_many(self.limits, _at(mark))
        opens = isinstance(event, MappingStartEvent | SequenceStartEvent)
        if opens:
            self.depth += 1
            if self.depth > self.limits.max_body_depth:
                raise too_deep(self.limits, _at(mark))
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= int(opens)

    def construct_int(self, node: ScalarNode) -> int | _Refused:
        text = str(self.construct_scalar(node))
        if len(text) > _MAX_YAML_INT_CHARS:
            return _out_of_range(text)
        value = self.construct_yaml_int(node)
        return value if INT64_MIN <= value <= INT64_MAX else _out_of_range(text)

    def construct_float(self, node: ScalarNode) -> float | _Refused:
        value = self.construct_yaml_float(node)
        return value if math.isfinite(value) else _not_finite(str(self.construct_scalar(node)))

    def construct_text(self, node: ScalarNode) -> str:
        return str(self.construct_scalar(node))

    def construct_refused(self, node: Node) -> _Refused:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        return _Refused(f"YAML tag {tag} is not accepted: request bodies hold JSON's types only")


_BodyLoader.yaml_constructors = {
    **SafeConstructor.yaml_constructors,
    "tag:yaml.org,2002:int": _BodyLoader.construct_int,
    "tag:yaml.org,2002:float": _BodyLoader.construct_float,
    "tag:yaml.org,2002:timestamp": _BodyLoader.construct_text,
    **{
        f"tag:yaml.org,2002:{tag}": _BodyLoader.construct_refused
        for tag in ("binary", "set", "omap", "pairs")
    },
}


def parse_yaml(raw: bytes, limits: LimitsConfig) -> Any:
    """A YAML body as a bounded document; :class:`ApiError` (400/413) saying what is refused."""
    loader = _BodyLoader(raw, limits)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if "maximum nesting depth" in problem:  # libyaml's own bound (1000), met while scanning ahead
            raise too_deep(limits, _at(mark)) from None
        where = f" at {_at(mark)}" if mark is not None else ""
        raise BadRequest(f"malformed YAML body{where}: {problem}") from None
    finally:
        loader.dispose()
    check_document(data, limits)
    return data


def parse_json(raw: bytes, limits: LimitsConfig) -> Any:
    """A JSON body as a bounded document; :class:`ApiError` (400/413) saying what is refused."""
    try:
        data = json.loads(raw, parse_int=_json_int, parse_float=_json_float, parse_constant=_not_finite)
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON body at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise too_deep(limits) from None
    check_document(data, limits)
    return data


def text_problem(text: str) -> str | None:
    """What makes ``text`` unusable as a name or value (a NUL, a lone surrogate), if anything."""
    found = _NOT_TEXT.search(text)
    if found is None:
        return None
    if found.group() == "\0":
        return "contains a NUL character"
    return f"contains a lone surrogate ({ascii(found.group())[1:-1]}), which is not text"


def _child(path: str, key: str) -> str:
    return f"{path}.{_shown(key, 64)}" if path else _shown(key, 64)


def check_document(document: Any, limits: LimitsConfig) -> None:
    """Walk ``document`` without recursion: depth and size within ``limits``, then every refused
    number, non-string key and NUL character, named by its path; raises :class:`ApiError`."""
    problems: list[FieldProblem] = []
    nodes = 1
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list):
            depth += 1
            if depth > limits.max_body_depth:
                raise too_deep(limits, path or "the top")
            nodes += len(value) * (2 if isinstance(value, dict) else 1)
            if nodes > limits.max_body_nodes:
                raise too_many(limits, path or "the top")
            if isinstance(value, dict):
                children = []
                for key, item in value.items():
                    if isinstance(key, _Refused):
                        problems.append(FieldProblem(path or "body", f"a key: {key.problem}"))
                    elif not isinstance(key, str):
                        problems.append(
                            FieldProblem(path or "body", f"key {_shown(str(key))} is not a string (quote it)")
                        )
                    elif (problem := text_problem(key)) is not None:
                        problems.append(FieldProblem(path or "body", f"key '{_shown(key)}' {problem}"))
                    children.append((item, _child(path, str(key)), depth))
            else:
                children = [(item, _child(path, str(i)), depth) for i, item in enumerate(value)]
            stack.extend(reversed(children))  # popped in document order
        elif isinstance(value, _Refused):
            problems.append(FieldProblem(path or "body", value.problem))
        elif isinstance(value, str):
            if (problem := text_problem(value)) is not None:
                problems.append(FieldProblem(path or "body", problem))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(FieldProblem(path or "body", f"{value} is not accepted: numbers must be finite"))
        elif value is not None and not isinstance(value, bool | int | float):
            problems.append(FieldProblem(path or "body", f"a {type(value).__name__} is not a JSON value"))
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        message = problems_message("Invalid request body", shown)
        raise BadRequest(message + (f"; and {more} more" if more else ""), problems=shown)
