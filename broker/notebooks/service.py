"""What the REST handlers and the proxy do with notebooks: create, read, list, delete, stop, start.

Notebooks are workloads of kind ``notebook``: placement, dispatch, monitoring, failover, events
and the verbs of :class:`~broker.workloads.service.WorkloadService` are every kind's. What is
theirs: the unique live name per namespace (``slot``), the per-notebook Jupyter token, the
``access`` record the notebook watch keeps (where the server listens, when it answered, its last
activity), their files kept between attempts, and starting an ended one again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.environments.service import EnvironmentService
from broker.errors import ApiError, Conflict, NotFound
from broker.guard import Guard
from broker.ids import IdGenerator
from broker.images import ImageRegistries
from broker.notebooks.tokens import NotebookTokens
from broker.notebooks.views import STOPPED_AT, attempt_access, is_ready, notebook_status
from broker.planner import Planner
from broker.registry import ClusterRegistry
from broker.state import FailureCategory, Status, now
from broker.store.database import Database
from broker.workloads.kind import Kind
from broker.workloads.model import Workload
from broker.workloads.rows import insert_accepted, new_attempt, new_row, pinned_columns
from broker.workloads.service import WorkloadService, attempt_logs, end_then_cancel
from broker.workloads.validation import validate_document
from clusters.base import ReplicaLog
from clusters.errors import ClusterError
from policies.placement import Decision
from runtimes.environment import EnvironmentPlan
from runtimes.notebook import REPLICA, NotebookSpec

log = logging.getLogger(__name__)

NOT_FOUND = "Notebook not found."
DUPLICATE = "Invalid. Notebook with same name is already existed."


def slot_of(namespace: str, name: str) -> str:
    """The unique key of a live notebook name in a namespace."""
    return f"notebook:{namespace}/{name}"


class NotebookService(WorkloadService):
    """Notebooks as users see them."""

    kind = Kind.NOTEBOOK

    def __init__(
        self,
        db: Database,
        registry: ClusterRegistry,
        ids: IdGenerator,
        *,
        default_namespace: str,
        planner: Planner,
        tokens: NotebookTokens,
        on_submitted: Callable[[], None] = lambda: None,
        images: ImageRegistries | None = None,
        environments: EnvironmentService | None = None,
    ) -> None:
        super().__init__(
            db,
            registry,
            ids,
            default_namespace=default_namespace,
            planner=planner,
            on_submitted=on_submitted,
            images=images,
            environments=environments,
        )
        self.tokens = tokens

    async def check_submission(
        self, document: dict[str, Any], guard: Guard
    ) -> tuple[NotebookSpec, str, Decision]:
        """Validate, authorise and dry-run place a NotebookSpec (400 / 403)."""
        spec, namespace, decision, _ = await self.check_pinned(document, guard)
        return spec, namespace, decision

    async def check_pinned(
        self, document: dict[str, Any], guard: Guard
    ) -> tuple[NotebookSpec, str, Decision, EnvironmentPlan | None]:
        """:meth:`check_submission`, and the environment the submission would pin."""
        spec = validate_document(NotebookSpec, document, self.kind, clusters=self.cluster_names())
        namespace, decision, environment = await self.dry_run(spec, guard)
        return spec, namespace, decision, environment

    async def create(self, document: dict[str, Any], *, guard: Guard) -> Workload:
        """Store a new notebook as Accepted (status ``waiting``) and wake the dispatcher; 409 on a
        name already used by a live notebook of the namespace."""
        spec, namespace, decision, environment = await self.check_pinned(document, guard)
        if decision.never_fits:
            raise ApiError(422, f"no registered cluster can ever run this notebook: {decision.rejection}")
        values = new_row(
            self.ids.next(),
            name=spec.meta.name,
            namespace=namespace,
            owner=guard.user,
            framework=Kind.NOTEBOOK.value,
            kind=Kind.NOTEBOOK.value,
            slot=slot_of(namespace, spec.meta.name),
            access_token=self.tokens.new(),
            spec={
                **spec.model_dump(mode="json"),
                "meta": {**spec.meta.model_dump(mode="json"), "namespace": namespace},
            },
            **pinned_columns(environment),
        )
        try:
            created = await self.db.run(insert_accepted(values, f"created by {guard.user}"))
        except IntegrityError:
            raise Conflict(f"{DUPLICATE} ({spec.meta.name} in namespace {namespace})") from None
        self.on_submitted()
        return created

    def not_found(self, workload_id: str) -> str:
        return NOT_FOUND

    def has_ended(self, row: Workload) -> str:
        return f"notebook {row.id} is not running ({notebook_status(row)})"

    async def by_path(self, namespace: str, name: str, guard: Guard) -> Workload:
        """The live notebook ``namespace/name`` if the caller may use it (its proxy), else 404."""
        row = await self.db.run(
            lambda s: s.scalar(select(Workload).where(Workload.slot == slot_of(namespace, name)))
        )
        return self.visible(row, guard)

    async def logs(
        self, notebook_id: str, guard: Guard, *, tail: int | None = None
    ) -> tuple[Workload, list[ReplicaLog]]:
        """The notebook and its Jupyter server's output (the notebook is a one-replica plan) of its
        current or last attempt, through its cluster's logs verb; no lines before it started."""
        row = await self.get(notebook_id, guard, "logs")
        return row, await attempt_logs(self.registry, row, [REPLICA], tail=tail)

    async def _before_delete(self, row: Workload) -> str:
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

    async def _end(self, row: Workload, reason: str) -> Workload:
        """Stop the server, keep the notebook (its id, name and files) to start it again."""
        return await stop_notebook(self.db, self.registry, row, reason)

    async def start(self, notebook_id: str, guard: Guard) -> Workload:
        """Start a stopped notebook again: a new attempt, same id, URL and working directory."""
        row = await self.get(notebook_id, guard, "submit")
        if not Status(row.status).is_terminal:
            raise Conflict(f"notebook {notebook_id} is already {notebook_status(row)}")

        def again(session: Session) -> Workload:
            current = session.get(Workload, notebook_id, with_for_update=True)
            if current is None or current.status == Status.DELETED.value:
                raise NotFound(NOT_FOUND)
            if not Status(current.status).is_terminal:
                raise Conflict(f"notebook {notebook_id} is already {notebook_status(current)}")
            new_attempt(session, current, f"started again by {guard.user}", revive=True)
            current.access_token = self.tokens.new()  # a new server, a new token
            return current

        started = await self.db.run(again)
        self.on_submitted()
        return started

    def upstream_of(self, row: Workload) -> tuple[str, str] | None:
        """``(server URL, token)`` of a notebook whose server answers, else None."""
        token = self.tokens.of(row)
        if not is_ready(row) or not token:
            return None
        return str(attempt_access(row)["url"]), token

    # Last in the class: below it, ``list`` in an annotation would name this method.
    async def list(self, guard: Guard, *, status: str | None = None) -> list[Workload]:
        """Live notebooks the caller may read, newest first (Submarine's ``?id=`` is ignored, as
        there); ``status`` filters on the lower-case notebook status."""
        rows = await self.readable(guard)
        if status:
            rows = [r for r in rows if notebook_status(r) == status.strip().lower()]
        return rows


async def stop_notebook(
    db: Database,
    registry: ClusterRegistry,
    row: Workload,
    reason: str,
    *,
    category: FailureCategory = FailureCategory.KILLED,
) -> Workload:
    """End the notebook's attempt Failed with ``reason``, then stop its server (see
    :func:`end_then_cancel` for why in that order). A user's stop or the idle timeout (``killed``)
    marks the attempt stopped on purpose, so the notebook reads ``stopped``; a server that never
    answered (``timeout``) reads ``failed``."""

    def mark_stopped(current: Workload) -> None:
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
