"""MLflow's search grammar: filters (``metrics.loss < 1 AND params.lr = '0.1'``) and order-by
clauses (``metrics.loss ASC``), parsed into clauses and turned into SQL conditions.

Identifiers are ``<entity>.<key>`` with entity ``metrics``/``params``/``tags``/``attributes`` (and
MLflow's singular aliases); a key with other characters goes in backticks or double quotes.
Comparators: ``= != < <= > >=`` for numbers, ``= != LIKE ILIKE IN NOT IN`` for text; clauses are
joined with ``AND``. LIKE is case-sensitive on every database, ILIKE is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement

from broker.api.mlflow_errors import invalid

ENTITIES = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "parameter": "param",
    "parameters": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
NUMERIC_OPS = ("=", "!=", "<", "<=", ">", ">=")
TEXT_OPS = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
_KEYWORDS = {"AND", "OR", "LIKE", "ILIKE", "IN", "NOT", "ASC", "DESC", "IS", "NULL"}
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
    | (?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<op>!=|<>|<=|>=|==|=|<|>)
    | (?P<lp>\()|(?P<rp>\))|(?P<comma>,)
    | (?P<word>[A-Za-z_]\w*)(?:\.(?P<key>`[^`]*`|"[^"]*"|[\w.:/-]+))?
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    """One comparison: ``entity`` is metric, param, tag or attribute."""

    entity: str
    key: str
    op: str
    value: Any


@dataclass(frozen=True)
class Order:
    entity: str
    key: str
    ascending: bool


def _tokens(text: str) -> list[tuple[str, str, str | None]]:
    found: list[tuple[str, str, str | None]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise invalid(
                f"Invalid search expression at position {position}: {text[position : position + 40]!r}"
            )
        position = match.end()
        kind = match.lastgroup if match.lastgroup != "key" else "word"
        if kind == "word" or match.group("word"):
            found.append(("word", match.group("word"), _unquote_key(match.group("key"))))
        else:
            assert kind is not None
            found.append((kind, match.group(kind), None))
    return found


def _unquote_key(key: str | None) -> str | None:
    if key is None:
        return None
    if len(key) >= 2 and key[0] == key[-1] and key[0] in '`"':
        return key[1:-1]
    return key


def _unquote(text: str) -> str:
    body = text[1:-1]
    if text[0] == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


def _identifier(word: str, key: str | None, attributes: dict[str, str]) -> tuple[str, str]:
    if key is None:
        if word in attributes:
            return "attribute", word
        raise invalid(
            f"Invalid identifier {word!r}: expected metrics.<key>, params.<key>, tags.<key> or "
            f"attributes.<name> (attributes: {', '.join(sorted(attributes))})"
        )
    entity = ENTITIES.get(word.lower())
    if entity is None:
        raise invalid(f"Invalid entity type {word!r}: expected metrics, params, tags or attributes")
    if entity == "attribute" and key not in attributes:
        raise invalid(f"Invalid attribute key {key!r}: expected one of {', '.join(sorted(attributes))}")
    if not key:
        raise invalid(f"Invalid identifier {word}.{key}: the key is empty")
    return entity, key


def parse_filter(text: str | None, attributes: dict[str, str]) -> list[Clause]:
    """The clauses of a filter; ``attributes`` maps each attribute name to ``text`` or ``number``."""
    if not text or not text.strip():
        return []
    tokens = _tokens(text)
    clauses: list[Clause] = []
    index = 0
    while index < len(tokens):
        kind, word, key = tokens[index]
        if kind != "word" or word.upper() in _KEYWORDS and key is None:
            raise invalid(f"Invalid filter {text[:200]!r}: expected an identifier, found {word!r}")
        entity, name = _identifier(word, key, attributes)
        index += 1
        op, index = _comparator(tokens, index, text)
        value, index = _value(tokens, index, text, op)
        clauses.append(_checked(Clause(entity, name, op, value), attributes))
        if index < len(tokens):
            kind, word, key = tokens[index]
            if kind != "word" or word.upper() != "AND" or key is not None:
                raise invalid(f"Invalid filter {text[:200]!r}: clauses are joined with AND, found {word!r}")
            index += 1
            if index == len(tokens):
                raise invalid(f"Invalid filter {text[:200]!r}: nothing after AND")
    return clauses


def _comparator(tokens: list[tuple[str, str, str | None]], index: int, text: str) -> tuple[str, int]:
    if index >= len(tokens):
        raise invalid(f"Invalid filter {text[:200]!r}: a comparator is missing")
    kind, word, _ = tokens[index]
    if kind == "op":
        return {"<>": "!=", "==": "="}.get(word, word), index + 1
    upper = word.upper() if kind == "word" else ""
    if upper in ("LIKE", "ILIKE", "IN"):
        return upper, index + 1
    if upper == "NOT" and index + 1 < len(tokens) and tokens[index + 1][1].upper() == "IN":
        return "NOT IN", index + 2
    raise invalid(f"Invalid filter {text[:200]!r}: {word!r} is not a comparator")


def _value(tokens: list[tuple[str, str, str | None]], index: int, text: str, op: str) -> tuple[Any, int]:
    if index >= len(tokens):
        raise invalid(f"Invalid filter {text[:200]!r}: a value is missing")
    kind, word, _ = tokens[index]
    if op in ("IN", "NOT IN"):
        if kind != "lp":
            raise invalid(f"Invalid filter {text[:200]!r}: {op} takes a list such as ('a', 'b')")
        values: list[str] = []
        index += 1
        while index < len(tokens):
            kind, word, _ = tokens[index]
            if kind != "str":
                raise invalid(f"Invalid filter {text[:200]!r}: {op} lists hold quoted strings")
            values.append(_unquote(word))
            kind = tokens[index + 1][0] if index + 1 < len(tokens) else ""
            index += 2
            if kind == "rp":
                return tuple(values), index
            if kind != "comma":
                break
        raise invalid(f"Invalid filter {text[:200]!r}: unterminated {op} list")
    if kind == "str":
        return _unquote(word), index + 1
    if kind == "num":
        return float(word), index + 1
    raise invalid(f"Invalid filter {text[:200]!r}: expected a value, found {word!r}")


def _checked(clause: Clause, attributes: dict[str, str]) -> Clause:
    numeric = clause.entity == "metric" or (
        clause.entity == "attribute" and attributes[clause.key] == "number"
    )
    label = f"{clause.entity} {clause.key!r}"
    if numeric:
        if clause.op not in NUMERIC_OPS:
            raise invalid(
                f"Invalid comparator {clause.op!r} for {label}: expected one of {', '.join(NUMERIC_OPS)}"
            )
        if not isinstance(clause.value, float):
            raise invalid(f"Invalid value {clause.value!r} for {label}: expected a number")
        return clause
    if clause.op not in TEXT_OPS:
        raise invalid(f"Invalid comparator {clause.op!r} for {label}: expected one of {', '.join(TEXT_OPS)}")
    if isinstance(clause.value, float):
        raise invalid(f"Invalid value for {label}: expected a quoted string")
    return clause


def parse_order_by(items: list[str], attributes: dict[str, str]) -> list[Order]:
    """``<identifier> [ASC|DESC]`` clauses."""
    orders: list[Order] = []
    for item in items:
        tokens = _tokens(item)
        if not tokens or tokens[0][0] != "word" or len(tokens) > 2:
            raise invalid(f"Invalid order_by clause {item[:200]!r}")
        entity, key = _identifier(tokens[0][1], tokens[0][2], attributes)
        ascending = True
        if len(tokens) == 2:
            direction = tokens[1][1].upper()
            if direction not in ("ASC", "DESC") or tokens[1][0] != "word":
                raise invalid(f"Invalid order_by clause {item[:200]!r}: expected ASC or DESC")
            ascending = direction == "ASC"
        orders.append(Order(entity, key, ascending))
    return orders


def _glob(pattern: str) -> str:
    """A LIKE pattern as a GLOB (SQLite's case-sensitive match)."""
    special = {"*": "[*]", "?": "[?]", "[": "[[]", "%": "*", "_": "?"}
    return "".join(special.get(ch, ch) for ch in pattern)


def compare(column: Any, op: str, value: Any, dialect: str) -> ColumnElement[bool]:
    """``column <op> value`` in SQL; LIKE stays case-sensitive on SQLite (as GLOB)."""
    if op == "LIKE":
        return column.op("GLOB")(_glob(value)) if dialect == "sqlite" else column.like(value)
    if op == "ILIKE":
        return column.ilike(value)
    if op == "IN":
        return column.in_(list(value))
    if op == "NOT IN":
        return column.not_in(list(value))
    return {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }[op](value)  # type: ignore[no-any-return]
