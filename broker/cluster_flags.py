"""Cordon and drain, kept in the database so every broker replica (the lease holder above all,
which is the one that places work) honours an admin's call whichever replica received it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.registry import ClusterRegistry
from broker.state import now
from broker.store.database import Database
from broker.store.models import ClusterFlag


def _load(session: Session) -> dict[str, tuple[bool, bool]]:
    return {f.name: (f.cordoned, f.draining) for f in session.scalars(select(ClusterFlag)).all()}


class ClusterFlags:
    """Writes an admin's flags and applies the stored ones to this replica's registry."""

    def __init__(self, db: Database, registry: ClusterRegistry) -> None:
        self.db = db
        self.registry = registry

    def _apply(self, flags: dict[str, tuple[bool, bool]]) -> None:
        for cluster in self.registry.all():
            cluster.cordoned, cluster.draining = flags.get(cluster.name, (False, False))

    def load(self) -> None:
        """Apply the stored flags now (start-up)."""
        self._apply(self.db.call(_load))

    async def refresh(self) -> None:
        """Apply what any replica stored (called every second)."""
        self._apply(await self.db.run(_load))

    async def set(self, name: str, *, cordoned: bool, draining: bool, user: str) -> None:
        """Store an admin's flags for ``name`` and apply them here at once."""

        def save(session: Session) -> None:
            row = session.get(ClusterFlag, name)
            if row is None:
                row = ClusterFlag(name=name)
                session.add(row)
            row.cordoned, row.draining, row.updated_by, row.updated_at = cordoned, draining, user, now()

        await self.db.run(save)
        cluster = self.registry.get(name)
        if cluster is not None:
            cluster.cordoned, cluster.draining = cordoned, draining
