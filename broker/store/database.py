"""Engine creation and the one way the async server reaches the database.

SQLAlchemy runs synchronously here; :meth:`Database.run` executes a function with a session off
the event loop and commits it. SQLite gets a single writer thread (many threads contending for its
write lock give a far worse tail than one, see ../shared/reference/run-here.md §7) that commits
whatever units of work queued up meanwhile together, each in its own savepoint: one fsync-bound
commit then serves a burst of submissions, and a unit that fails rolls back alone.
PostgreSQL gets a pool of threads, one transaction per unit. :meth:`Database.read` runs read-only
work beside the writer (WAL lets SQLite readers run while it writes), and :meth:`Database.first`
reads one row for a lookup every request makes (an API token) without waiting in the writer's queue
behind commits, on SQLite without even leaving the event loop's thread.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Select, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from broker.store.quick_read import UNAVAILABLE, QuickReads

T = TypeVar("T")
log = logging.getLogger(__name__)

#: The most units of work one group commit takes.
MAX_BATCH = 64


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, open transactions, so SAVEPOINT works as documented.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite in WAL mode, or any SQLAlchemy URL (PostgreSQL in production)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


_Unit = tuple[Callable[[Session], Any], Future[Any]]


class _GroupCommitWriter:
    """One thread running queued units of work, committing those that waited together."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._queue: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="db-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Session], T]) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((fn, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(more)
            # A caller that gave up (cancelled, e.g. at shutdown) is skipped; the others can no
            # longer be cancelled, so their result is always delivered.
            batch = [unit for unit in batch if unit[1].set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                if len(batch) == 1:
                    self._run_alone(*batch[0])
                else:
                    self._run_together(batch)
            except BaseException as exc:  # the writer must outlive any unit; never leave a caller waiting
                log.exception("database writer failed on a batch of %d", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)

    def _run_alone(self, fn: Callable[[Session], Any], future: Future[Any]) -> None:
        try:
            with self._sessions.begin() as session:
                result = fn(session)
        except BaseException as exc:  # handed to the awaiting caller
            future.set_exception(exc)
        else:
            future.set_result(result)

    def _run_together(self, batch: list[_Unit]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            with self._sessions.begin() as session:
                for fn, future in batch:
                    try:
                        # The savepoint's flush happens on leaving the block: it can fail there too.
                        with session.begin_nested():
                            result = fn(session)
                    except Exception as exc:
                        outcomes.append((future, None, exc))
                    else:
                        outcomes.append((future, result, None))
        except BaseException as exc:
            log.warning("group commit of %d units failed: %s", len(batch), exc)
            for _, future in batch:
                future.set_exception(exc)
            return
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


class Database:
    """Sessions for the server: ``await db.run(fn)`` runs ``fn(session)`` off the event loop and commits."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = _GroupCommitWriter(self.sessions) if self.is_sqlite else None
        self._executor = None if self.is_sqlite else ThreadPoolExecutor(8, thread_name_prefix="db")
        self._readers = (
            ThreadPoolExecutor(4, thread_name_prefix="db-read") if self.is_sqlite else self._executor
        )
        self._quick = QuickReads(self.engine)

    def session(self) -> Session:
        """A new session for synchronous callers (the CLI, tests, migrations)."""
        return self.sessions()

    def call(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in a transaction, here and now; commit on success, roll back on error."""
        with self.sessions.begin() as session:
            return fn(session)

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in a transaction (perhaps shared with others, each in a savepoint)."""
        if self._writer is not None:
            return await asyncio.wrap_future(self._writer.submit(fn))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.call, fn)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run read-only ``fn(connection)`` (Core statements, no ORM session: cheap enough for every
        request) off the event loop in a transaction of its own, beside the writer; it sees what was
        committed when it starts, and whatever it changes is rolled back."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, fn)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            try:
                return fn(conn)
            finally:
                conn.rollback()

    async def first(
        self, statement: Select[*tuple[Any, ...]], params: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        """The first row of a Core ``select`` of columns, as a tuple (None: no row). On a SQLite file
        it is read on this thread (:mod:`broker.store.quick_read`), elsewhere through :meth:`read`."""
        row = self._quick.first(statement, params)
        if row is not UNAVAILABLE:
            return row  # type: ignore[no-any-return]
        found = await self.read(lambda conn: conn.execute(statement, dict(params)).first())
        return tuple(found) if found is not None else None

    def dispose(self) -> None:
        """Finish queued work, close every connection and stop the threads."""
        if self._writer is not None:
            self._writer.close()
        self._quick.close()
        if self._readers is not None and self._readers is not self._executor:
            self._readers.shutdown(wait=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.engine.dispose()
