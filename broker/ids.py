"""Submarine-style ids that never repeat: ``experiment-<ms>-<NNNN>``, ``notebook_<ms>_<NNNN>``.

Submarine stamped ids with the server's start time and an in-memory counter, so a restart in the
same millisecond, or two servers, could repeat an id. Here each process claims its millisecond
stamp in the database (a row per prefix and stamp, primary key), bumping it until the claim is
its own; the counter then only has to be unique within the process.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.state import now
from broker.store.database import Database
from broker.store.models import IdEpoch


class IdGenerator:
    """Ids of one kind (``experiment`` with ``-``, ``notebook`` with ``_``) for one broker process."""

    def __init__(self, db: Database, prefix: str, separator: str, holder: str) -> None:
        self.prefix = prefix
        self.separator = separator
        self.epoch_ms = self._claim(db, holder)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def _claim(self, db: Database, holder: str) -> int:
        candidate = int(time.time() * 1000)
        for _ in range(1000):

            def newest(session: Session) -> int | None:
                return session.scalar(select(func.max(IdEpoch.epoch_ms)).where(IdEpoch.prefix == self.prefix))

            latest = db.call(newest)
            if latest is not None and latest >= candidate:
                candidate = latest + 1
            try:
                db.call(
                    _adder(IdEpoch(prefix=self.prefix, epoch_ms=candidate, holder=holder, claimed_at=now()))
                )
                return candidate
            except IntegrityError:
                candidate += 1
        raise RuntimeError(f"could not claim an id stamp for {self.prefix} ids")

    def next(self) -> str:
        """The next id: ``<prefix><sep><epoch ms><sep><counter, at least 4 digits>``."""
        with self._lock:
            seq = next(self._counter)
        return f"{self.prefix}{self.separator}{self.epoch_ms}{self.separator}{seq:04d}"


def new_uid() -> str:
    """A fresh attempt uid (what cluster objects are named after)."""
    return uuid.uuid4().hex


def _adder(row: IdEpoch) -> Callable[[Session], None]:
    """A unit of work that adds ``row``."""

    def add(session: Session) -> None:
        session.add(row)

    return add
