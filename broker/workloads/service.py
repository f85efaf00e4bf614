"""What the experiment and notebook services share: their collaborators, the submit dry run, and
get, list, events, delete and stop of a workload of their kind.

Reads and writes go through :class:`~broker.store.database.Database`; status changes go through
:func:`broker.state.transition`; cluster work goes through the registry's adapters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from broker.config.models import LimitsConfig
from broker.environments.builds import warm_clusters
from broker.environments.service import NAME_FIELD, EnvironmentService
from broker.errors import ApiError, BadRequest, Conflict, NotFound
from broker.guard import Guard
from broker.ids import IdGenerator
from broker.images import ImageRegistries
from broker.planner import Planner
from broker.registry import ClusterRegistry
from broker.state import FailureCategory, Status, record, transition
from broker.store.database import Database
from broker.workloads.kind import Kind
from broker.workloads.listing import Cursor, Filters, Page, read_page
from broker.workloads.model import Event, Workload
from broker.workloads.rows import events_of
from clusters.base import Handle, ReplicaLog
from clusters.errors import ClusterError, WorkloadNotFound
from policies.placement import Decision
from runtimes.environment import EnvironmentPlan
from runtimes.environment_spec import inline_plan
from runtimes.notebook import NotebookSpec
from runtimes.spec import ExperimentSpec

log = logging.getLogger(__name__)


async def cancel_on_cluster(registry: ClusterRegistry, row: Workload, what: str) -> str:
    """Stop the row's attempt on its cluster; returns a note for the event when that failed."""
    cluster = registry.get(row.cluster) if row.cluster else None
    if row.handle is None or cluster is None:
        return ""
    try:
        await cluster.adapter.cancel(Handle.from_json(row.handle))
    except ClusterError as exc:
        why = cluster.config.mask(str(exc))
        log.warning("%s %s: could not stop it on cluster %s: %s", what, row.id, row.cluster, why)
        return f"; could not stop it on cluster {row.cluster} yet ({why}): the orphan sweep will"
    return ""


async def end_then_cancel(
    db: Database,
    registry: ClusterRegistry,
    workload_id: str,
    reason: str,
    *,
    category: FailureCategory,
    refused: str,
    uid: str | None = None,
    also: Callable[[Workload], None] | None = None,
) -> Workload:
    """End a workload Failed with ``reason`` and ``category`` in one transaction, then stop its
    attempt on the cluster (a user's stop, an idle notebook's cull).

    The row is written first, on purpose: once it is terminal the monitor ignores what the cluster
    reports about the attempt, so the status a reader sees is the one the stop decided, never what
    the cancel caused on the way (a Jupyter server exits 0 on SIGTERM, a replica dies of the
    signal). ``refused`` is the 409 message when the workload has ended already (or, with ``uid``,
    when its attempt is no longer that one); ``also`` changes more of the row in the same
    transaction. A cancel that fails is recorded as an event on the ended workload.
    """

    def mark(session: Session) -> Workload:
        current = session.get(Workload, workload_id, with_for_update=True)
        if current is None or Status(current.status).is_terminal or (uid is not None and current.uid != uid):
            raise Conflict(refused)
        transition(session, current, Status.FAILED, reason, category=category)
        if also is not None:
            also(current)
        return current

    ended = await db.run(mark)
    note = await cancel_on_cluster(registry, ended, "stop")
    if note:

        def remember(session: Session) -> None:
            current = session.get(Workload, workload_id)
            if current is not None:
                record(session, current, note.removeprefix("; "))

        await db.run(remember)
    return ended


async def attempt_logs(
    registry: ClusterRegistry,
    row: Workload,
    names: list[str],
    *,
    replica: str | None = None,
    tail: int | None = None,
) -> list[ReplicaLog]:
    """The logs of the row's current attempt from its cluster: every replica (``names``, primary
    first) or ``replica`` alone; no lines where nothing ran yet or the cluster kept nothing; 503
    when the cluster cannot be asked."""
    cluster = registry.get(row.cluster) if row.cluster else None
    empty = [ReplicaLog(name, []) for name in ([replica] if replica else names)]
    if row.handle is None or cluster is None:
        return empty
    try:
        return await cluster.adapter.logs(Handle.from_json(row.handle), replica=replica, tail=tail)
    except WorkloadNotFound:
        return empty
    except ClusterError as exc:
        why = cluster.config.mask(str(exc))
        raise ApiError(503, f"cannot read logs from cluster {row.cluster}: {why}") from None


