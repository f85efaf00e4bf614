"""The policy as this broker process enforces it: an Authorizer for the newest revision.

Every replica checks the revision number twice a second (one tiny query) and rebuilds its
Authorizer when another replica changed the policy, so an edit anywhere is enforced everywhere
within a second. An edit made here is picked up at once.
"""

from __future__ import annotations

import logging

from broker.policy_store import PolicySnapshot, current_revision, snapshot
from broker.store.database import Database
from policies.authorizer import Authorizer

log = logging.getLogger(__name__)


class PolicyRuntime:
    """Holds the current :class:`Authorizer`; ``refresh`` swaps in a new one when the revision moved."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._install(db.call(snapshot))

    def _install(self, snap: PolicySnapshot) -> None:
        teams: dict[str, list[str]] = {}
        for line in snap.lines:
            if line.ptype == "g" and line.values[1] == "member" and line.values[2] != "*":
                teams.setdefault(line.values[0], []).append(line.values[2])
        self._teams = {user: sorted(names) for user, names in teams.items()}
        self.authorizer = Authorizer(snap.lines, snap.revision)

    def teams_of(self, user: str) -> list[str]:
        """The teams ``user`` is a member of (``g, user, member, team`` lines), sorted."""
        return self._teams.get(user, [])

    @property
    def revision(self) -> int:
        return self.authorizer.revision or 0  # the runtime always builds it from a stored revision

    async def refresh(self) -> bool:
        """Reload if the stored revision differs from the enforced one; True when it reloaded."""
        stored = await self.db.run(current_revision)
        if stored == self.authorizer.revision:
            return False
        snap = await self.db.run(snapshot)
        self._install(snap)
        log.info("enforcing policy revision %d (%d lines)", snap.revision, len(snap.lines))
        return True
