"""Parse a configuration file's YAML, refusing it with problems that read as YAML wrote them.

A YAML error becomes PyYAML's own words, context first, with the line and column of each part:
``while parsing a flow sequence (line 3, column 8): expected ',' or ']', but got '<stream end>'``
at line 4, column 1. PyYAML quotes what it stumbled on; a quoted fragment is kept when it is part
of YAML's vocabulary (a token such as ``'<stream end>'`` or ``']'``) or one character that is not a
letter or digit (``'\\t'``, ``'@'``: the syntax character at fault), and anything else (an alias,
an anchor, a tag, a letter inside a quoted string) is text from the file, which may be a secret,
so it becomes ``'…'``. PyYAML's snippet of the offending line is never used.

Beyond what PyYAML checks, a mapping that gives the same key twice is refused (PyYAML would keep
the last value silently), and a value PyYAML cannot construct (an impossible date) is a located
problem instead of a bare ``ValueError``.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from broker.config.errors import ConfigProblem

#: Every token name PyYAML puts in its messages (``'<stream end>'``, ``']'``, ``'<block end>'``...).
_TOKEN_IDS = frozenset(
    str(vars(token)["id"])
    for token in vars(yaml.tokens).values()
    if isinstance(token, type) and issubclass(token, yaml.tokens.Token) and "id" in vars(token)
)
#: A Python repr of a string as PyYAML's ``%r`` writes it (either quote, with backslash escapes).
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
_MASK = "'…'"
_YAML_TAG = "tag:yaml.org,2002:"
_MERGE = _YAML_TAG + "merge"


def _keep(fragment: str) -> str:
    try:
        text = ast.literal_eval(fragment)
    except (ValueError, SyntaxError):
        return _MASK
    if not isinstance(text, str):
        return _MASK
    if text in _TOKEN_IDS or (len(text) == 1 and not text.isalnum()):
        return fragment
    return _MASK


def mask_quoted(message: str) -> str:
    """``message`` with every quoted fragment that may be file content replaced by ``'…'``."""
    return _QUOTED.sub(lambda match: _keep(match.group(0)), message)


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _same_place(a: Any, b: Any) -> bool:
    return a is not None and b is not None and (a.line, a.column) == (b.line, b.column)


def yaml_problem(exc: yaml.YAMLError, text: str = "") -> ConfigProblem:
    """PyYAML's error as one problem: its context and problem texts, masked, at its marks.

    The problem's line and column are the problem mark's (else the context mark's); the context's
    own position is written after it when it differs, as PyYAML prints it.
    """
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return ConfigProblem(
            f"not valid YAML: unacceptable character #x{exc.character:04x}: {exc.reason}",
            line=line,
            column=column,
        )
    if not isinstance(exc, yaml.MarkedYAMLError):
        return ConfigProblem("not valid YAML")
    parts: list[str] = []
    if exc.context:
        context = mask_quoted(exc.context)
        elsewhere = exc.problem is None or not _same_place(exc.context_mark, exc.problem_mark)
        if exc.context_mark is not None and elsewhere:
            context += f" ({_at(exc.context_mark)})"
        parts.append(context)
    if exc.problem:
        parts.append(mask_quoted(exc.problem))
    if exc.note:
        parts.append(mask_quoted(exc.note))
    mark = exc.problem_mark or exc.context_mark
    return ConfigProblem(
        "not valid YAML: " + (": ".join(parts) or "cannot be parsed"),
        line=mark.line + 1 if mark is not None else None,
        column=mark.column + 1 if mark is not None else None,
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader whose failures to construct a value are located YAML errors, never the value."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, ArithmeticError) as exc:
            tag = str(node.tag)
            what = f"a valid {tag.removeprefix(_YAML_TAG)}" if tag.startswith(_YAML_TAG) else "readable"
            raise ConstructorError(None, None, f"this value is not {what}", node.start_mark) from exc


def _key_text(node: yaml.Node) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def duplicate_keys(root: yaml.Node | None) -> list[ConfigProblem]:
    """Every key a mapping gives a second time, at the repeat, naming where it was first given."""
    problems: list[ConfigProblem] = []
    seen_nodes: set[int] = set()

    def walk(node: yaml.Node, path: str) -> None:
        if id(node) in seen_nodes:  # an alias: checked where its anchor is
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], yaml.Node] = {}
            for key_node, value_node in node.value:
                text = _key_text(key_node)
                child = f"{path}.{text}" if path and text is not None else (text or path)
                if text is not None and key_node.tag != _MERGE:
                    identity = (str(key_node.tag), text)
                    if identity in first:
                        problems.append(
                            ConfigProblem(
                                f"duplicate key (first given at line {first[identity].start_mark.line + 1})",
                                key=child,
                                line=key_node.start_mark.line + 1,
                                column=key_node.start_mark.column + 1,
                            )
                        )
                    else:
                        first[identity] = key_node
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{path}.{index}" if path else str(index))

    if root is not None:
        walk(root, "")
    return problems


class YamlRefused(Exception):
    """The text is not acceptable YAML; ``problems`` says why and where."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("; ".join(p.located() for p in problems))
        self.problems = problems


def parse_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """The data of one YAML document and its node tree (for line numbers); :class:`YamlRefused` if bad."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader checks every character here
        node = loader.get_single_node()
        duplicates = duplicate_keys(node)
        if duplicates:
            raise YamlRefused(duplicates)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise YamlRefused([yaml_problem(exc, text)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, node
