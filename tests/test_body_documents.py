"""Parsing request bodies into bounded documents (broker/api/documents.py) and strict JSON answers."""

from __future__ import annotations

import json
import math

import pytest

from broker.api.documents import MAX_PROBLEMS, parse_json, parse_yaml
from broker.api.envelope import ok
from broker.config.models import LimitsConfig
from broker.errors import ApiError

LIMITS = LimitsConfig(max_body_depth=8, max_body_nodes=200)


def refusal(parse, raw: bytes, limits: LimitsConfig = LIMITS) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse(raw, limits)
    return caught.value


def test_an_alias_bomb_is_refused_at_its_first_anchor_before_anything_expands() -> None:
    """Nine levels of ten aliases stand for 10^9 values: expanding even a part of them would take
    minutes and gigabytes, so a prompt refusal at line 1 (the first anchor) shows none happened."""
    lines = [b"a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        name, previous = chr(ord("a") + level).encode(), chr(ord("a") + level - 1).encode()
        lines.append(name + b": &" + name + b" [" + b", ".join([b"*" + previous] * 10) + b"]")
    error = refusal(parse_yaml, b"\n".join(lines), LimitsConfig())
    assert error.code == 400
    assert error.message == (
        "YAML aliases/anchors are not accepted in request bodies (line 1, column 4): write each value out"
    )


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b"a: &x 1\n", "line 1, column 4"),
        (b"a: 1\nb: [1, *x]\n", "line 2, column 8"),
        (b"base: {k: 1}\nother:\n  <<: *base\n", "line 3, column 7"),
        (b"a: &x\n  b: 1\n", "line 1, column 4"),
    ],
)
def test_any_anchor_or_alias_is_refused_where_it_stands(raw: bytes, where: str) -> None:
    error = refusal(parse_yaml, raw)
    assert (
        error.code == 400
        and f"YAML aliases/anchors are not accepted in request bodies ({where})" in error.message
    )


def test_yaml_nesting_is_bounded_while_composing() -> None:
    assert parse_yaml(b"a: " + b"[" * 7 + b"]" * 7, LIMITS) == {"a": [[[[[[[]]]]]]]}
    error = refusal(parse_yaml, b"a: " + b"[" * 8 + b"]" * 8)
    assert error.code == 400
    assert error.message == (
        "the request body nests deeper than 8 levels at line 1, column 11 (limits.max_body_depth)"
    )
    # Past libyaml's own bound (1000, met while it scans ahead) the answer is the same.
    assert "(limits.max_body_depth)" in refusal(parse_yaml, b"a: " + b"[" * 5000).message


def test_json_nesting_is_bounded_and_names_where() -> None:
    assert parse_json(b'{"a": ' + b"[" * 7 + b"]" * 7 + b"}", LIMITS)
    error = refusal(parse_json, b'{"a": {"b": ' + b"[" * 7 + b"]" * 7 + b"}}")
    assert error.code == 400
    assert error.message == (
        "the request body nests deeper than 8 levels at a.b.0.0.0.0.0.0 (limits.max_body_depth)"
    )
    # Past the parser's own recursion guard: the same refusal, without the place.
    deep = refusal(parse_json, b"[" * 100000 + b"]" * 100000)
    assert deep.code == 400 and deep.message.endswith("(limits.max_body_depth)")


