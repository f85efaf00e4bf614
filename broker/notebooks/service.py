"""What the REST handlers and the proxy do with notebooks: create, read, list, delete, stop, start.

Notebooks are rows of the workload table with ``kind = "notebook"``: placement, dispatch,
monitoring, failover and events are the experiments' own. What is theirs: the unique live name
per namespace (``slot``), the per-notebook Jupyter token, and the ``access`` record the notebook
watch keeps (where the server listens, when it answered, its last activity).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.api.access import Guard
from broker.errors import ApiError, Conflict, NotFound
from broker.experiments.service import (
    WorkloadService,
    attempt_logs,
    cancel_on_cluster,
    end_then_cancel,
    events_of,
    insert_accepted,
    new_row,
)
from broker.experiments.validation import parse_notebook_spec
from broker.ids import IdGenerator, new_uid
from broker.notebooks.tokens import NotebookTokens
from broker.notebooks.views import STOPPED_AT, attempt_access, is_ready, notebook_status
from broker.planner import Planner
from broker.registry import ClusterRegistry
from broker.state import FailureCategory, Status, now, restart, transition
from broker.store.database import Database
from broker.store.models import Event, Experiment
from clusters.base import ReplicaLog
from clusters.errors import ClusterError
from policies.placement import Decision
from runtimes.notebook import REPLICA, NotebookSpec

log = logging.getLogger(__name__)

KIND = "notebook"
NOT_FOUND = "Notebook not found."
DUPLICATE = "Invalid. Notebook with same name is already existed."


def slot_of(namespace: str, name: str) -> str:
    """The unique key of a live notebook name in a namespace."""
    return f"notebook:{namespace}/{name}"


class NotebookService(WorkloadService):
    """Notebooks as users see them."""

    kind = KIND

    def __init__(
        self,
        db: Database,
        registry: ClusterRegistry,
        ids: IdGenerator,
        *,
        default_namespace: str,
        planner: Planner,
        tokens: NotebookTokens,
        on_submitted: Any = lambda: None,
    ) -> None:
        super().__init__(
            db, registry, ids, default_namespace=default_namespace, planner=planner, on_submitted=on_submitted
        )
        self.tokens = tokens

    def check_submission(self, document: dict[str, Any], guard: Guard) -> tuple[NotebookSpec, str, Decision]:
        """Validate, authorise and dry-run place a NotebookSpec (400 / 403)."""
        spec = parse_notebook_spec(document, clusters=self.cluster_names())
        namespace, decision = self.dry_run(spec, guard)
        return spec, namespace, decision

    async def create(self, document: dict[str, Any], *, guard: Guard) -> Experiment:
        """Store a new notebook as Accepted (status ``waiting``) and wake the dispatcher; 409 on a
        name already used by a live notebook of the namespace."""
        spec, namespace, decision = self.check_submission(document, guard)
        if decision.never_fits:
            raise ApiError(422, f"no registered cluster can ever run this notebook: {decision.rejection}")
        values = new_row(
            self.ids.next(),
            name=spec.meta.name,
            namespace=namespace,
            owner=guard.user,
            framework=KIND,
            kind=KIND,
            slot=slot_of(namespace, spec.meta.name),
            access_token=self.tokens.new(),
            spec={
                **spec.model_dump(mode="json"),
                "meta": {**spec.meta.model_dump(mode="json"), "namespace": namespace},
            },
        )
        try:
            created = await self.db.run(insert_accepted(values, f"created by {guard.user}"))
        except IntegrityError:
            raise Conflict(f"{DUPLICATE} ({spec.meta.name} in namespace {namespace})") from None
        self.on_submitted()
        return created

    async def get(self, notebook_id: str, guard: Guard, action: str = "read") -> Experiment:
        """A live notebook the caller may see (else 404), and may ``action`` (else 403)."""
        row = await self.db.run(lambda s: s.get(Experiment, notebook_id))
        return self._visible(row, guard, action)

    async def by_path(self, namespace: str, name: str, guard: Guard) -> Experiment:
        """The live notebook ``namespace/name`` if the caller may use it (its proxy), else 404."""
        row = await self.db.run(
            lambda s: s.scalar(select(Experiment).where(Experiment.slot == slot_of(namespace, name)))
        )
        return self._visible(row, guard, "read")

    def _visible(self, row: Experiment | None, guard: Guard, action: str) -> Experiment:
        if row is None or row.kind != KIND or row.status == Status.DELETED.value:
            raise NotFound(NOT_FOUND)
        obj = f"notebook/{row.id}"
        guard.require(row.namespace, obj, "read", hidden=True, what=NOT_FOUND)
        if action != "read":
            guard.require(row.namespace, obj, action)
        return row

    async def logs(
        self, notebook_id: str, guard: Guard, *, tail: int | None = None
    ) -> tuple[Experiment, list[ReplicaLog]]:
        """The notebook and its Jupyter server's output (the notebook is a one-replica plan) of its
        current or last attempt, through its cluster's logs verb; no lines before it started."""
        row = await self.get(notebook_id, guard, "logs")
        return row, await attempt_logs(self.registry, row, [REPLICA], tail=tail)

    async def list(self, guard: Guard, *, status: str | None = None) -> list[Experiment]:
        """Live notebooks the caller may read, newest first (Submarine's ``?id=`` is ignored, as
        there); ``status`` filters on the lower-case notebook status."""

        def query(session: Session) -> list[Experiment]:
            return list(
                session.scalars(
                    select(Experiment)
                    .where(Experiment.kind == KIND, Experiment.status != Status.DELETED.value)
                    .order_by(Experiment.accepted_at.desc(), Experiment.id.desc())
                ).all()
            )

        rows = [r for r in await self.db.run(query) if guard.may(r.namespace, f"notebook/{r.id}", "read")]
        if status:
            rows = [r for r in rows if notebook_status(r) == status.strip().lower()]
        return rows

    async def events(self, notebook_id: str, guard: Guard) -> list[Event]:
        await self.get(notebook_id, guard)
        return await self.db.run(events_of(notebook_id))

    async def delete(self, notebook_id: str, guard: Guard) -> Experiment:
        """Stop the server, mark the notebook Deleted (history kept) and free its name."""
        row = await self.get(notebook_id, guard, "delete")
        note = await cancel_on_cluster(self.registry, row, "delete")
        note += await self._release_files(row)

        def mark(session: Session) -> Experiment:
            current = session.get(Experiment, notebook_id, with_for_update=True)
            if current is None or current.status == Status.DELETED.value:
                raise NotFound(NOT_FOUND)
            transition(session, current, Status.DELETED, f"deleted by {guard.user}{note}")
            current.slot = None
            return current

        return await self.db.run(mark)

    async def _release_files(self, row: Experiment) -> str:
        """Free the notebook's kept files on the cluster of its last attempt; a note for the event."""
        cluster = self.registry.get(row.cluster) if row.cluster else None
        if cluster is None:
            return ""
        try:
            freed = await cluster.adapter.release(row.id)
        except ClusterError as exc:
            why = cluster.config.mask(str(exc))
            log.warning("notebook %s: could not remove its files on %s: %s", row.id, row.cluster, why)
            return f"; its files on {row.cluster} could not be removed ({why})"
        return "" if freed else f"; its files on {row.cluster} stay where the cluster keeps them"

    async def stop(self, notebook_id: str, guard: Guard, reason: str | None = None) -> Experiment:
        """Stop the server, keep the notebook (its id, name and files) to start it again."""
        row = await self.get(notebook_id, guard, "kill")
        if Status(row.status).is_terminal:
            raise Conflict(f"notebook {notebook_id} is not running ({notebook_status(row)})")
        return await stop_notebook(self.db, self.registry, row, reason or f"stopped by {guard.user}")

    async def start(self, notebook_id: str, guard: Guard) -> Experiment:
        """Start a stopped notebook again: a new attempt, same id, URL and working directory."""
        row = await self.get(notebook_id, guard, "submit")
        if not Status(row.status).is_terminal:
            raise Conflict(f"notebook {notebook_id} is already {notebook_status(row)}")

        def again(session: Session) -> Experiment:
            current = session.get(Experiment, notebook_id, with_for_update=True)
            if current is None or current.status == Status.DELETED.value:
                raise NotFound(NOT_FOUND)
            if not Status(current.status).is_terminal:
                raise Conflict(f"notebook {notebook_id} is already {notebook_status(current)}")
            restart(session, current, f"started again by {guard.user}", uid=new_uid())
            current.access_token = self.tokens.new()  # a new server, a new token
            return current

        started = await self.db.run(again)
        self.on_submitted()
        return started

    def upstream_of(self, row: Experiment) -> tuple[str, str] | None:
        """``(server URL, token)`` of a notebook whose server answers, else None."""
        token = self.tokens.of(row)
        if not is_ready(row) or not token:
            return None
        return str(row.access["url"]), token


async def stop_notebook(
    db: Any,
    registry: ClusterRegistry,
    row: Experiment,
    reason: str,
    *,
    category: FailureCategory = FailureCategory.KILLED,
) -> Experiment:
    """End the notebook's attempt Failed with ``reason``, then stop its server (see
    :func:`end_then_cancel` for why in that order). A user's stop or the idle timeout (``killed``)
    marks the attempt stopped on purpose, so the notebook reads ``stopped``; a server that never
    answered (``timeout``) reads ``failed``."""

    def mark_stopped(current: Experiment) -> None:
        access = dict(attempt_access(current)) or {"uid": current.uid}
        access[STOPPED_AT] = now().isoformat()
        current.access = access

    return await end_then_cancel(
        db,
        registry,
        row.id,
        reason,
        category=category,
        uid=row.uid,
        refused=f"notebook {row.id} is not running",
        also=mark_stopped if category is FailureCategory.KILLED else None,
    )
