"""Config files with problems: every problem named with its key and line, and YAML errors that read
as PyYAML wrote them (problem and context, line and column) without ever repeating a value."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import ConfigError, load_broker_config, load_cluster_file
from broker.config.yaml_source import mask_quoted

SECRET = "s3cr3t-T0KEN-9f2c"


def refused(path: Path, text: str) -> ConfigError:
    path.write_text(text, encoding="utf-8")
    loader = load_broker_config if path.name == "broker.yaml" else load_cluster_file
    with pytest.raises(ConfigError) as info:
        loader(path)
    error = info.value
    for shown in (str(error), error.report(), repr(error.to_json()), repr(error)):
        assert SECRET not in shown
    return error


def located(error: ConfigError) -> list[tuple[str | None, int | None, int | None, str]]:
    return [(p.key, p.line, p.column, p.reason) for p in error.problems]


# -- every problem of a file ----------------------------------------------------------------------


def test_a_cluster_file_with_several_problems_lists_them_all_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    error = refused(
        path,
        f"name: c\nkind: local\nbogus: 1\nweight: {SECRET}\ncapacity: {{cpu: {SECRET}, gpux: 1}}\n",
    )
    assert located(error) == [
        ("bogus", 3, None, "unknown field"),
        ("weight", 4, None, "Input should be a valid number, unable to parse string as a number"),
        ("capacity.cpu", 5, None, "not a number of cores (examples: 2, 0.5, 500m)"),
        ("capacity.gpux", 5, None, "unknown field"),
    ]
    assert str(error) == (
        f"{path}: 4 problems: line 3: bogus: unknown field; "
        "line 4: weight: Input should be a valid number, unable to parse string as a number; "
        "line 5: capacity.cpu: not a number of cores (examples: 2, 0.5, 500m); "
        "line 5: capacity.gpux: unknown field"
    )
    assert error.report().splitlines() == [
        f"{path}: 4 problems:",
        "  line 3: bogus: unknown field",
        "  line 4: weight: Input should be a valid number, unable to parse string as a number",
        "  line 5: capacity.cpu: not a number of cores (examples: 2, 0.5, 500m)",
        "  line 5: capacity.gpux: unknown field",
    ]
    shown = error.to_json()
    assert (shown["key"], shown["line"]) == (None, None) and shown["reason"] == str(error).split(": ", 1)[1]
    assert [(p["key"], p["line"]) for p in shown["problems"]] == [  # type: ignore[union-attr]
        ("bogus", 3),
        ("weight", 4),
        ("capacity.cpu", 5),
        ("capacity.gpux", 5),
    ]
    assert "more problem" not in str(error)


def test_broker_yaml_with_several_problems_lists_them_all(tmp_path: Path) -> None:
    error = refused(tmp_path / "broker.yaml", "port: abc\nprot: 1\nloops:\n  lease_tll: 5\nauth: basic\n")
    assert [(p.key, p.line) for p in error.problems] == [
        ("port", 1),
        ("prot", 2),
        ("loops.lease_tll", 4),
        ("auth", 5),
    ]


def test_an_unknown_kind_is_not_repeated(tmp_path: Path) -> None:
    error = refused(tmp_path / "c.yaml", f"name: c\nkind: {SECRET}\n")
    assert (error.key, error.line) == ("kind", 2)
    assert error.reason.startswith("unknown cluster kind; expected one of ") and "local" in error.reason


def test_every_unset_environment_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_A", raising=False)
    monkeypatch.delenv("NO_SUCH_B", raising=False)
    error = refused(
        tmp_path / "c.yaml", "name: c\nkind: local\nlabels:\n  a: ${NO_SUCH_A}\n  b: ${NO_SUCH_B}\n"
    )
    assert located(error) == [
        ("labels.a", 4, None, "environment variable NO_SUCH_A is not set"),
        ("labels.b", 5, None, "environment variable NO_SUCH_B is not set"),
    ]


# -- YAML errors as YAML wrote them ---------------------------------------------------------------

YAML_CASES = [
    (
        "unclosed flow sequence",
        "name: a\nkind: local\nlabels: [x, y\n",
        4,
        1,
        "while parsing a flow sequence (line 3, column 9): expected ',' or ']', but got '<stream end>'",
    ),
    (
        "unclosed flow mapping",
        "name: a\nkind: local\nlabels: {x: y\n",
        4,
        1,
        "while parsing a flow mapping (line 3, column 9): expected ',' or '}', but got '<stream end>'",
    ),
    ("indented key", "name: a\nkind: local\n  weight: 2\n", 3, 9, "mapping values are not allowed here"),
    (
        "dedented key",
        "name: a\nkind: local\nlabels:\n  a: b\n c: d\n",
        5,
        2,
        "while parsing a block mapping (line 1, column 1): expected <block end>, but found "
        "'<block mapping start>'",
    ),
    (
        "tab indentation",
        "name: a\n\tkind: local\n",
        2,
        1,
        "while scanning for the next token: found character '\\t' that cannot start any token",
    ),
    (
        "unclosed double quote holding a secret",
        f'name: a\nkind: ray\naddress: http://h:8265\nheaders: {{Authorization: "Bearer {SECRET}\n',
        5,
        1,
        "while scanning a quoted scalar (line 4, column 26): found unexpected end of stream",
    ),
    (
        "unclosed single quote holding a secret",
        f"name: a\nkind: ray\naddress: http://h:8265\nheaders:\n  Authorization: 'Bearer {SECRET}\n",
        6,
        1,
        "while scanning a quoted scalar (line 5, column 18): found unexpected end of stream",
    ),
    (
        "reserved character starting a secret",
        f"name: a\nkind: local\ntoken: @{SECRET}\n",
        3,
        8,
        "while scanning for the next token: found character '@' that cannot start any token",
    ),
    (
        "undefined alias named by a secret",
        f"name: a\nkind: local\ntoken: *{SECRET}\n",
        3,
        8,
        "found undefined alias '…'",
    ),
    (
        "unknown tag named by a secret",
        f"name: a\nkind: local\ntoken: !{SECRET} x\n",
        3,
        8,
        "could not determine a constructor for the tag '…'",
    ),
    (
        "duplicate anchor named by a secret",
        f"name: a\nkind: local\nx: &{SECRET} 1\ny: &{SECRET} 2\n",
        4,
        4,
        "found duplicate anchor '…'; first occurrence (line 3, column 4): second occurrence",
    ),
    (
        "bad escape inside a secret",
        f'name: a\nkind: local\ntoken: "{SECRET}\\q"\n',
        3,
        27,
        "while scanning a double-quoted scalar (line 3, column 8): found unknown escape character '…'",
    ),
    (
        "impossible date",
        "name: a\nkind: local\nweight: 2020-13-45\n",
        3,
        9,
        "this value is not a valid timestamp",
    ),
    (
        "explicit int tag on a secret",
        f"name: a\nkind: local\nweight: !!int {SECRET}\n",
        3,
        9,
        "this value is not a valid int",
    ),
    (
        "two documents",
        "name: a\nkind: local\n---\nname: b\n",
        3,
        1,
        "expected a single document in the stream (line 1, column 1): but found another document",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "message"), [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES]
)
def test_yaml_errors_read_as_yaml_wrote_them(
    tmp_path: Path, text: str, line: int, column: int, message: str
) -> None:
    path = tmp_path / "c.yaml"
    error = refused(path, text)
    assert located(error) == [(None, line, column, f"not valid YAML: {message}")]
    assert str(error) == f"{path}:{line}:{column}: not valid YAML: {message}"
    assert error.to_json()["column"] == column


def test_a_repeated_key_is_refused_at_the_repeat(tmp_path: Path) -> None:
    error = refused(
        tmp_path / "c.yaml",
        f"name: a\nkind: ray\naddress: http://h:8265\nheaders:\n  X-Key: {SECRET}\n  X-Key: {SECRET}\nname: b\n",
    )
    assert located(error) == [
        ("headers.X-Key", 6, 3, "duplicate key (first given at line 5)"),
        ("name", 7, 1, "duplicate key (first given at line 1)"),
    ]


def test_a_nul_byte_and_bad_utf8_are_located(tmp_path: Path) -> None:
    error = refused(tmp_path / "c.yaml", "name: a\nkind: local\nx: ab\x00cd\n")
    assert located(error) == [
        (None, 3, 6, "not valid YAML: unacceptable character #x0000: special characters are not allowed")
    ]
    path = tmp_path / "d.yaml"
    path.write_bytes(b"name: a\nkind: local\nx: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_cluster_file(path)
    assert located(info.value) == [(None, 3, 4, "not UTF-8 text")]


def test_masking_keeps_yaml_words_and_syntax_characters_only() -> None:
    assert mask_quoted("expected ',' or ']', but got '<stream end>'") == (
        "expected ',' or ']', but got '<stream end>'"
    )
    assert mask_quoted("found character '\\t' that cannot start any token") == (
        "found character '\\t' that cannot start any token"
    )
    assert mask_quoted("found unknown escape character 'q'") == "found unknown escape character '…'"
    assert mask_quoted('found undefined alias "it\'s"') == "found undefined alias '…'"
    assert mask_quoted(f"found undefined alias '{SECRET}'; and more") == "found undefined alias '…'; and more"
