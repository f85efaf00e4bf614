"""The one exception that means "safe to show a user", turned into a response in one place.

An error about the request's content names every field it refuses: ``problems`` is a list of
:class:`FieldProblem`, which the REST handler puts in the envelope's ``attributes.errors`` as
``[{field, problem}, ...]`` beside the readable ``message``. An error built with a single
``field`` gets that one item, so every 400 naming a field carries ``attributes.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    """One refused field of a request: its path (``spec.Worker.replicas``) and what is wrong with it."""

    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


def problems_message(prefix: str, problems: Sequence[FieldProblem]) -> str:
    """``Invalid experiment spec: meta.foo: unknown field; spec.Worker.replicas: ...``."""
    return f"{prefix}: {'; '.join(str(p) for p in problems)}"


def _problem_in(message: str, field: str) -> str:
    """The part of ``message`` after ``<field>: `` (the whole message when it does not name it so)."""
    _, found, rest = message.partition(f"{field}: ")
    return rest if found and rest else message


class ApiError(Exception):
    """A problem the caller can act on: an HTTP code and a message naming what is wrong.

    ``field`` names the one refused field; ``problems`` lists every refused field (its first
    item's field becomes ``field``). With only ``field``, the problem is the message's text after
    ``<field>: ``.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        field: str | None = None,
        problems: Sequence[FieldProblem] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.problems = list(problems)
        if not self.problems and field is not None:
            self.problems = [FieldProblem(field, _problem_in(message, field))]
        self.field = field if field is not None else (self.problems[0].field if self.problems else None)


class NotFound(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


class BadRequest(ApiError):
    def __init__(
        self, message: str, *, field: str | None = None, problems: Sequence[FieldProblem] = ()
    ) -> None:
        super().__init__(400, message, field=field, problems=problems)


class Conflict(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(409, message)
