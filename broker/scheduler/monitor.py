"""Monitor: one ``poll`` per cluster per tick, and each observation turned into state transitions."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.environments.builds import record_build
from broker.environments.model import BUILT, FAILED
from broker.registry import ClusterRegistry, ClusterState
from broker.state import ACTIVE, FailureCategory, IllegalTransition, Status, record, transition
from broker.store.database import Database
from broker.workloads.model import Workload
from clusters.base import Handle, Observation, Phase
from clusters.errors import ClusterError
from runtimes.environment import EnvironmentPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tracked:
    id: str
    uid: str
    status: str
    handle: dict[str, Any]


def tracked_on(cluster: str) -> Callable[[Session], list[Tracked]]:
    """The unit of work listing the attempts started on ``cluster`` that have not ended."""

    def query(session: Session) -> list[Tracked]:
        rows = session.scalars(
            select(Workload).where(Workload.cluster == cluster, Workload.status.in_(ACTIVE))
        ).all()
        return [Tracked(r.id, r.uid, r.status, r.handle) for r in rows if r.handle is not None]

    return query


def apply_observation(session: Session, workload_id: str, uid: str, seen: Observation) -> Status | None:
    """Move one workload as ``seen`` says; returns the status it ended in, None if nothing changed.

    A report for an attempt that is no longer current (another uid) or for a run that already
    ended (deleted meanwhile) changes nothing.
    """
    row = session.get(Workload, workload_id, with_for_update=True)
    if row is None or row.uid != uid or Status(row.status).is_terminal:
        return None
    current = Status(row.status)
    steps: list[tuple[Status, str, str | None]] = []
    if seen.phase is Phase.RUNNING:
        steps = [(Status.RUNNING, "all replicas are running", None)]
    elif seen.phase is Phase.SUCCEEDED:
        steps = [
            (Status.RUNNING, "observed running", None),
            (Status.SUCCEEDED, seen.message or "finished", None),
        ]
    elif seen.phase in (Phase.FAILED, Phase.NOT_FOUND):
        failed_as = seen.failure_category or (
            FailureCategory.CLUSTER_LOST.value
            if seen.phase is Phase.NOT_FOUND
            else FailureCategory.EXIT_CODE.value
        )
        message = seen.message or f"the cluster no longer has attempt {uid}"
        steps = [(Status.FAILED, message, failed_as)]
    changed = None
    for target, reason, category in steps:
        if target is Status.RUNNING and current is not Status.CREATED:
            continue
        try:
            if transition(session, row, target, reason, category=category):
                changed = target
                current = target
        except IllegalTransition:
            log.info("ignored %s for %s: %s", target.value, workload_id, row.status)
            return changed
    if changed is not None:
        remember_build(session, row, changed)
    return changed


def remember_build(session: Session, row: Workload, reached: Status) -> None:
    """An attempt that ran with an environment shows it is built on its cluster; one that failed
    for its environment shows the build failed there (with the installer's line)."""
    if row.environment is None or row.cluster is None:
        return
    env = EnvironmentPlan.model_validate(row.environment)
    if reached in (Status.RUNNING, Status.SUCCEEDED):
        record_build(session, row.cluster, env, BUILT)
    elif reached is Status.FAILED and row.failure_category == FailureCategory.ENVIRONMENT.value:
        record_build(session, row.cluster, env, FAILED, row.reason)


def note_pending(session: Session, workload_id: str, uid: str, message: str) -> None:
    """Show why the cluster keeps the current attempt pending (once per new reason): ``pending on
    <cluster>: <message>``, or the message alone when it names the cluster already (``building
    environment torch-2 (3 packages) on local``)."""
    row = session.get(Workload, workload_id)
    if row is None or row.uid != uid or row.status != Status.CREATED.value:
        return
    named = row.cluster is not None and message.endswith(f" on {row.cluster}")
    text = (message if named else f"pending on {row.cluster}: {message}")[:1000]
    if row.status_message != text:
        row.status_message = text
        record(session, row, text)


def masked(cluster: ClusterState, seen: Observation) -> Observation:
    """``seen`` with the cluster's secrets masked in its messages (they become reasons and events)."""
    if not seen.message and not any(r.message for r in seen.replicas):
        return seen
    return dataclasses.replace(
        seen,
        message=cluster.config.mask(seen.message),
        replicas=tuple(dataclasses.replace(r, message=cluster.config.mask(r.message)) for r in seen.replicas),
    )


class Monitor:
    """Polls every cluster once per tick for all of its broker-managed workloads."""

    def __init__(
        self,
        db: Database,
        registry: ClusterRegistry,
        *,
        poll_timeout: float = 30.0,
        interval: float = 2.0,
        starting_interval: float = 0.25,
    ) -> None:
        self.db = db
        self.registry = registry
        self.poll_timeout = poll_timeout
        self.interval = interval
        self.starting_interval = starting_interval
        self._last_poll: dict[str, float] = {}

    def _due(self, cluster: str, tracked: list[Tracked]) -> bool:
        """Once per ``interval``; every ``starting_interval`` while something there is still
        starting (Created), so a run is seen Running soon after it starts. Either way one list
        call per cluster per tick."""
        since = time.monotonic() - self._last_poll.get(cluster, float("-inf"))
        starting = any(t.status == Status.CREATED.value for t in tracked)
        return since >= (self.starting_interval if starting else self.interval)

    async def run_once(self) -> None:
        """Poll every reachable cluster at once, so a slow one delays no other."""
        clusters = [c for c in self.registry.all() if c.reachable is not False]
        # A silent cluster is left to failover: polling it would only wait.
        outcomes = await asyncio.gather(*(self._poll_cluster(c) for c in clusters), return_exceptions=True)
        for cluster, outcome in zip(clusters, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.error("monitoring cluster %s failed", cluster.name, exc_info=outcome)

    async def _poll_cluster(self, cluster: ClusterState) -> None:
        tracked = await self.db.run(tracked_on(cluster.name))
        if not tracked or not self._due(cluster.name, tracked):
            return
        self._last_poll[cluster.name] = time.monotonic()
        handles = {t.uid: Handle.from_json(t.handle) for t in tracked}
        try:
            observations = await asyncio.wait_for(
                cluster.adapter.poll(list(handles.values())), self.poll_timeout
            )
        except (ClusterError, TimeoutError) as exc:
            why = cluster.config.mask(str(exc)) or f"no answer in {self.poll_timeout:g}s"
            log.warning("cannot poll cluster %s: %s", cluster.name, why)
            return
        for item in tracked:
            seen = masked(cluster, observations.get(item.uid, Observation(item.uid, Phase.NOT_FOUND)))
            if seen.phase is Phase.PENDING and seen.message:
                # Why the cluster holds it (a queue reason, an image pull): users see it at once.
                await self.db.run(
                    partial(note_pending, workload_id=item.id, uid=item.uid, message=seen.message)
                )
            if seen.phase in (Phase.UNKNOWN, Phase.PENDING):
                continue
            ended = await self.db.run(
                partial(apply_observation, workload_id=item.id, uid=item.uid, seen=seen)
            )
            leftovers = any(r.phase in (Phase.RUNNING, Phase.PENDING) for r in seen.replicas)
            if ended in (Status.SUCCEEDED, Status.FAILED) and leftovers:
                # Stop what is left of the gang: parameter servers after success, peers after a failure.
                # Only then: cancelling a finished run would delete what some clusters keep of it
                # (a Kubernetes job's pods, and with them its logs).
                try:
                    await cluster.adapter.cancel(handles[item.uid])
                except ClusterError as exc:
                    log.warning(
                        "could not stop the rest of %s on %s: %s",
                        item.id,
                        cluster.name,
                        cluster.config.mask(str(exc)),
                    )
