"""Failover with two thresholds, and the orphan sweep.

A cluster that fails one health check gets no new work at once (placement only takes Ready
clusters). Work already there is left alone and marked "cluster X unreachable since …" until the
grace period passes (broker.yaml ``loops.cluster_loss_grace``, or the workload's
``meta.clusterLossGraceSeconds``). Then a workload with retries left (``meta.maxRetries``) gets
a new attempt (:func:`~broker.workloads.rows.new_attempt`: a new uid, placed again, so a late
report from the old attempt can never revive it); one without fails with the reason. If every
cluster is silent at once, the broker assumes it is the one cut off and expires nothing.

When a lost cluster answers again, attempts that were superseded are cancelled there, and so is
anything else of ours it still runs that no live workload owns (deleted meanwhile): the orphan
sweep. Attempts that were not superseded are simply adopted again by the monitor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.registry import ClusterRegistry, ClusterState
from broker.serving.rollout import kept_attempts
from broker.state import ON_CLUSTER, FailureCategory, Status, now, record, transition
from broker.store.database import Database
from broker.workloads.model import SupersededAttempt, Workload
from broker.workloads.rows import new_attempt
from clusters.base import Handle
from clusters.errors import ClusterError

log = logging.getLogger(__name__)

#: How often a reachable cluster is swept for orphans when nothing happened to it (seconds).
SWEEP_INTERVAL = 60.0
UNREACHABLE = "cluster {cluster} unreachable since {since}"


@dataclass(frozen=True)
class OnCluster:
    id: str
    uid: str
    status: str
    status_message: str | None
    grace: float | None


def _on_cluster(name: str) -> Callable[[Session], list[OnCluster]]:
    def query(session: Session) -> list[OnCluster]:
        rows = session.scalars(
            select(Workload).where(Workload.cluster == name, Workload.status.in_(ON_CLUSTER))
        ).all()
        return [OnCluster(r.id, r.uid, r.status, r.status_message, grace_of(r.spec)) for r in rows]

    return query


def grace_of(spec: dict[str, Any] | None) -> float | None:
    """A workload's own ``meta.clusterLossGraceSeconds``; None for the broker's (and for kinds
    whose spec has no ``meta``: served models)."""
    meta = (spec or {}).get("meta")
    return meta.get("clusterLossGraceSeconds") if isinstance(meta, dict) else None


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def supersede(
    session: Session, workload_id: str, uid: str, cluster: ClusterState, grace: float
) -> str | None:
    """Give up on attempt ``uid`` of a workload on lost ``cluster``: a new attempt, or Failed.

    Returns what happened, or None when the row moved on meanwhile (nothing is changed then).
    """
    row = session.get(Workload, workload_id, with_for_update=True)
    if row is None or row.uid != uid or row.cluster != cluster.name or row.status not in ON_CLUSTER:
        return None
    since = _stamp(cluster.unreachable_since or now())
    session.add(
        SupersededAttempt(
            uid=row.uid,
            workload_id=row.id,
            cluster=cluster.name,
            handle=row.handle,
            attempt=row.attempt,
            superseded_at=now(),
        )
    )
    retries = int(row.spec["meta"].get("maxRetries") or 0)
    lost = f"cluster {cluster.name} unreachable since {since}, longer than the grace period of {grace:g}s"
    if row.attempt - 1 >= retries:
        transition(
            session,
            row,
            Status.FAILED,
            f"{lost}; no retries left (meta.maxRetries={retries})",
            category=FailureCategory.CLUSTER_LOST,
        )
        return "failed"
    new_attempt(session, row, f"{lost}; attempt {row.attempt + 1} of {retries + 1} will be placed again")
    row.status_message = f"attempt {row.attempt}: waiting to be placed again after losing {cluster.name}"
    return "requeued"


class Failover:
    """One failover pass over every cluster, then the orphan sweep on those that answer."""

    def __init__(
        self,
        db: Database,
        registry: ClusterRegistry,
        *,
        grace: float,
        on_requeued: Any,
        sweep_interval: float = SWEEP_INTERVAL,
    ) -> None:
        self.db = db
        self.registry = registry
        self.grace = grace
        self.on_requeued = on_requeued
        self.sweep_interval = sweep_interval
        self._was_reachable: dict[str, bool | None] = {}
        self._last_sweep: dict[str, float] = {}

    async def run_once(self) -> None:
        clusters = self.registry.all()
        all_silent = bool(clusters) and all(c.reachable is False for c in clusters)
        for cluster in clusters:
            before = self._was_reachable.get(cluster.name)
            self._was_reachable[cluster.name] = cluster.reachable
            try:
                if cluster.reachable is False:
                    await self._lost(cluster, all_silent)
                elif cluster.reachable and self._sweep_due(cluster.name, returned=before is False):
                    await self._back(cluster)
                    self._last_sweep[cluster.name] = time.monotonic()
            except Exception:
                log.exception("failover pass on cluster %s failed", cluster.name)

    def _sweep_due(self, name: str, *, returned: bool) -> bool:
        """Right after a cluster answers again, and every ``sweep_interval`` seconds otherwise (once
        at start-up too), so the sweep's listing never adds a call per monitor tick."""
        last = self._last_sweep.get(name)
        return returned or last is None or time.monotonic() - last >= self.sweep_interval

    async def _lost(self, cluster: ClusterState, all_silent: bool) -> None:
        since = cluster.unreachable_since or now()
        mark = UNREACHABLE.format(cluster=cluster.name, since=_stamp(since))
        if all_silent:
            mark += (
                "; every cluster is silent, so the broker assumes it is the one cut off and expires nothing"
            )
        requeued = False
        for item in await self.db.run(_on_cluster(cluster.name)):
            grace = item.grace if item.grace is not None else self.grace
            if not all_silent and (now() - since).total_seconds() >= grace:
                outcome = await self.db.run(
                    partial(supersede, workload_id=item.id, uid=item.uid, cluster=cluster, grace=grace)
                )
                requeued = requeued or outcome == "requeued"
            elif item.status_message != mark:
                await self.db.run(partial(_mark, workload_id=item.id, uid=item.uid, message=mark))
        if requeued:
            self.on_requeued()

    async def _back(self, cluster: ClusterState) -> None:
        items = await self.db.run(_on_cluster(cluster.name))
        prefix = UNREACHABLE.format(cluster=cluster.name, since="")
        for item in items:
            if item.status_message and item.status_message.startswith(prefix):
                await self.db.run(partial(_adopted, workload_id=item.id, uid=item.uid, cluster=cluster.name))
        kept = await self.db.run(partial(kept_attempts, cluster=cluster.name))
        await self._sweep(cluster, {item.uid for item in items} | kept)

    async def _sweep(self, cluster: ClusterState, live: set[str]) -> None:
        def superseded(session: Session) -> list[SupersededAttempt]:
            return list(
                session.scalars(
                    select(SupersededAttempt).where(
                        SupersededAttempt.cluster == cluster.name, SupersededAttempt.swept_at.is_(None)
                    )
                ).all()
            )

        for old in await self.db.run(superseded):
            if old.handle is not None:
                try:
                    await cluster.adapter.cancel(Handle.from_json(old.handle))
                except ClusterError as exc:
                    log.warning(
                        "cannot cancel superseded attempt %s on %s yet: %s",
                        old.uid,
                        cluster.name,
                        cluster.config.mask(str(exc)),
                    )
                    continue
                log.info(
                    "cancelled superseded attempt %s of %s on %s", old.uid, old.workload_id, cluster.name
                )
            await self.db.run(partial(_swept, uid=old.uid, cluster=cluster.name))
        try:
            owned = await cluster.adapter.owned()
        except ClusterError as exc:
            log.warning("cannot list the work of cluster %s: %s", cluster.name, cluster.config.mask(str(exc)))
            return
        for handle in owned or []:
            if handle.uid in live:
                continue
            # Re-read: a dispatch may have created this attempt since ``live`` was taken. An attempt
            # that is still its workload's current one stays, even once it ended (a cluster may keep
            # its record and logs); only superseded attempts and those of deleted or unknown
            # workloads are orphans.
            if await self.db.run(partial(_still_owned, uid=handle.uid, cluster=cluster.name)):
                continue
            log.warning(
                "orphan sweep: cancelling attempt %s on %s, which no live workload owns",
                handle.uid,
                cluster.name,
            )
            try:
                await cluster.adapter.cancel(handle)
            except ClusterError as exc:
                log.warning("orphan sweep on %s: %s", cluster.name, cluster.config.mask(str(exc)))


def _still_owned(session: Session, uid: str, cluster: str) -> bool:
    status = session.scalar(select(Workload.status).where(Workload.uid == uid))
    if status is not None and status != Status.DELETED.value:
        return True
    return uid in kept_attempts(session, cluster)  # a serve's rollout keeps it


def _mark(session: Session, workload_id: str, uid: str, message: str) -> None:
    row = session.get(Workload, workload_id)
    if row is not None and row.uid == uid and row.status_message != message:
        row.status_message = message
        record(session, row, message)


def _adopted(session: Session, workload_id: str, uid: str, cluster: str) -> None:
    row = session.get(Workload, workload_id)
    if row is not None and row.uid == uid:
        row.status_message = None
        record(session, row, f"cluster {cluster} answers again; attempt {row.attempt} adopted")


def _swept(session: Session, uid: str, cluster: str) -> None:
    old = session.get(SupersededAttempt, uid)
    if old is not None:
        old.swept_at = now()
        row = session.get(Workload, old.workload_id)
        if row is not None:
            record(session, row, f"superseded attempt {old.attempt} ({uid}) cancelled on {cluster}")