@pytest.mark.parametrize("parse", [parse_json, parse_yaml])
def test_the_number_of_values_is_bounded(parse) -> None:
    # A list of n strings in an object: 1 object + 1 key + 1 list + n strings.
    fits = json.dumps({"k": ["v"] * 197}).encode()
    assert parse(fits, LIMITS) == {"k": ["v"] * 197}
    error = refusal(parse, json.dumps({"k": ["v"] * 198}).encode())
    assert error.code == 413 and "more than 200 values" in error.message
    assert error.message.endswith("(limits.max_body_nodes)")


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b'{"n": 9223372036854775807}', 2**63 - 1),
        (b'{"n": -9223372036854775808}', -(2**63)),
        (b'{"n": 1e308}', 1e308),
        (b'{"n": 1e-400}', 0.0),
        (b'{"n": -0.5}', -0.5),
    ],
)
def test_json_numbers_in_range_are_kept(raw: bytes, value: float) -> None:
    assert parse_json(raw, LIMITS) == {"n": value}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            b'{"n": 9223372036854775808}',
            "n: 9223372036854775808 is out of range: integers must fit in 64 bits",
        ),
        (
            b'{"n": -9223372036854775809}',
            "n: -9223372036854775809 is out of range: integers must fit in 64 bits",
        ),
        (
            b'{"n": ' + b"9" * 5000 + b"}",
            "n: a 5000-digit integer is out of range: integers must fit in 64 bits",
        ),
        (b'{"n": 1e309}', "n: 1e309 is not accepted: numbers must be finite"),
        (b'{"n": -1e400}', "n: -1e400 is not accepted: numbers must be finite"),
        (b'{"n": NaN}', "n: NaN is not accepted: numbers must be finite"),
        (b'{"n": [1, Infinity]}', "n.1: Infinity is not accepted: numbers must be finite"),
        (b'{"n": {"m": -Infinity}}', "n.m: -Infinity is not accepted: numbers must be finite"),
    ],
)
def test_json_numbers_out_of_range_are_refused_with_their_path(raw: bytes, problem: str) -> None:
    error = refusal(parse_json, raw)
    assert error.code == 400 and error.message == f"Invalid request body: {problem}"
    assert [p.field for p in error.problems] == [problem.split(":")[0]]


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"n: 0x7fffffffffffffff", 2**63 - 1),
        (b"n: -9223372036854775808", -(2**63)),
        (b"n: 1_000", 1000),
        (b"n: 1.5e+3", 1500.0),
        (b"n: 2024-01-02", "2024-01-02"),
        (b"n: 2024-01-02 10:00:00", "2024-01-02 10:00:00"),
        (b"n: 1e400", "1e400"),  # YAML 1.1 reads it as a string: the field's check decides
    ],
)
def test_yaml_scalars_become_json_values(raw: bytes, value: object) -> None:
    assert parse_yaml(raw, LIMITS) == {"n": value}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"n: 0x8000000000000000", "n: 0x8000000000000000 is out of range: integers must fit in 64 bits"),
        (b"n: " + b"9" * 5000, "n: a 5000-digit integer is out of range"),
        (b"n: .inf", "n: .inf is not accepted: numbers must be finite"),
        (b"n: -.Inf", "n: -.Inf is not accepted: numbers must be finite"),
        (b"n: .NaN", "n: .NaN is not accepted: numbers must be finite"),
        (b"n: 1.0e+400", "n: 1.0e+400 is not accepted: numbers must be finite"),
        (
            b"n: !!binary aGVsbG8=",
            "n: YAML tag !!binary is not accepted: request bodies hold JSON's types only",
        ),
        (b"n: !!set {a, b}", "n: YAML tag !!set is not accepted"),
        (b"n: !!omap [a: 1]", "n: YAML tag !!omap is not accepted"),
        (b"{1: a}", "body: key 1 is not a string (quote it)"),
        (b"env: {yes: a}", "env: key True is not a string (quote it)"),
        (b"{.nan: a}", "body: a key: .nan is not accepted: numbers must be finite"),
    ],
)
def test_yaml_values_outside_json_are_refused_with_their_path(raw: bytes, problem: str) -> None:
    error = refusal(parse_yaml, raw)
    assert error.code == 400 and problem in error.message, error.message


@pytest.mark.parametrize("parse", [parse_json, parse_yaml])
def test_a_nul_anywhere_is_refused_with_its_path(parse) -> None:
    raw = json.dumps({"meta": {"envVars": {"A\u0000B": "x", "C": "y\u0000"}, "tags": ["ok", "b\u0000d"]}})
    error = refusal(parse, raw.encode())
    assert [(p.field, p.problem) for p in error.problems] == [
        ("meta.envVars", "key 'A\\x00B' contains a NUL character"),
        ("meta.envVars.C", "contains a NUL character"),
        ("meta.tags.1", "contains a NUL character"),
    ]


def test_a_lone_surrogate_is_refused_with_its_path() -> None:
    error = refusal(parse_json, b'{"a": ["ok", "x\\ud800"], "\\udfff": 1}')
    assert [(p.field, p.problem) for p in error.problems] == [
        ("body", "key '\\udfff' contains a lone surrogate (\\udfff), which is not text"),
        ("a.1", "contains a lone surrogate (\\ud800), which is not text"),
    ]
    # A surrogate pair is one character (U+1F600), and fine.
    assert parse_json(b'{"a": "\\ud83d\\ude00"}', LIMITS) == {"a": "\U0001f600"}


def test_a_refusal_lists_at_most_a_few_problems() -> None:
    raw = json.dumps({"tags": ["\u0000"] * 50}).encode()
    error = refusal(parse_json, raw)
    assert len(error.problems) == MAX_PROBLEMS
    assert error.message.endswith(f"; and {50 - MAX_PROBLEMS} more")


def test_malformed_bodies_keep_their_messages() -> None:
    assert refusal(parse_json, b'{"a": ').message.startswith("malformed JSON body at line 1")
    assert refusal(parse_json, b'{"a": "\xff"}').message == "the request body is not UTF-8 text"
    assert refusal(parse_yaml, b"a: [unclosed\n").message.startswith("malformed YAML body at line")
    assert "but found another document" in refusal(parse_yaml, b"a: 1\n---\nb: 2\n").message
    assert (
        "could not determine a constructor"
        in refusal(parse_yaml, b"a: !!python/object:os.system x\n").message
    )


def test_answers_are_strict_json_even_for_a_stored_non_finite_number() -> None:
    body = ok({"spec": {"grace": math.inf, "scores": [1.5, -math.inf, math.nan]}}).body

    def refuse(constant: str) -> object:
        raise ValueError(constant)

    shown = json.loads(body, parse_constant=refuse)
    assert shown["result"] == {"spec": {"grace": None, "scores": [1.5, None, None]}}


def test_answers_are_utf8_even_with_a_lone_surrogate() -> None:
    body = ok({"name": "x\ud800"}).body
    assert json.loads(body.decode("utf-8"))["result"] == {"name": "x\ud800"}
