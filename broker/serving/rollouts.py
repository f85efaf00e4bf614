"""The serve watch's part in rollouts: switch when the new replicas answer, stop the previous ones
once nothing uses them, go back when the new attempt failed, and follow aliases.

The records and their writes are :mod:`broker.serving.rollout`'s; this module decides when, and
does what touches clusters (cancelling attempts) and this broker's proxy (which it tells at once,
instead of letting its cached view expire). Runs on the scheduler leader, from the serve watch.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.errors import ApiError
from broker.guard import Guard
from broker.model_registry import history
from broker.model_registry.model import ModelAlias, RegisteredModel
from broker.model_registry.registry_core import Caller
from broker.serving import rollout
from broker.serving.replicas import ServeTable
from broker.serving.service import ServeService, model_record
from broker.serving.views import rollout_of, served_model
from broker.state import TERMINAL, Status, now, record
from broker.workloads.kind import Kind
from broker.workloads.model import Workload
from runtimes.serving import ServeSpec

log = logging.getLogger(__name__)

TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)

#: Seconds to wait for requests in flight to a retiring replica (through this broker) to end.
DRAIN_TIMEOUT = 60.0
#: Who the history says re-rolled a serve when the alias it follows moved.
ALIAS_ACTOR = "alias-watch"


def fully_ready(row: Workload, access: dict[str, Any], *, per_replica: bool) -> bool:
    """Every replica of the running attempt answers ``/ping``: each one its handle lists where
    the cluster gives an endpoint per replica (``per_replica``), else the one endpoint that
    balances them (the cluster called the attempt Running once its replicas were up)."""
    known: dict[str, str] = access.get("replicas") or {}
    ready = set(access.get("ready") or [])
    listed = ((row.handle or {}).get("state") or {}).get("replicas")
    expected = len(listed) if per_replica and isinstance(listed, list) and listed else 1
    return bool(known) and ready == set(known) and len(known) >= expected


def _live(session: Session) -> list[Workload]:
    """Every serve not deleted (a few hundred at most: filtered here, not in SQL over JSON)."""
    query = select(Workload).where(Workload.kind == Kind.SERVE.value, Workload.status != Status.DELETED.value)
    return list(session.scalars(query).all())


def _alias_versions(session: Session, pairs: set[tuple[int, str]]) -> dict[tuple[int, str], int]:
    if not pairs:
        return {}
    keys = {key for key, _ in pairs}
    columns = (ModelAlias.model_key, ModelAlias.alias, ModelAlias.version)
    found = session.execute(select(*columns).where(ModelAlias.model_key.in_(keys)))
    return {(r.model_key, r.alias): r.version for r in found if (r.model_key, r.alias) in pairs}


def _history_reroll(session: Session, model: dict[str, Any], was: Any, row: Workload, alias: str) -> None:
    """The model's history says the serve re-rolled (its audited record of where versions run)."""
    registered = session.get(RegisteredModel, int(model["modelKey"]))
    if registered is None:
        return
    history.record(
        session,
        registered,
        history.Actor(ALIAS_ACTOR),
        history.SERVE_REROLLED,
        version=int(model["version"]),
        from_value=str(was) if was is not None else None,
        to_value=str(model["version"]),
        message=f"serve {row.namespace}/{row.name} ({row.id}) follows alias {alias}: re-rolled",
    )


