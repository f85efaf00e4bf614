"""A lease row in the database decides which broker replica runs the dispatch and monitor loops.

The holder renews it well inside its time to live; another replica takes it over only once it
has expired. Both the take-over and the renewal are one conditional UPDATE, so two replicas can
never both believe they hold it after the same write.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.state import now
from broker.store.database import Database
from broker.store.models import Lease


def try_acquire(session: Session, name: str, holder: str, ttl: float) -> bool:
    """Take or renew lease ``name`` for ``holder``; True when ``holder`` has it afterwards."""
    stamp = now()
    result = cast(
        "CursorResult[Any]",
        session.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < stamp))
            .values(holder=holder, expires_at=stamp + timedelta(seconds=ttl))
        ),
    )
    if result.rowcount == 1:
        return True
    if session.get(Lease, name) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(Lease(name=name, holder=holder, expires_at=stamp + timedelta(seconds=ttl)))
    except IntegrityError:
        return False
    return True


def release(session: Session, name: str, holder: str) -> None:
    """Give the lease up at once (clean shutdown), so another replica need not wait for it to expire."""
    session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=now() - timedelta(seconds=1))
    )


class LeaseKeeper:
    """Holds one named lease for this process and says whether it is the leader."""

    def __init__(self, db: Database, name: str, holder: str, ttl: float) -> None:
        self.db = db
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.leader = False

    async def renew(self) -> bool:
        self.leader = await self.db.run(lambda s: try_acquire(s, self.name, self.holder, self.ttl))
        return self.leader

    async def release(self) -> None:
        if self.leader:
            await self.db.run(lambda s: release(s, self.name, self.holder))
            self.leader = False
