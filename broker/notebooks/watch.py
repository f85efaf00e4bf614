"""The notebook watch: finds where each running notebook's server listens, sees it answer, and
stops notebooks idle past their timeout.

Runs on the scheduler leader every ``notebooks.check_interval`` seconds. For each Running
notebook it asks the adapter for the endpoint once per attempt, then Jupyter's ``api/status``
(with the notebook's token): the first answer makes the notebook ``running`` for users, and its
``last_activity`` (which Jupyter moves on every authenticated API call, kernel and terminal
activity, but not on ``api/status`` itself) is kept and compared with the idle timeout
(``spec.idleTimeoutSeconds``, else ``notebooks.idle_timeout``; 0 = never).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.config.models import NotebooksConfig
from broker.errors import ApiError
from broker.notebooks.service import stop_notebook
from broker.notebooks.tokens import NotebookTokens
from broker.registry import ClusterRegistry
from broker.state import FailureCategory, Status, now
from broker.workloads.kind import Kind
from broker.workloads.model import Workload
from clusters.base import Handle
from clusters.errors import ClusterError
from runtimes.notebook import base_path

log = logging.getLogger(__name__)


def _running(session: Session) -> list[Workload]:
    return list(
        session.scalars(
            select(Workload).where(
                Workload.kind == Kind.NOTEBOOK.value, Workload.status == Status.RUNNING.value
            )
        ).all()
    )


def parse_time(text: object) -> datetime | None:
    """An ISO time from Jupyter (``2026-11-30T02:50:01.123456Z``), or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class NotebookWatch:
    """Readiness, activity and idle culling of notebooks."""

    def __init__(
        self,
        db: Any,
        registry: ClusterRegistry,
        config: NotebooksConfig,
        *,
        tokens: NotebookTokens,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.config = config
        self.tokens = tokens
        self._http = httpx.AsyncClient(timeout=5.0, transport=transport)

    async def run_once(self) -> None:
        """Check every running notebook at once (a slow server delays no other)."""
        rows = await self.db.run(_running)
        outcomes = await asyncio.gather(*(self._check(r) for r in rows), return_exceptions=True)
        for row, outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.error("checking notebook %s failed", row.id, exc_info=outcome)

    async def _check(self, row: Workload) -> None:
        access = dict(row.access or {}) if (row.access or {}).get("uid") == row.uid else {"uid": row.uid}
        if not access.get("url"):
            url = await self._endpoint(row)
            if url is not None:
                access["url"] = url
                await self._save(row, access)
        status = await self._status(row, access["url"]) if access.get("url") else None
        if status is None:
            await self._give_up_if_silent(row, access)
            return
        changed = dict(access)
        changed.setdefault("readyAt", now().isoformat())
        if status.get("last_activity"):
            changed["lastActivity"] = status["last_activity"]
        if changed != access:
            await self._save(row, changed)
        await self._cull_if_idle(row, changed)

    async def _endpoint(self, row: Workload) -> str | None:
        cluster = self.registry.get(row.cluster) if row.cluster else None
        if cluster is None or row.handle is None:
            return None
        try:
            return await cluster.adapter.endpoint(Handle.from_json(row.handle))
        except ClusterError as exc:
            log.info("no endpoint yet for notebook %s: %s", row.id, cluster.config.mask(str(exc)))
            return None

    async def _status(self, row: Workload, url: str) -> dict[str, Any] | None:
        target = url.rstrip("/") + base_path(row.namespace, row.name) + "api/status"
        try:
            answer = await self._http.get(target, headers={"Authorization": f"token {self.tokens.of(row)}"})
        except httpx.HTTPError:
            return None  # not up yet, or restarting: the next check asks again
        if answer.status_code != 200:
            return None
        try:
            body = answer.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def _save(self, row: Workload, access: dict[str, Any]) -> None:
        def save(session: Session) -> None:
            current = session.get(Workload, row.id)
            if current is not None and current.uid == row.uid and current.status == Status.RUNNING.value:
                current.access = access

        await self.db.run(save)

    async def _give_up_if_silent(self, row: Workload, access: dict[str, Any]) -> None:
        """Stop a notebook whose server never answered within ``start_timeout`` of running."""
        if access.get("readyAt") or row.running_at is None:
            return  # answered once (a later silence is a restart or a hiccup), or not started
        waited = (now() - row.running_at).total_seconds()
        if waited < self.config.start_timeout:
            return
        where = f" at {access['url']}" if access.get("url") else " (no endpoint reported)"
        reason = f"the Jupyter server did not answer{where} within {self.config.start_timeout:g}s of starting"
        log.warning("notebook %s: %s", row.id, reason)
        with contextlib.suppress(ApiError):
            await stop_notebook(self.db, self.registry, row, reason, category=FailureCategory.TIMEOUT)

    def idle_timeout(self, row: Workload) -> float:
        """The notebook's own idle timeout, else the broker's (0 = never)."""
        own = ((row.spec or {}).get("spec") or {}).get("idleTimeoutSeconds")
        return float(own) if own is not None else self.config.idle_timeout

    async def _cull_if_idle(self, row: Workload, access: dict[str, Any]) -> None:
        timeout = self.idle_timeout(row)
        last = parse_time(access.get("lastActivity")) or parse_time(access.get("readyAt"))
        if timeout <= 0 or last is None:
            return
        idle = (now() - last).total_seconds()
        if idle < timeout:
            return
        reason = f"stopped after {idle:.0f}s without activity (idle timeout {timeout:g}s)"
        log.info("notebook %s: %s", row.id, reason)
        with contextlib.suppress(ApiError):  # ended or restarted meanwhile
            await stop_notebook(self.db, self.registry, row, reason)

    async def aclose(self) -> None:
        await self._http.aclose()
