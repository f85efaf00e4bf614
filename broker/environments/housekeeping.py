"""Housekeeping of environment builds: a build unused for ``environments.keep_days`` is removed
from its cluster (``drop_environment``) and forgotten, never while work that has not ended uses
its hash. Kinds without an environment cache keep nothing to remove: their records are forgotten.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.orm import Session

from broker.environments.builds import forget, hashes_in_use, unused_since
from broker.environments.model import EnvironmentBuild
from broker.registry import ClusterRegistry
from broker.state import now
from broker.store.database import Database
from clusters.base import Capability
from clusters.errors import ClusterError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swept:
    """What one pass did: (cluster, hash) pairs removed, and those kept for work that uses them."""

    removed: list[tuple[str, str]]
    in_use: list[tuple[str, str]]


class EnvironmentHousekeeping:
    """Removes builds unused for ``keep_days`` days."""

    def __init__(self, db: Database, registry: ClusterRegistry, keep_days: float) -> None:
        self.db = db
        self.registry = registry
        self.keep_days = keep_days

    async def run_once(self) -> Swept:
        """One pass over the builds last used before ``keep_days`` ago."""
        before = now() - timedelta(days=self.keep_days)

        def candidates(session: Session) -> tuple[list[EnvironmentBuild], set[str]]:
            stale = unused_since(session, before)
            return stale, hashes_in_use(session, [b.hash for b in stale])

        stale, in_use = await self.db.run(candidates)
        removed: list[tuple[str, str]] = []
        kept: list[tuple[str, str]] = []
        for build in stale:
            if build.hash in in_use:
                kept.append((build.cluster, build.hash))
                continue
            unit = partial(self._forget_unused, cluster=build.cluster, env_hash=build.hash, before=before)
            if await self._drop(build) and await self.db.run(unit):
                removed.append((build.cluster, build.hash))
        return Swept(removed, kept)

    @staticmethod
    def _forget_unused(session: Session, cluster: str, env_hash: str, before: datetime) -> bool:
        if hashes_in_use(session, [env_hash]):
            return False  # work with it was submitted meanwhile: its next run rebuilds if need be
        return forget(session, cluster, env_hash, before)

    async def _drop(self, build: EnvironmentBuild) -> bool:
        """Remove the build from its cluster; True when it is gone (or there is nothing to remove)."""
        cluster = self.registry.get(build.cluster)
        if cluster is None:
            return True  # the cluster was removed from clusters.d: the record is all that is left
        adapter = cluster.adapter
        if Capability.ENVIRONMENT_CACHE not in adapter.capabilities:
            return True
        # Asked again right before removing: work with this hash may have been submitted meanwhile.
        if await self.db.run(lambda s: bool(hashes_in_use(s, [build.hash]))):
            return False
        try:
            dropped = await adapter.drop_environment(build.hash)
        except ClusterError as exc:
            log.warning(
                "cluster %s: could not remove environment %s: %s",
                build.cluster,
                build.hash[:16],
                cluster.config.mask(str(exc)),
            )
            return False
        if dropped:
            log.info(
                "cluster %s: removed environment %s (%s), unused", build.cluster, build.hash[:16], build.name
            )
        return dropped
