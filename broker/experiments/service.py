"""What the REST handlers (and later the UI) do with experiments: create, read, list, delete, logs.

Reads and writes go through :class:`~broker.store.database.Database`; status changes go through
:func:`broker.state.transition`; cluster work goes through the registry's adapters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.api.access import Guard
from broker.config.models import LimitsConfig
from broker.errors import ApiError, BadRequest, Conflict, NotFound
from broker.experiments.patch import in_namespace, keep_secrets, replace_spec, replaceable, retag
from broker.experiments.validation import parse_experiment_spec
from broker.experiments.views import replica_names, stored_spec
from broker.ids import IdGenerator, new_uid
from broker.planner import Planner
from broker.registry import ClusterRegistry
from broker.state import FailureCategory, Status, now, record, transition
from broker.store.database import Database
from broker.store.models import Event, Experiment
from clusters.base import Handle, ReplicaLog
from clusters.errors import ClusterError, WorkloadNotFound
from policies.placement import Decision
from runtimes.notebook import NotebookSpec
from runtimes.spec import ExperimentSpec

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000
#: How often a patch looks again at an experiment that moved while it was being patched.
PATCH_TRIES = 3


def new_row(workload_id: str, **fields: Any) -> dict[str, Any]:
    """The column values of a new workload row: a first attempt, Accepted now, plus ``fields``."""
    stamp = now()
    return {
        "id": workload_id,
        "uid": new_uid(),
        "attempt": 1,
        "status": Status.ACCEPTED.value,
        "priority": 0,
        "dispatch_tries": 0,
        "accepted_at": stamp,
        "updated_at": stamp,
        **fields,
    }


def insert_accepted(values: dict[str, Any], reason: str) -> Callable[[Session], Experiment]:
    """The unit of work that stores a new workload row (``values``) as Accepted with its first event.

    Core inserts: the hottest write of the broker, about half the cost of an ORM flush.
    """
    event = {
        "experiment_id": values["id"],
        "at": values["accepted_at"],
        "from_status": None,
        "to_status": Status.ACCEPTED.value,
        "reason": reason,
        "attempt": 1,
    }

    def insert_rows(session: Session) -> Experiment:
        session.execute(insert(Experiment), [values])
        session.execute(insert(Event), [event])
        return Experiment(**values)

    return insert_rows


def events_of(workload_id: str) -> Callable[[Session], list[Event]]:
    """The unit of work reading a workload's events, oldest first."""
    return lambda s: list(
        s.scalars(select(Event).where(Event.experiment_id == workload_id).order_by(Event.id)).all()
    )


async def cancel_on_cluster(registry: ClusterRegistry, row: Experiment, what: str) -> str:
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
    also: Callable[[Experiment], None] | None = None,
) -> Experiment:
    """End a workload Failed with ``reason`` and ``category`` in one transaction, then stop its
    attempt on the cluster (a user's stop, an idle notebook's cull).

    The row is written first, on purpose: once it is terminal the monitor ignores what the cluster
    reports about the attempt, so the status a reader sees is the one the stop decided, never what
    the cancel caused on the way (a Jupyter server exits 0 on SIGTERM, a replica dies of the
    signal). ``refused`` is the 409 message when the workload has ended already (or, with ``uid``,
    when its attempt is no longer that one); ``also`` changes more of the row in the same
    transaction. A cancel that fails is recorded as an event on the ended workload.
    """

    def mark(session: Session) -> Experiment:
        current = session.get(Experiment, workload_id, with_for_update=True)
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
            current = session.get(Experiment, workload_id)
            if current is not None:
                record(session, current, note.removeprefix("; "))

        await db.run(remember)
    return ended


async def attempt_logs(
    registry: ClusterRegistry,
    row: Experiment,
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
    """What experiment and notebook services share: their collaborators and the submit dry run."""

    #: ``experiment`` or ``notebook``: the policy object kind and the word in messages.
    kind: str = "experiment"

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
    ) -> None:
        self.db = db
        self.limits = limits or LimitsConfig()
        self.registry = registry
        self.ids = ids
        self.default_namespace = default_namespace
        self.planner = planner
        self.on_submitted = on_submitted

    def cluster_names(self) -> list[str]:
        """The registered clusters, which ``meta.placement.cluster`` must name."""
        return [c.name for c in self.registry.all()]

    def dry_run(self, spec: ExperimentSpec | NotebookSpec, guard: Guard) -> tuple[str, Decision]:
        """The namespace the work goes to and where it would be placed now.

        Raises 403 when the caller may not submit this kind of work in the namespace (an unknown
        ``meta.placement.cluster`` is refused with the spec's other problems: :meth:`cluster_names`).
        """
        namespace = spec.meta.namespace or self.planner.home_namespace(guard.user) or self.default_namespace
        guard.require(namespace, f"{self.kind}/*", "submit")
        return namespace, self.planner.decide(spec, namespace, guard.user)


