"""The live cluster registry: adapters built from cluster configs, with their latest health.

The registry holds no database state: a cluster's condition is what its last health check said.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from broker.state import now
from clusters.base import Capability, ClusterAdapter, Health
from clusters.config import ClusterConfig
from clusters.kinds import adapter_class
from policies.placement import ClusterView
from runtimes.plan import ZERO, Resources

log = logging.getLogger(__name__)


@dataclass
class ClusterState:
    """One registered cluster: its adapter and what its last health check said."""

    config: ClusterConfig
    adapter: ClusterAdapter
    #: The condition shown to users: Unknown, Ready, Unreachable, Cordoned or Draining.
    state: str = "Unknown"
    message: str = "not checked yet"
    health: Health | None = None
    last_check: datetime | None = None
    #: Capacity promised to dispatches since the last health check, so one tick never overbooks.
    reserved: Resources = ZERO
    #: None before the first check; False while health checks fail.
    reachable: bool | None = None
    #: When the current run of failed checks began (kept across retries); None while reachable.
    unreachable_since: datetime | None = None
    failed_checks: int = 0
    next_check: datetime | None = None
    cordoned: bool = False
    draining: bool = False
    #: Its file is gone: it takes no new work and leaves the registry once idle.
    removed: bool = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def ready(self) -> bool:
        return self.state == "Ready"

    @property
    def total(self) -> Resources:
        return self.health.total if self.health else ZERO

    @property
    def free(self) -> Resources:
        base = self.health.free if self.health else ZERO
        return Resources(
            cpu=max(0.0, base.cpu - self.reserved.cpu),
            memory=max(0, base.memory - self.reserved.memory),
            gpu=max(0, base.gpu - self.reserved.gpu),
        )

    def view(self) -> ClusterView:
        """This cluster as the placement engine sees it."""
        caps = frozenset(
            flag.name.lower() for flag in Capability if flag.name and flag in self.adapter.capabilities
        )
        return ClusterView(
            name=self.name,
            kind=self.config.kind,
            labels=dict(self.config.labels),
            weight=self.config.weight,
            ready=self.ready,
            state=self.state,
            capabilities=caps,
            total=self.total,
            free=self.free,
            message=self.message if not self.ready else "",
            running=self.health.running if self.health else 0,
        )


class ClusterRegistry:
    """Every cluster the broker may place work on, by name."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self._clusters: dict[str, ClusterState] = {}

    def add(self, config: ClusterConfig) -> ClusterState:
        """Register (or replace) a cluster from its config."""
        adapter = adapter_class(config.kind)(config, data_dir=self.data_dir)
        state = ClusterState(config=config, adapter=adapter)
        self._clusters[config.name] = state
        return state

    def get(self, name: str) -> ClusterState | None:
        return self._clusters.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._clusters

    def all(self) -> list[ClusterState]:
        """Every cluster, by name."""
        return [self._clusters[name] for name in sorted(self._clusters)]

    async def check(self, cluster: ClusterState) -> None:
        """Ask one cluster for its health and record the answer."""
        try:
            health = await cluster.adapter.health()
        except Exception as exc:  # an adapter bug must not stop the health loop
            log.exception("health check of cluster %s failed", cluster.name)
            health = Health(reachable=False, message=f"health check failed: {exc}")
        cluster.last_check = now()
        cluster.reserved = ZERO
        if health.reachable:
            cluster.health = health
            cluster.state, cluster.message = "Ready", health.message
        else:
            cluster.state, cluster.message = "Unreachable", health.message or "did not answer"

    async def check_all(self) -> None:
        for cluster in self.all():
            await self.check(cluster)

    async def close(self) -> None:
        for cluster in self.all():
            await cluster.adapter.close()
