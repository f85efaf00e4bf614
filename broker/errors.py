"""The one exception that means "safe to show a user", turned into a response in one place."""

from __future__ import annotations


class ApiError(Exception):
    """A problem the caller can act on: an HTTP code and a message naming what is wrong."""

    def __init__(self, code: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class NotFound(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


class BadRequest(ApiError):
    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(400, message, field=field)


class Conflict(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(409, message)