class ExperimentService(WorkloadService):
    """Experiments as users see them."""

    def check_submission(
        self, document: dict[str, Any], guard: Guard
    ) -> tuple[ExperimentSpec, str, Decision]:
        """Validate a spec for ``guard``'s user and place it as a dry run.

        Raises 400 for a bad spec, 403 when the user may not submit in the namespace, and 422
        when no registered cluster could ever take the work (the message says why for each).
        """
        spec = parse_experiment_spec(document, clusters=self.cluster_names(), limits=self.limits)
        namespace, decision = self.dry_run(spec, guard)
        return spec, namespace, decision

    async def create(
        self, document: dict[str, Any], *, guard: Guard, idempotency_key: str | None = None
    ) -> Experiment:
        """Validate, authorise and store a new experiment as Accepted; wake the dispatcher."""
        owner = guard.user
        spec, namespace, decision = self.check_submission(document, guard)
        if decision.never_fits:
            raise ApiError(422, f"no registered cluster can ever take this experiment: {decision.rejection}")
        experiment_id = self.ids.next()
        values = new_row(
            experiment_id,
            name=spec.meta.name,
            namespace=namespace,
            owner=owner,
            framework=spec.meta.framework,
            spec=stored_spec(spec, experiment_id, namespace),
            idempotency_key=idempotency_key,
        )
        try:
            created = await self.db.run(insert_accepted(values, f"submitted by {owner}"))
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = await self.db.run(
                lambda s: s.scalar(
                    select(Experiment).where(
                        Experiment.owner == owner, Experiment.idempotency_key == idempotency_key
                    )
                )
            )
            if existing is None:
                raise
            return existing
        self.on_submitted()
        return created

    async def patch(self, experiment_id: str, document: dict[str, Any], guard: Guard) -> Experiment:
        """Submarine's patch: replace the spec while the experiment is Accepted, else change its tags.

        The caller needs ``submit`` on ``experiment/<id>`` (404 when it may not read it). While
        Accepted and unclaimed by a dispatcher, the new spec is validated and placed as a dry run
        like a submit by the experiment's owner (400, 403, 422), replaces the old one, takes a new
        attempt uid and is placed again; once dispatched only ``meta.tags`` may change (409 naming
        the fields otherwise). ``meta.namespace`` defaults to the experiment's and cannot change.
        """
        row = await self.get(experiment_id, guard, "submit")
        spec = parse_experiment_spec(
            in_namespace(document, row.namespace), clusters=self.cluster_names(), limits=self.limits
        )
        if spec.meta.namespace != row.namespace:
            raise Conflict(
                f"meta.namespace: experiment {experiment_id} is in namespace {row.namespace} and stays "
                f"there; submit a new experiment to run in {spec.meta.namespace}"
            )
        for _ in range(PATCH_TRIES):
            stored = keep_secrets(stored_spec(spec, experiment_id, row.namespace), row.spec)
            if replaceable(row):
                owner = guard if row.owner == guard.user else Guard(row.owner, guard.authorizer)
                _, decision = self.dry_run(spec, owner)
                if decision.never_fits:
                    raise ApiError(
                        422, f"no registered cluster can ever take this experiment: {decision.rejection}"
                    )
                unit = replace_spec(
                    experiment_id,
                    row.uid,
                    stored,
                    name=spec.meta.name,
                    framework=spec.meta.framework,
                    user=guard.user,
                )
                replaced = await self.db.run(unit)
                if replaced is not None:
                    self.on_submitted()
                    return replaced
            else:
                retagged = await self.db.run(retag(experiment_id, stored, user=guard.user))
                if retagged is not None:
                    return retagged
            row = await self.get(experiment_id, guard, "submit")  # it moved meanwhile: look again
        raise Conflict(f"experiment {experiment_id} changed while being patched; try again")

    async def get(
        self, experiment_id: str, guard: Guard, action: str = "read", *, deleted: bool = False
    ) -> Experiment:
        """A live (not deleted) experiment the caller may see, or 404; 403 if it may not ``action`` it.
        With ``deleted``, a deleted one too (its record and logs stay for audit)."""
        row = await self.db.run(lambda s: s.get(Experiment, experiment_id))
        missing = f"Not found experiment: {experiment_id}"
        if row is None or row.kind != "experiment" or (row.status == Status.DELETED.value and not deleted):
            raise NotFound(missing)
        obj = f"experiment/{row.id}"
        guard.require(row.namespace, obj, "read", hidden=True, what=missing)
        if action != "read":
            guard.require(row.namespace, obj, action)
        return row

    async def list(
        self,
        guard: Guard,
        *,
        status: str | None = None,
        page: int = 1,
        page_size: int = MAX_PAGE_SIZE,
        name: str | None = None,
        namespace: str | None = None,
    ) -> tuple[list[Experiment], int]:
        """Live experiments the caller may read, newest first, one page, and their total count;
        ``name`` and ``namespace`` (broker extensions) narrow the list to exact matches."""
        if page < 1:
            raise BadRequest("page: must be 1 or more", field="page")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise BadRequest(f"pageSize: must be between 1 and {MAX_PAGE_SIZE}", field="pageSize")
        wanted: Status | None = None
        if status:
            try:
                wanted = Status.parse(status)
            except ValueError as exc:
                raise BadRequest(f"status: {exc}", field="status") from None

        def query(session: Session) -> list[Experiment]:
            where = (
                [Experiment.status == wanted.value] if wanted else [Experiment.status != Status.DELETED.value]
            )
            where.append(Experiment.kind == "experiment")
            if name:
                where.append(Experiment.name == name.strip().lower())  # names are stored lower-case
            if namespace:
                where.append(Experiment.namespace == namespace.strip())
            return list(
                session.scalars(
                    select(Experiment)
                    .where(*where)
                    .order_by(Experiment.accepted_at.desc(), Experiment.id.desc())
                ).all()
            )

        # Permission patterns cannot be turned into SQL, so rows are filtered here; the
        # Authorizer's cache makes each check a dictionary lookup.
        visible = [
            r for r in await self.db.run(query) if guard.may(r.namespace, f"experiment/{r.id}", "read")
        ]
        start = (page - 1) * page_size
        return visible[start : start + page_size], len(visible)

    async def events(self, experiment_id: str, guard: Guard) -> list[Event]:
        await self.get(experiment_id, guard)
        return await self.db.run(events_of(experiment_id))

    async def logs(
        self,
        experiment_id: str,
        guard: Guard,
        *,
        replica: str | None = None,
        tail: int | None = None,
        deleted: bool = False,
    ) -> list[ReplicaLog]:
        """Per-replica logs, primary first; replicas that have not started yet have no lines.

        ``replica`` is a replica (``worker-1``) or the ``podName`` the logs answer shows
        (``<id>-worker-1``); ``deleted`` lets a deleted experiment's logs be read (as long as its
        cluster keeps them)."""
        row = await self.get(experiment_id, guard, "logs", deleted=deleted)
        names = replica_names(row.spec)
        pod_prefix = f"{row.id}-"
        if replica is not None and replica not in names and replica.startswith(pod_prefix):
            replica = replica.removeprefix(pod_prefix)
        if replica is not None and replica not in names:
            raise NotFound(
                f"experiment {experiment_id} has no replica '{replica}' (replicas: {', '.join(names)})"
            )
        return await attempt_logs(self.registry, row, names, replica=replica, tail=tail)

    async def delete(self, experiment_id: str, guard: Guard) -> Experiment:
        """Stop every replica on its cluster, then mark the experiment Deleted (history kept)."""
        row = await self.get(experiment_id, guard, "delete")
        note = await cancel_on_cluster(self.registry, row, "delete")

        def mark(session: Session) -> Experiment:
            current = session.get(Experiment, experiment_id, with_for_update=True)
            if current is None or current.status == Status.DELETED.value:
                raise NotFound(f"Not found experiment: {experiment_id}")
            if current.handle is None and current.cluster is not None:
                # A dispatch is in flight; it sees Deleted when it returns and cancels what it started.
                record(session, current, f"deleted while being submitted to {current.cluster}")
            transition(session, current, Status.DELETED, f"deleted by {guard.user}{note}")
            return current

        return await self.db.run(mark)

    async def stop(self, experiment_id: str, guard: Guard) -> Experiment:
        """Stop a run without deleting it (broker extension): it ends Failed, category ``killed``."""
        row = await self.get(experiment_id, guard, "kill")
        if Status(row.status).is_terminal:
            raise Conflict(f"experiment {experiment_id} has already ended ({row.status})")
        return await end_then_cancel(
            self.db,
            self.registry,
            experiment_id,
            f"stopped by {guard.user}",
            category=FailureCategory.KILLED,
            refused=f"experiment {experiment_id} has already ended",
        )