class WorkloadService:
    """One kind of workload as users see it: the verbs every kind has, keyed by :attr:`kind`.

    A workload of another kind, or one the caller may not read, is not found (404); an action the
    caller may not take on one it may read is a 403. Subclasses add what is their kind's own
    (submission, logs, a notebook's start) and may add to :meth:`delete` and :meth:`stop` through
    :meth:`_before_delete` and :meth:`_end`.
    """

    #: The kind this service serves: its rows, policy objects (``<kind>/<id>``) and messages.
    kind: ClassVar[Kind]

    def __init__(
        self,
        db: Database,
        registry: ClusterRegistry,
        ids: IdGenerator,
        *,
        default_namespace: str,
        planner: Planner,
        on_submitted: Callable[[], None] = lambda: None,
        limits: LimitsConfig | None = None,
        images: ImageRegistries | None = None,
        environments: EnvironmentService | None = None,
    ) -> None:
        self.db = db
        #: Registered environments, which ``environment.name`` names (None: none are registered).
        self.environments = environments
        self.limits = limits or LimitsConfig()
        self.images = images or ImageRegistries()
        self.registry = registry
        self.ids = ids
        self.default_namespace = default_namespace
        self.planner = planner
        self.on_submitted = on_submitted

    def cluster_names(self) -> list[str]:
        """The registered clusters, which ``meta.placement.cluster`` must name."""
        return [c.name for c in self.registry.all()]

    async def dry_run(
        self, spec: ExperimentSpec | NotebookSpec, guard: Guard
    ) -> tuple[str, Decision, EnvironmentPlan | None]:
        """The namespace the work goes to, where it would be placed now, and the environment it
        pins (a registered environment's current revision, or the spec's inline one).

        Raises 403 when the caller may not submit this kind of work in the namespace (an unknown
        ``meta.placement.cluster`` is refused with the spec's other problems: :meth:`cluster_names`),
        and 400 naming ``environment.name`` when no such environment is registered, or naming the
        image field when an image (the spec's, or the named environment's ``dockerImage``) is
        outside the allowed registries (``registries_only``).
        """
        self.images.check_spec(spec, self.kind)
        namespace = spec.meta.namespace or self.planner.home_namespace(guard.user) or self.default_namespace
        guard.require(namespace, f"{self.kind}/*", "submit")
        environment = await self.pinned_environment(spec, guard)
        if environment is not None and environment.image and spec.environment.name:
            refused = self.images.problem(environment.image)
            if refused:
                raise BadRequest(
                    f"{NAME_FIELD}: environment '{environment.name}' (revision {environment.revision}): "
                    f"{refused}",
                    field=NAME_FIELD,
                )
        warm: frozenset[str] = frozenset()
        if environment is not None:
            warm = (await self.db.run(warm_clusters([environment.hash]))).get(environment.hash, frozenset())
        decision = self.planner.decide(spec, namespace, guard.user, environment=environment, warm=warm)
        return namespace, decision, environment

    async def pinned_environment(
        self, spec: ExperimentSpec | NotebookSpec, guard: Guard
    ) -> EnvironmentPlan | None:
        """The environment a submission of ``spec`` pins: the current revision of the registered
        one it names (400 naming ``environment.name`` when unknown), else its inline one, if any."""
        name = spec.environment.name
        if not name:
            return inline_plan(spec.environment)
        if self.environments is None:
            raise BadRequest(f"{NAME_FIELD}: no environment named '{name}'", field=NAME_FIELD)
        return await self.environments.pinned(name, guard)

    def not_found(self, workload_id: str) -> str:
        """The 404 message for a workload of this kind that is not there (or not the caller's to see)."""
        return f"Not found {self.kind}: {workload_id}"

    def has_ended(self, row: Workload) -> str:
        """The 409 message when stopping a workload that has ended already."""
        return f"{self.kind} {row.id} has already ended ({row.status})"

    def visible(
        self, row: Workload | None, guard: Guard, action: str = "read", *, deleted: bool = False
    ) -> Workload:
        """``row`` if it is a live workload of this kind the caller may read (404 otherwise) and may
        ``action`` (403 otherwise); with ``deleted``, a deleted one too."""
        if row is None or row.kind != self.kind or (row.status == Status.DELETED.value and not deleted):
            raise NotFound(self.not_found(row.id if row is not None else ""))
        obj = f"{self.kind}/{row.id}"
        guard.require(row.namespace, obj, "read", hidden=True, what=self.not_found(row.id))
        if action != "read":
            guard.require(row.namespace, obj, action)
        return row

    async def get(
        self, workload_id: str, guard: Guard, action: str = "read", *, deleted: bool = False
    ) -> Workload:
        """A live workload of this kind the caller may see, or 404; 403 if it may not ``action`` it.
        With ``deleted``, a deleted one too (its record and logs stay for audit)."""
        row = await self.db.run(lambda s: s.get(Workload, workload_id))
        if row is None:
            raise NotFound(self.not_found(workload_id))
        return self.visible(row, guard, action, deleted=deleted)

    async def readable(
        self, guard: Guard, *where: ColumnElement[bool], status: Status | None = None
    ) -> list[Workload]:
        """The workloads of this kind in ``status`` (default: every live one) and matching
        ``where`` that the caller may read, newest first."""
        conditions = [
            Workload.status == status.value if status else Workload.status != Status.DELETED.value,
            *where,
        ]

        def query(session: Session) -> list[Workload]:
            return list(
                session.scalars(
                    select(Workload)
                    .where(Workload.kind == self.kind.value, *conditions)
                    .order_by(Workload.accepted_at.desc(), Workload.id.desc())
                ).all()
            )

        # Permission patterns cannot be turned into SQL, so rows are filtered here; the
        # Authorizer's cache makes each check a dictionary lookup.
        return [r for r in await self.db.run(query) if guard.may(r.namespace, f"{self.kind}/{r.id}", "read")]

    async def browse(
        self,
        guard: Guard,
        filters: Filters,
        *,
        size: int,
        before: Cursor | None = None,
        after: Cursor | None = None,
    ) -> Page:
        """One page of the workloads :meth:`readable` would give (the same rows, the same order,
        the same permission answers), chosen by the database: ``size`` rows older than ``before``
        (default: the newest), or with ``after`` the ``size`` just newer than it. Costs a page's
        worth of index reads per namespace, however many workloads there are
        (:mod:`broker.workloads.listing`)."""
        if not 1 <= size <= 1000:
            raise BadRequest("size: must be between 1 and 1000", field="size")
        return await self.db.run(
            lambda s: read_page(s, guard, self.kind, filters, size=size, before=before, after=after)
        )

    async def events(self, workload_id: str, guard: Guard) -> list[Event]:
        """Every status change and note of a workload the caller may read, oldest first."""
        await self.get(workload_id, guard)
        return await self.db.run(events_of(workload_id))

    async def delete(self, workload_id: str, guard: Guard) -> Workload:
        """Stop its attempt on its cluster, then mark it Deleted; its record and events stay for
        audit, and a notebook's name is free again."""
        row = await self.get(workload_id, guard, "delete")
        note = await cancel_on_cluster(self.registry, row, "delete")
        note += await self._before_delete(row)

        def mark(session: Session) -> Workload:
            current = session.get(Workload, workload_id, with_for_update=True)
            if current is None or current.status == Status.DELETED.value:
                raise NotFound(self.not_found(workload_id))
            if current.handle is None and current.cluster is not None:
                # A dispatch is in flight; it sees Deleted when it returns and cancels what it started.
                record(session, current, f"deleted while being submitted to {current.cluster}")
            transition(session, current, Status.DELETED, f"deleted by {guard.user}{note}")
            current.slot = None
            return current

        return await self.db.run(mark)

    async def _before_delete(self, row: Workload) -> str:
        """What else deleting ``row`` frees, once its attempt was cancelled; a note for the event."""
        return ""

    async def stop(self, workload_id: str, guard: Guard, reason: str | None = None) -> Workload:
        """Stop its attempt without deleting it (broker extension): it ends Failed, category
        ``killed``; 409 when it has ended already."""
        row = await self.get(workload_id, guard, "kill")
        if Status(row.status).is_terminal:
            raise Conflict(self.has_ended(row))
        return await self._end(row, reason or f"stopped by {guard.user}")

    async def _end(self, row: Workload, reason: str) -> Workload:
        """End ``row``'s attempt Failed (``killed``) with ``reason``, then cancel it on its cluster."""
        return await end_then_cancel(
            self.db,
            self.registry,
            row.id,
            reason,
            category=FailureCategory.KILLED,
            refused=f"{self.kind} {row.id} has already ended",
        )
