"""A refused configuration file and every problem found in it, each located by key and line.

No text here ever comes from a value in the file: a reason names the key and what is wrong
with it, never what was written there (a value may be a secret).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a file: what is wrong, and where (key path, 1-based line and column)."""

    reason: str
    key: str | None = None
    line: int | None = None
    column: int | None = None

    def located(self) -> str:
        """``line 3, column 8: token: unknown field`` (the parts that are known)."""
        where = ""
        if self.line is not None:
            where = f"line {self.line}" + (f", column {self.column}" if self.column is not None else "")
        text = f"{self.key}: {self.reason}" if self.key else self.reason
        return f"{where}: {text}" if where else text

    def to_json(self) -> dict[str, object]:
        return {"key": self.key, "line": self.line, "column": self.column, "reason": self.reason}


class ConfigError(Exception):
    """A refused configuration file with all of its problems.

    ``str()`` reads ``file:line: key: reason`` for one problem (``file:line:column: ...`` when
    the column is known) and ``file: 2 problems: line 3: key: reason; line 5: key: reason`` for
    several. ``reason``, ``key``, ``line`` and ``column`` are the problem's when there is one;
    with several, ``reason`` lists them all and the others are None.
    """

    def __init__(
        self,
        file: str,
        reason: str | None = None,
        key: str | None = None,
        line: int | None = None,
        *,
        column: int | None = None,
        problems: Sequence[ConfigProblem] = (),
    ) -> None:
        self.file = file
        self.problems: list[ConfigProblem] = list(problems) or [
            ConfigProblem(reason or "refused", key, line, column)
        ]
        super().__init__(str(self))

    @property
    def _single(self) -> ConfigProblem | None:
        return self.problems[0] if len(self.problems) == 1 else None

    @property
    def reason(self) -> str:
        one = self._single
        if one is not None:
            return one.reason
        return f"{len(self.problems)} problems: " + "; ".join(p.located() for p in self.problems)

    @property
    def key(self) -> str | None:
        return self._single.key if self._single else None

    @property
    def line(self) -> int | None:
        return self._single.line if self._single else None

    @property
    def column(self) -> int | None:
        return self._single.column if self._single else None

    def __str__(self) -> str:
        one = self._single
        if one is None:
            return f"{self.file}: {self.reason}"
        where = self.file
        if one.line is not None:
            where += f":{one.line}" + (f":{one.column}" if one.column is not None else "")
        return f"{where}: {one.key}: {one.reason}" if one.key else f"{where}: {one.reason}"

    def report(self) -> str:
        """``str()`` for one problem; for several, the file and then one indented line each."""
        if self._single is not None:
            return str(self)
        lines = [f"  {p.located()}" for p in self.problems]
        return "\n".join([f"{self.file}: {len(self.problems)} problems:", *lines])

    def to_json(self) -> dict[str, object]:
        """``{file, line, column, key, reason, problems: [{key, line, column, reason}, ...]}``."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "key": self.key,
            "reason": self.reason,
            "problems": [p.to_json() for p in self.problems],
        }