class Rollouts:
    """Moves rollouts on (see the module docstring)."""

    def __init__(self, db: Any, serves: ServeService, table: ServeTable | None, policy: Any) -> None:
        self.db = db
        self.serves = serves
        self.table = table
        self.policy = policy  # its ``authorizer`` answers for a serve's owner when an alias moves
        self._refused: set[tuple[str, str, int]] = set()

    async def advance(self, row: Workload, access: dict[str, Any]) -> None:
        """After a readiness check of running serve ``row`` (its ``access`` as just saved): switch
        a rollout whose new replicas all answer."""
        cluster = self.serves.registry.get(row.cluster) if row.cluster else None
        if access.get(rollout.ROLLOUT) is None or cluster is None:
            return
        if not fully_ready(row, access, per_replica=cluster.adapter.endpoint_per_replica):
            return
        if await self.db.run(partial(rollout.switch, workload_id=row.id, uid=row.uid)) is not None:
            self._tell_proxy(row)

    async def run_once(self) -> None:
        """Stop retiring attempts whose time came, go back from rollouts whose new attempt failed,
        re-roll serves whose alias moved."""
        rows = await self.db.run(_live)
        for row in rows:
            kept = rollout.retire_due(row, now())
            if kept is not None:
                await self._retire(row, kept)
            if row.status == Status.FAILED.value and rollout_of(row) is not None:
                back = partial(rollout.rolled_back_on_failure, workload_id=row.id, uid=row.uid)
                failed = await self.db.run(back)
                if failed is not None:
                    self._tell_proxy(row)
                    await self.serves.cancel_attempt(row.id, failed, "its rollout failed")
        await self._follow_aliases([r for r in rows if r.status not in TERMINAL_VALUES])

    async def _retire(self, row: Workload, kept: dict[str, Any]) -> None:
        await self._drain(kept)
        stopped = await self.serves.cancel_attempt(row.id, kept, "retired after a rollout")
        note = "" if stopped else f"; {kept['cluster']} could not be reached: the orphan sweep stops them"
        await self.db.run(partial(rollout.retired, workload_id=row.id, kept=kept, note=note))

    async def _follow_aliases(self, live: list[Workload]) -> None:
        rows = [r for r in live if served_model(r).get("alias")]
        wanted: dict[str, tuple[dict[str, Any], str]] = {}
        for row in rows:
            model = served_model(row)  # during a rollout, the version rolled out to
            wanted[row.id] = (model, model["alias"])
        pairs = {(int(m["modelKey"]), alias) for m, alias in wanted.values()}
        versions = await self.db.run(partial(_alias_versions, pairs=pairs))
        for row in rows:
            if row.id not in wanted:
                continue
            model, alias = wanted[row.id]
            now_at = versions.get((int(model["modelKey"]), alias))
            if now_at is None or now_at == model.get("version"):
                continue  # a deleted alias leaves the serve on its version
            await self._reroll(row, model, alias, now_at)

    async def _reroll(self, row: Workload, model: dict[str, Any], alias: str, version: int) -> None:
        if (row.id, alias, version) in self._refused:
            return
        caller = Caller(Guard(row.owner, self.policy.authorizer))
        try:
            found, flavor = await self.serves.resolve(ServeSpec(modelName=model["name"], alias=alias), caller)
            columns = await self.serves.environment_columns(row, found, caller, "alias")
        except ApiError as exc:
            self._refused.add((row.id, alias, version))
            why = f"alias {alias} moved to version {version}, which cannot be served ({exc.message}): "
            await self.db.run(partial(_note, workload_id=row.id, text=why + "it keeps serving its version"))
            return
        new = model_record(found, flavor, alias)
        log.info("serve %s follows alias %s: re-rolling to version %s", row.id, alias, new["version"])
        by = f"the alias watch (alias {alias} moved)"
        await self.serves.roll_out(row.id, new, by=by, environment=columns)
        await self.db.run(lambda s: _history_reroll(s, new, model.get("version"), row, alias))

    async def _drain(self, kept: dict[str, Any]) -> None:
        """Wait until this broker's requests to the retiring replicas have ended."""
        if self.table is None:
            return
        urls = ((kept.get("access") or {}).get("replicas") or {}).values()
        replicas = [r for r in (self.table.replica(u) for u in urls) if r is not None]
        if replicas and not await self.table.drained(replicas, timeout=DRAIN_TIMEOUT):
            log.warning("retiring replicas still had requests after %.0f s: stopping them", DRAIN_TIMEOUT)

    def _tell_proxy(self, row: Workload) -> None:
        if self.table is not None:
            self.table.invalidate(row.namespace, row.name)


def _note(session: Session, workload_id: str, text: str) -> None:
    row = session.get(Workload, workload_id)
    if row is not None:
        record(session, row, text)
