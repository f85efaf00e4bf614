"""One-row reads on SQLite without leaving the event loop's thread, for a lookup every request makes.

Handing a read to a thread costs far more than the read (measured on the 2-core test host: about
200 µs of CPU for the hop, 300 µs more for SQLAlchemy's connection pool and result machinery,
against about 20 µs for a primary-key ``SELECT`` through :mod:`sqlite3` itself). In WAL mode a
reader does not wait for the writer's lock (SQLite only retries briefly while a commit updates the
WAL index), so the statement runs right here, on a connection of its own that refuses to wait for
a lock at all (``timeout=0``): if SQLite reports the database busy (a recovery after a crash),
:meth:`QuickReads.first` says so and the caller reads the usual way.

The statement is a Core ``select`` of columns, compiled once for SQLite; its columns' own result
processors turn the stored values into what SQLAlchemy would return (aware UTC datetimes).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select

#: What :meth:`QuickReads.first` returns when it could not read here (the caller reads the usual way).
UNAVAILABLE: Any = object()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the bound parameters, in the order of the SQL's '?'
    processors: tuple[Callable[[Any], Any] | None, ...]


class QuickReads:
    """Single-row ``select`` statements run on the calling thread, for a SQLite database file."""

    def __init__(self, engine: Engine) -> None:
        database = engine.url.database
        self._path = (
            database if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:") else None
        )
        self._dialect = engine.dialect
        self._compiled: dict[int, tuple[Select[*tuple[Any, ...]], _Compiled]] = {}
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # event loops in several threads (tests) share the connection

    @property
    def available(self) -> bool:
        return self._path is not None

    def first(self, statement: Select[*tuple[Any, ...]], params: Mapping[str, Any]) -> Any:
        """The first row of ``statement`` as a tuple, None when there is none, or :data:`UNAVAILABLE`
        (not SQLite, or SQLite busy). Parameters are passed as given: strings and numbers."""
        if self._path is None:
            return UNAVAILABLE
        compiled = self._compile(statement)
        try:
            with self._lock:
                if self._conn is None:
                    self._conn = sqlite3.connect(
                        self._path, timeout=0, isolation_level=None, check_same_thread=False
                    )
                # Read to the end: a statement left open would hold its snapshot (and the checkpoint).
                rows = self._conn.execute(compiled.sql, [params[n] for n in compiled.names]).fetchall()
        except sqlite3.OperationalError:
            return UNAVAILABLE
        if not rows:
            return None
        row = rows[0]
        return tuple(p(v) if p is not None else v for p, v in zip(compiled.processors, row, strict=True))

    def _compile(self, statement: Select[*tuple[Any, ...]]) -> _Compiled:
        cached = self._compiled.get(id(statement))
        if cached is not None and cached[0] is statement:
            return cached[1]
        compiled = statement.compile(dialect=self._dialect)
        processors = tuple(
            column.type.dialect_impl(self._dialect).result_processor(self._dialect, None)
            for column in statement.selected_columns
        )
        found = _Compiled(str(compiled), tuple(compiled.positiontup or ()), processors)
        self._compiled[id(statement)] = (statement, found)
        return found

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
