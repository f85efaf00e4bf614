"""The APScheduler jobs: lease, dispatch, monitor, health and environment housekeeping, one
instance each, coalesced.

Dispatch and monitor run only while this process holds the scheduler lease; health and the
policy refresh run everywhere (every replica serves cluster state and enforces the policy).
A new submission wakes dispatch at once instead of waiting for its timer, and a pass that took a
full batch is followed by another at once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from broker.cluster_flags import ClusterFlags
from broker.config.models import LoopsConfig
from broker.policy_runtime import PolicyRuntime
from broker.registry import ClusterRegistry
from broker.scheduler.dispatch import Dispatcher
from broker.scheduler.failover import Failover
from broker.scheduler.lease import LeaseKeeper
from broker.scheduler.monitor import Monitor

if TYPE_CHECKING:
    from broker.cluster_watch import ClusterWatch
    from broker.environments.housekeeping import EnvironmentHousekeeping
    from broker.notebooks.watch import NotebookWatch
    from broker.serving.watch import ServeWatch

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
#: Seconds between two scans of clusters.d (hot reload, on every replica).
CLUSTER_RELOAD_INTERVAL = 1.0


class Loops:
    """Starts and stops the scheduler loops inside the server's event loop."""

    def __init__(
        self,
        *,
        lease: LeaseKeeper,
        dispatcher: Dispatcher,
        monitor: Monitor,
        failover: Failover,
        cluster_flags: ClusterFlags | None = None,
        registry: ClusterRegistry,
        policy: PolicyRuntime,
        config: LoopsConfig,
        cluster_watch: ClusterWatch | None = None,
        notebook_watch: NotebookWatch | None = None,
        notebook_interval: float = 1.0,
        housekeeping: EnvironmentHousekeeping | None = None,
        housekeeping_interval: float = 3600.0,
        serve_watch: ServeWatch | None = None,
    ) -> None:
        self.serve_watch = serve_watch
        self.housekeeping = housekeeping
        self.housekeeping_interval = housekeeping_interval
        self.notebook_watch = notebook_watch
        self.notebook_interval = notebook_interval
        self.cluster_watch = cluster_watch
        self.policy = policy
        self.failover = failover
        self.cluster_flags = cluster_flags
        self.lease = lease
        self.dispatcher = dispatcher
        self.monitor = monitor
        self.registry = registry
        self.config = config
        self.dispatch_paused = config.dispatch_paused
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._wake_pending = False

    def start(self) -> None:
        common = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        cfg = self.config
        first = datetime.now(UTC)
        self._scheduler.add_job(
            self._renew, "interval", seconds=cfg.lease_ttl / 3, id="lease", next_run_time=first, **common
        )
        self._scheduler.add_job(
            self._dispatch, "interval", seconds=cfg.dispatch_interval, id="dispatch", **common
        )
        self._scheduler.add_job(
            self._monitor,
            "interval",
            seconds=min(cfg.monitor_interval, cfg.monitor_starting_interval),
            id="monitor",
            **common,
        )
        self._scheduler.add_job(self._health, "interval", seconds=cfg.health_interval, id="health", **common)
        self._scheduler.add_job(self._policy, "interval", seconds=0.5, id="policy", **common)
        if self.cluster_watch is not None:
            self._scheduler.add_job(
                self._clusters, "interval", seconds=CLUSTER_RELOAD_INTERVAL, id="clusters", **common
            )
        if self.notebook_watch is not None:
            self._scheduler.add_job(
                self._notebooks, "interval", seconds=self.notebook_interval, id="notebooks", **common
            )
        if self.serve_watch is not None:
            self._scheduler.add_job(
                self._serves, "interval", seconds=self.notebook_interval, id="serves", **common
            )
        if self.housekeeping is not None:
            self._scheduler.add_job(
                self._housekeeping,
                "interval",
                seconds=self.housekeeping_interval,
                id="environments",
                next_run_time=first,
                **common,
            )
        self._scheduler.start()

    async def shutdown(self) -> None:
        self._scheduler.shutdown(wait=False)
        await self.lease.release()
        if self.notebook_watch is not None:
            await self.notebook_watch.aclose()
        if self.serve_watch is not None:
            await self.serve_watch.aclose()

    def wake_dispatch(self) -> None:
        """Run dispatch now (or right after the pass in progress)."""
        if self._wake_pending or self.dispatch_paused:
            return  # a pass is already due; it will see this submission too
        self._wake_pending = True
        job = self._scheduler.get_job("dispatch")
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC))

    async def _renew(self) -> None:
        was = self.lease.leader
        try:
            await self.lease.renew()
        except Exception:
            log.exception("lease renewal failed")
            self.lease.leader = False
        if self.lease.leader and not was:
            log.info("took the scheduler lease as %s", self.lease.holder)
            # Level-triggered take-over: learn what runs where before placing anything new, so
            # capacity held by work started before a restart (or by the old leader) is counted.
            await self._monitor()
            await self._health()
            self.wake_dispatch()
        elif was and not self.lease.leader:
            log.warning("lost the scheduler lease")

    async def _dispatch(self) -> None:
        if not self.lease.leader or self.dispatch_paused:
            self._wake_pending = False
            return
        while True:
            self._wake_pending = False
            full = False
            try:
                await self.dispatcher.run_once()
                full = self.dispatcher.more
            except Exception:
                log.exception("dispatch pass failed")
            # Another pass at once when woken meanwhile, or when this one took a full batch (a
            # backlog drains pass after pass, not one batch per dispatch_interval).
            more = self._wake_pending or full
            if not more or not self.lease.leader or self.dispatch_paused:
                self._wake_pending = False
                return

    async def _monitor(self) -> None:
        if not self.lease.leader:
            return
        try:
            await self.monitor.run_once()
        except Exception:
            log.exception("monitor pass failed")
        try:
            await self.failover.run_once()
        except Exception:
            log.exception("failover pass failed")

    async def _notebooks(self) -> None:
        """Readiness, activity and idle culling of notebooks: the leader's job (it stops servers)."""
        assert self.notebook_watch is not None
        if not self.lease.leader:
            return
        try:
            await self.notebook_watch.run_once()
        except Exception:
            log.exception("notebook watch pass failed")

    async def _serves(self) -> None:
        """Readiness of served models' replicas: the leader's job, as for notebooks."""
        assert self.serve_watch is not None
        if not self.lease.leader:
            return
        try:
            await self.serve_watch.run_once()
        except Exception:
            log.exception("serve watch pass failed")

    async def _housekeeping(self) -> None:
        """Remove environment builds unused for ``environments.keep_days``: the leader's job."""
        assert self.housekeeping is not None
        if not self.lease.leader:
            return
        try:
            await self.housekeeping.run_once()
        except Exception:
            log.exception("environment housekeeping pass failed")

    async def _policy(self) -> None:
        try:
            await self.policy.refresh()
        except Exception:
            log.exception("policy refresh failed")

    async def _clusters(self) -> None:
        assert self.cluster_watch is not None
        try:
            await self.cluster_watch.tick()
        except Exception:
            log.exception("reloading clusters.d failed")
        if self.cluster_flags is not None:
            try:
                await self.cluster_flags.refresh()
            except Exception:
                log.exception("reading cluster flags failed")

    async def _health(self) -> None:
        try:
            await self.registry.check_all()
        except Exception:
            log.exception("health pass failed")
