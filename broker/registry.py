"""The live cluster registry: adapters built from cluster configs, with their latest condition.

The registry holds no database state: a cluster's condition is what its health checks said plus
the admin flags (cordon, drain) and whether its file is gone. The flags are stored in the
database and copied here by :class:`broker.cluster_flags.ClusterFlags`, so every broker replica
honours them.

Health checks back off after failures: the n-th failure in a row schedules the next check
``health_interval × 2^(n-1)`` seconds later (at most :data:`MAX_BACKOFF`); a success resets it.
One failed check is enough to take a cluster out of placement (``ready`` is False at once).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from broker import redaction
from broker.state import now
from clusters.base import PLACEMENT, Capability, ClusterAdapter, Health
from clusters.config import ClusterConfig
from clusters.kinds import adapter_class
from policies.placement import ClusterView
from runtimes.plan import ZERO, Resources

log = logging.getLogger(__name__)

#: The longest wait between two health checks of a failing cluster, in seconds.
MAX_BACKOFF = 60.0


@dataclass
class ClusterState:
    """One registered cluster: its adapter, its last health check and its admin flags."""

    config: ClusterConfig
    adapter: ClusterAdapter
    #: The last health message: the last error while unreachable.
    message: str = "not checked yet"
    health: Health | None = None
    last_check: datetime | None = None
    #: Capacity promised to dispatches since the last health check, so one tick never overbooks.
    reserved: Resources = ZERO
    #: None before the first check; False while health checks fail.
    reachable: bool | None = None
    #: When the current run of failed checks began (kept across retries); None while reachable.
    unreachable_since: datetime | None = None
    #: Failed checks in a row (0 while reachable).
    failed_checks: int = 0
    #: When the next health check is due; None before the first check.
    next_check: datetime | None = None
    #: Set by an admin: no new work, running work continues.
    cordoned: bool = False
    #: Set by an admin: no new work, running work continues (``uncordon`` clears it).
    draining: bool = False
    #: Its file is gone: it takes no new work and leaves the registry once idle.
    removed: bool = False
    #: The clusters.d file that defines it (None when added in code).
    source: str | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def usable(self) -> bool:
        """Whether the last answer of the cluster said it can run new work (see Health.usable)."""
        return self.health.usable if self.health is not None else True

    @property
    def state(self) -> str:
        """Unreachable, NotReady, Draining, Cordoned, Unknown (never checked) or Ready, in that
        precedence. NotReady: it answers but cannot run new work (the message says why)."""
        if self.reachable is False:
            return "Unreachable"
        if self.reachable is True and not self.usable:
            return "NotReady"
        if self.draining or self.removed:
            return "Draining"
        if self.cordoned:
            return "Cordoned"
        if self.reachable is None:
            return "Unknown"
        return "Ready"

    @property
    def ready(self) -> bool:
        """May take new work: reachable and usable at the last check, not cordoned, draining or removed."""
        return self.reachable is True and self.usable and not (self.cordoned or self.draining or self.removed)

    @property
    def condition_message(self) -> str:
        """Why the cluster is in its state, in a few words (the health message when Ready)."""
        state = self.state
        if state == "Unreachable":
            return self.message or "did not answer"
        if state == "NotReady":
            return self.message or "cannot run new work"
        if state == "Draining":
            return (
                "its file was removed from clusters.d; it leaves once its work is done"
                if self.removed
                else "drained by an admin; running work continues"
            )
        if state == "Cordoned":
            return "cordoned by an admin; running work continues"
        return self.message

    @property
    def total(self) -> Resources:
        return self.health.total if self.health else ZERO

    @property
    def free(self) -> Resources:
        return self.free_with(self.reserved)

    def free_with(self, reserved: Resources) -> Resources:
        """What is free once ``reserved`` is promised to dispatches since the last health check."""
        base = self.health.free if self.health else ZERO
        return base.minus(reserved)

    @property
    def running(self) -> int:
        return self.health.running if self.health else 0

    @property
    def capability_names(self) -> list[str]:
        return sorted(
            flag.name.lower()
            for flag in Capability
            if flag.name and flag in PLACEMENT & self.adapter.capabilities
        )

    def view(self) -> ClusterView:
        """This cluster as the placement engine sees it."""
        ready = self.ready
        return ClusterView(
            name=self.name,
            kind=self.config.kind,
            labels=dict(self.config.labels),
            weight=self.config.weight,
            ready=ready,
            state=self.state,
            capabilities=frozenset(self.capability_names),
            total=self.total,
            free=self.free,
            message="" if ready else self.condition_message,
            running=self.running,
        )


class ClusterRegistry:
    """Every cluster the broker may place work on (or still watches), by name."""

    def __init__(self, data_dir: str, *, health_interval: float = 5.0) -> None:
        self.data_dir = data_dir
        self.health_interval = health_interval
        #: A health check that takes longer than this counts as a failure.
        self.health_timeout = min(30.0, max(5.0, 2 * health_interval))
        self._clusters: dict[str, ClusterState] = {}
        self._retired: list[ClusterAdapter] = []

    def _build(self, config: ClusterConfig) -> ClusterAdapter:
        return adapter_class(config.kind)(config, data_dir=self.data_dir)

    def add(self, config: ClusterConfig, *, source: str | None = None) -> ClusterState:
        """Register a cluster from its config; an existing one of that name is replaced in place."""
        if config.name in self._clusters:
            return self.replace(config, source=source)
        redaction.remember(config)
        state = ClusterState(config=config, adapter=self._build(config), source=source)
        self._clusters[config.name] = state
        return state

    def replace(self, config: ClusterConfig, *, source: str | None = None) -> ClusterState:
        """Give a registered cluster a new config and a new adapter, keeping its condition.

        Its flags (cordon, drain) and health stay; ``removed`` is cleared (its file is back). The
        new adapter finds running work from the stored handles; the old one is closed later by
        :meth:`close_retired`, so a call in flight on it may finish.
        """
        cluster = self._clusters.get(config.name)
        if cluster is None:
            return self.add(config, source=source)
        redaction.remember(config)
        adapter = self._build(config)
        self._retired.append(cluster.adapter)
        cluster.config, cluster.adapter = config, adapter
        cluster.removed = False
        if source is not None:
            cluster.source = source
        return cluster

    def remove(self, name: str) -> ClusterState | None:
        """Take a cluster out of the registry; its adapter is closed by :meth:`close_retired`."""
        cluster = self._clusters.pop(name, None)
        if cluster is not None:
            self._retired.append(cluster.adapter)
        return cluster

    async def close_retired(self) -> None:
        """Close the adapters of replaced and removed clusters."""
        retired, self._retired = self._retired, []
        for adapter in retired:
            try:
                await adapter.close()
            except Exception:
                log.exception("closing the old adapter of cluster %s failed", adapter.name)

    def get(self, name: str) -> ClusterState | None:
        return self._clusters.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._clusters

    def all(self) -> list[ClusterState]:
        """Every cluster, by name."""
        return [self._clusters[name] for name in sorted(self._clusters)]

    def due(self, cluster: ClusterState, at: datetime | None = None) -> bool:
        """Whether a health check of ``cluster`` is due (half an interval early counts as due)."""
        if cluster.next_check is None:
            return True
        slack = timedelta(seconds=self.health_interval / 2)
        return (at or now()) >= cluster.next_check - slack

    def backoff(self, failures: int) -> float:
        """Seconds from the ``failures``-th failed check in a row to the next check."""
        if failures <= 0:
            return self.health_interval
        return min(MAX_BACKOFF, self.health_interval * 2.0 ** min(failures - 1, 30))

    async def check(self, cluster: ClusterState, *, force: bool = False) -> bool:
        """Ask one cluster for its health (if due, or ``force``) and record the answer.

        Returns whether a check was made.
        """
        if not force and not self.due(cluster):
            return False
        adapter = cluster.adapter
        try:
            health = await asyncio.wait_for(adapter.health(), timeout=self.health_timeout)
        except TimeoutError:
            health = Health(reachable=False, message=f"no answer within {self.health_timeout:g}s")
        except Exception as exc:  # an adapter bug must not stop the health loop
            if cluster.failed_checks == 0:
                log.exception("health check of cluster %s failed", cluster.name)
            health = Health(reachable=False, message=f"health check failed: {type(exc).__name__}: {exc}")
        if cluster.adapter is not adapter:
            return False  # replaced meanwhile: the new adapter's check decides
        self.record(cluster, health)
        return True

    def record(self, cluster: ClusterState, health: Health) -> None:
        """Apply one health answer to the cluster's condition (its message masked: it is shown)."""
        if health.message:
            health = dataclasses.replace(health, message=cluster.config.mask(health.message))
        stamp = now()
        cluster.last_check = stamp
        if health.reachable:
            if cluster.reachable is False:
                log.info(
                    "cluster %s is reachable again after %d failed check(s)",
                    cluster.name,
                    cluster.failed_checks,
                )
            if not health.usable and (cluster.usable or cluster.message != health.message):
                log.warning("cluster %s takes no new work: %s", cluster.name, health.message)
            elif health.usable and cluster.health is not None and not cluster.usable:
                log.info("cluster %s can take new work again", cluster.name)
            cluster.health = health
            cluster.reserved = ZERO
            cluster.reachable = True
            cluster.unreachable_since = None
            cluster.failed_checks = 0
            cluster.message = health.message
            cluster.next_check = stamp + timedelta(seconds=self.health_interval)
            return
        cluster.failed_checks += 1
        if cluster.unreachable_since is None:
            cluster.unreachable_since = stamp
            log.warning("cluster %s is unreachable: %s", cluster.name, health.message or "did not answer")
        cluster.reachable = False
        cluster.message = health.message or "did not answer"
        cluster.next_check = stamp + timedelta(seconds=self.backoff(cluster.failed_checks))

    async def check_all(self, *, force: bool = False) -> None:
        """Check every cluster that is due, concurrently (a slow one does not delay the others)."""
        await asyncio.gather(*(self.check(cluster, force=force) for cluster in self.all()))

    async def close(self) -> None:
        for cluster in self.all():
            self._retired.append(cluster.adapter)
        await self.close_retired()
