"""The serve watch: where each running serve's replicas listen, and which of them answer.

Runs on the scheduler leader with the notebook watch's interval. For each Running serve it asks
the adapter for the replicas' endpoints (:meth:`clusters.base.ClusterAdapter.endpoints`) and
``GET /ping`` of each (open without the server token, as the model-server contract says); the
replicas that answered 200 are the ones the proxy uses (``access.ready``), and the first answer
sets ``readyAt``: the serve is ``ready`` from then on while one replica answers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.registry import ClusterRegistry
from broker.serving.views import attempt_access
from broker.state import Status, now
from broker.workloads.kind import Kind
from broker.workloads.model import Workload
from clusters.base import Handle

if TYPE_CHECKING:
    from broker.serving.rollouts import Rollouts
from clusters.errors import ClusterError

log = logging.getLogger(__name__)


def _running(session: Session) -> list[Workload]:
    return list(
        session.scalars(
            select(Workload).where(Workload.kind == Kind.SERVE.value, Workload.status == Status.RUNNING.value)
        ).all()
    )


class ServeWatch:
    """Readiness of served models' replicas."""

    def __init__(
        self, db: Any, registry: ClusterRegistry, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.db = db
        self.registry = registry
        self._http = httpx.AsyncClient(timeout=5.0, transport=transport)
        #: Moves rollouts on after each check (set once the serving service exists).
        self.rollouts: Rollouts | None = None

    async def run_once(self) -> None:
        """Check every running serve at once (a slow replica delays no other serve)."""
        rows = await self.db.run(_running)
        outcomes = await asyncio.gather(*(self.check(r) for r in rows), return_exceptions=True)
        for row, outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.error("checking serve %s failed", row.id, exc_info=outcome)
        if self.rollouts is not None:
            await self.rollouts.run_once()

    async def check(self, row: Workload) -> None:
        """Ask the cluster for the replicas' endpoints, ping them, keep what changed."""
        access = dict(attempt_access(row)) or {"uid": row.uid}
        urls = await self._endpoints(row)
        if urls:
            access["replicas"] = urls
        known: dict[str, str] = access.get("replicas") or {}
        answers = await asyncio.gather(*(self._ping(url) for url in known.values()))
        access["ready"] = [name for name, ok in zip(known, answers, strict=True) if ok]
        if access["ready"]:
            access.setdefault("readyAt", now().isoformat())
        if access != attempt_access(row):
            await self._save(row, access)
        if self.rollouts is not None:
            await self.rollouts.advance(row, access)

    async def _endpoints(self, row: Workload) -> dict[str, str]:
        cluster = self.registry.get(row.cluster) if row.cluster else None
        if cluster is None or row.handle is None:
            return {}
        try:
            return await cluster.adapter.endpoints(Handle.from_json(row.handle))
        except ClusterError as exc:
            log.info("no endpoints yet for serve %s: %s", row.id, cluster.config.mask(str(exc)))
            return {}

    async def _ping(self, url: str) -> bool:
        try:
            answer = await self._http.get(url.rstrip("/") + "/ping")
        except httpx.HTTPError:
            return False  # not up yet, or gone: the next check asks again
        return answer.status_code == 200

    async def _save(self, row: Workload, access: dict[str, Any]) -> None:
        def save(session: Session) -> None:
            current = session.get(Workload, row.id)
            if current is not None and current.uid == row.uid and current.status == Status.RUNNING.value:
                current.access = access

        await self.db.run(save)

    async def aclose(self) -> None:
        await self._http.aclose()
