"""Dispatch: Accepted workloads → placement → launch plan → adapter.submit → Created, a batch a pass.

A pass reads up to :data:`BATCH` Accepted rows, highest priority then oldest first, in one query
and works through them in that order:

1. place: every row against one :class:`~broker.planner.PlacementSnapshot`, where what one
   placement takes is no longer free for the next, so a batch never overcommits a cluster;
2. claim: one transaction of conditional UPDATEs (id, uid, status, and an empty cluster or our
   own earlier claim): a row a patch, a delete or another dispatcher changed since the read is
   left alone. The same transaction notes why the rows that wait are waiting;
3. submit: the claimed attempts at once, at most :data:`SUBMITS_PER_CLUSTER` in flight per
   cluster, and record the results in one transaction: those of every cluster whose submits are
   done, so a slow cluster delays no other (its results follow in a transaction of their own).

The chosen cluster is written to the row *before* the submit. If the broker dies between the two,
a later pass finds the cluster already chosen and submits the same attempt uid there again;
adapters are idempotent on that uid, so the workload starts once, on one cluster. A claim also
holds the row for ``claim_hold`` seconds (``next_dispatch_at``): a second dispatcher sharing the
database does not take it up while the first one's submit is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session, load_only
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from broker.environments.builds import record_build, touch, warm_clusters
from broker.environments.model import FAILED
from broker.images import ImageRegistries
from broker.notebooks.runtime import NotebookRuntime
from broker.notebooks.tokens import NotebookTokens
from broker.planner import PlacementSnapshot, Planner
from broker.redaction import redact
from broker.registry import ClusterRegistry, ClusterState
from broker.serving.handout import ServeHandout, spec_of
from broker.state import ACTIVE, FailureCategory, Status, now, record, transition
from broker.store.database import Database
from broker.tracking.attempt_runs import AttemptRun, experiment_name_for, open_runs
from broker.tracking.handout import TrackingHandout
from broker.workloads.kind import Kind
from broker.workloads.model import Event, Workload
from clusters.base import Capability, Handle
from clusters.errors import ClusterError, EnvironmentBuildFailed, SubmitRejected
from runtimes.environment import EnvironmentPlan
from runtimes.frameworks import build_plan
from runtimes.notebook import NotebookSpec, build_notebook_plan
from runtimes.plan import LaunchPlan, Resources
from runtimes.serving import ServeSpec
from runtimes.spec import ExperimentSpec

log = logging.getLogger(__name__)

#: Refusals after which an experiment fails instead of being retried.
MAX_SUBMIT_REFUSALS = 5
#: Rows one pass reads, places and claims.
BATCH = 100
#: Submits in flight at once on one cluster.
SUBMITS_PER_CLUSTER = 8
#: Seconds a claim keeps the row from other dispatchers while its submit is in flight (the
#: scheduler lease's default time to live: a broker that died mid-batch is replaced no sooner).
CLAIM_HOLD = 15.0

Spec = ExperimentSpec | NotebookSpec | ServeSpec


@dataclass(frozen=True)
class Pending:
    """What dispatch needs from one Accepted row (copied out of the session)."""

    id: str
    uid: str
    namespace: str
    owner: str
    spec: dict[str, Any]
    cluster: str | None
    status_message: str | None
    tries: int
    refused_by: frozenset[str]
    kind: str = Kind.EXPERIMENT.value
    #: A notebook's Jupyter token as stored (encrypted).
    access_token: str | None = None
    #: The placement decision stored with the row (None before the first one).
    placement: dict[str, Any] | None = None
    updated_at: datetime | None = None
    attempt: int = 1
    #: The environment pinned at submission (an EnvironmentPlan as stored; None: none).
    environment: dict[str, Any] | None = None

    @property
    def environment_plan(self) -> EnvironmentPlan | None:
        """The pinned environment, or None."""
        return EnvironmentPlan.model_validate(self.environment) if self.environment else None


_COLUMNS = (
    Workload.id,
    Workload.uid,
    Workload.namespace,
    Workload.owner,
    Workload.spec,
    Workload.cluster,
    Workload.status_message,
    Workload.dispatch_tries,
    Workload.placement,
    Workload.kind,
    Workload.access_token,
    Workload.updated_at,
    Workload.attempt,
    Workload.environment,
)


def _pending(session: Session) -> list[Pending]:
    stamp = now()
    rows = session.execute(
        select(*_COLUMNS)
        .where(
            Workload.status == Status.ACCEPTED.value,
            or_(Workload.next_dispatch_at.is_(None), Workload.next_dispatch_at <= stamp),
        )
        .order_by(Workload.priority.desc(), Workload.accepted_at, Workload.id)
        .limit(BATCH)
    ).all()
    return [
        Pending(
            r.id,
            r.uid,
            r.namespace,
            r.owner,
            r.spec,
            r.cluster,
            r.status_message,
            r.dispatch_tries,
            frozenset((r.placement or {}).get("refusedBy", [])),
            r.kind,
            r.access_token,
            r.placement,
            r.updated_at,
            r.attempt,
            r.environment,
        )
        for r in rows
    ]


@dataclass(frozen=True)
class Job:
    """A row placed in this pass (``placement`` set) or claimed before (a submit to finish)."""

    item: Pending
    cluster: ClusterState
    plan: LaunchPlan
    placement: dict[str, Any] | None = None
    summary: str | None = None


#: A submit's outcome: the attempt's handle, or the cluster's error.
Result = tuple[Job, Handle | ClusterError]


@dataclass(frozen=True)
class Wait:
    """A row no cluster takes now: the decision to store, and its summary as the status message."""

    item: Pending
    placement: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class Note:
    """A claimed row that cannot be submitted now; ``release`` gives its cluster up (place again)."""

    item: Pending
    message: str
    release: bool = False


@dataclass
class Batch:
    """One pass's rows, sorted by what happens to them next."""

    jobs: list[Job] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


class Dispatcher:
    """One dispatch pass over the Accepted workloads, oldest (and highest priority) first."""

    def __init__(
        self,
        db: Database,
        registry: ClusterRegistry,
        planner: Planner,
        *,
        backoff_max: float,
        extra_env: dict[str, str],
        notebooks: NotebookRuntime | None = None,
        tokens: NotebookTokens | None = None,
        claim_hold: float = CLAIM_HOLD,
        tracking: TrackingHandout | None = None,
        images: ImageRegistries | None = None,
        serving: ServeHandout | None = None,
    ) -> None:
        self.db = db
        #: Builds served models' plans (None: this dispatcher cannot start serves).
        self.serving = serving
        #: Resolves registry shorthands in plans and gives them their registries' credentials.
        self.images = images or ImageRegistries()
        self.registry = registry
        self.planner = planner
        self.backoff_max = backoff_max
        self.extra_env = extra_env
        self.notebooks = notebooks or NotebookRuntime(sys.executable)
        self.tokens = tokens
        self.claim_hold = claim_hold
        self.tracking = tracking
        #: After a pass: it read a full batch and claimed some of it, so more may be ready now.
        self.more = False
        #: Specs parsed by the last pass, by (uid, updated_at): rows that wait are not parsed again.
        self._specs: dict[tuple[str, datetime | None], Spec] = {}

    async def run_once(self) -> int:
        """Dispatch what can go now; returns how many workloads were submitted."""
        self.more = False
        items = await self.db.run(_pending)
        if not items:
            return 0
        hashes = {item.environment["hash"] for item in items if item.environment and item.cluster is None}
        warm = await self.db.run(warm_clusters(hashes)) if hashes else {}
        batch = self._prepare(items, warm)
        jobs, runs = (
            await self.db.run(_claim(batch, self.claim_hold, tracked=self.tracking is not None))
            if (batch.jobs or batch.waits or batch.notes)
            else ([], {})
        )
        if self.tracking is not None:
            for job in jobs:
                if job.item.uid in runs:
                    self.tracking.apply(job.plan, runs[job.item.uid])
        self.more = len(items) == BATCH and bool(jobs)
        if not jobs:
            return 0
        by_cluster: dict[str, list[Job]] = {}
        for job in jobs:
            job.cluster.reserved = job.cluster.reserved + job.plan.total_resources
            by_cluster.setdefault(job.cluster.name, []).append(job)
        return await self._submit(list(by_cluster.values()))

    async def _submit(self, groups: list[list[Job]]) -> int:
        """Submit every cluster's jobs at once; record the results of the clusters that are done,
        together, as soon as they are (a slow cluster's are recorded when it answers)."""
        running = {asyncio.ensure_future(self._submit_to(group)): group[0].cluster for group in groups}
        submitted = 0
        try:
            while running:
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                results: list[Result] = []
                for task in finished:
                    cluster = running.pop(task)
                    if task.exception() is not None:
                        log.error("dispatch to cluster %s failed", cluster.name, exc_info=task.exception())
                    else:
                        results += task.result()
                if results:
                    submitted += await self._record(results)
        finally:
            for task in running:
                task.cancel()
        return submitted

    async def _submit_to(self, jobs: list[Job]) -> list[Result]:
        """Submit one cluster's jobs, a bounded number at a time."""
        cluster = jobs[0].cluster
        gate = asyncio.Semaphore(SUBMITS_PER_CLUSTER)

        async def submit(job: Job) -> Handle | ClusterError | None:
            async with gate:
                try:
                    return await cluster.adapter.submit(job.plan)
                except ClusterError as exc:
                    return exc
                except Exception:  # an adapter bug: the claim lapses and a later pass tries again
                    log.exception("dispatch of %s failed", job.item.id)
                    return None

        outcomes = await asyncio.gather(*(submit(job) for job in jobs))
        results = []
        for job, outcome in zip(jobs, outcomes, strict=True):
            if not isinstance(outcome, Handle):
                cluster.reserved = _less(cluster.reserved, job.plan.total_resources)
            if outcome is not None:
                results.append((job, outcome))
        return results

    async def _record(self, results: list[Result]) -> int:
        """Record submit results in one transaction; cancel what was started for rows that moved on."""
        created, gone = await self.db.run(_record(results, self.backoff_max))
        for job, handle in gone:
            # Deleted (or otherwise ended) while we were submitting: stop what we just started.
            try:
                await job.cluster.adapter.cancel(handle)
            except ClusterError as exc:
                log.warning(
                    "could not cancel %s on %s after its deletion: %s",
                    job.item.id,
                    job.cluster.name,
                    job.cluster.config.mask(str(exc)),
                )
        return created

    # ------------------------------------------------------------------------------ place
    def _prepare(self, items: list[Pending], warm: dict[str, frozenset[str]] | None = None) -> Batch:
        """Place the unplaced rows against one snapshot, in order, and plan every submit;
        ``warm`` holds, per environment hash, the clusters where it is built.

        Nothing here awaits: the registry cannot change under the snapshot.
        """
        snapshot = self.planner.snapshot()
        batch = Batch()
        specs: dict[tuple[str, datetime | None], Spec] = {}
        for item in items:
            try:
                self._prepare_one(item, snapshot, batch, specs, warm or {})
            except Exception:  # one broken row must not stop the others
                log.exception("dispatch of %s failed", item.id)
        self._specs = specs
        return batch

    def _prepare_one(
        self,
        item: Pending,
        snapshot: PlacementSnapshot,
        batch: Batch,
        specs: dict[Any, Spec],
        warm: dict[str, frozenset[str]],
    ) -> None:
        key = (item.uid, item.updated_at)
        spec = self._specs.get(key) or self._parse(item)
        specs[key] = spec
        placement = summary = None
        if item.cluster is None:
            env = item.environment_plan
            decision = snapshot.decide(
                spec,
                item.namespace,
                item.owner,
                item.refused_by,
                environment=env,
                warm=warm.get(env.hash, frozenset()) if env is not None else frozenset(),
            )
            if decision.chosen is None:
                placed = {**decision.to_json(), "refusedBy": sorted(item.refused_by)}
                if placed != item.placement or decision.summary != item.status_message:
                    batch.waits.append(Wait(item, placed, decision.summary))
                return
            cluster = self.registry.get(decision.chosen)
            if cluster is None:
                return
            placement, summary = decision.to_json(), decision.summary
        else:
            cluster = self.registry.get(item.cluster)
            if cluster is None:
                # Its cluster left the registry between the choice and the submit: choose again.
                message = f"cluster {item.cluster} left the registry before the submit; placing again"
                batch.notes.append(Note(item, message, release=True))
                return
            if not cluster.reachable:
                # The submit may have reached it: wait (failover re-places after the grace period).
                message = f"waiting for cluster {item.cluster} to be reachable to finish its submission"
                if item.status_message != message:
                    batch.notes.append(Note(item, message))
                return
            # A chosen cluster that is reachable finishes the submission even if cordoned or
            # draining meanwhile: the attempt may exist there already, and submitting its uid again
            # is idempotent.
        plan = self._plan(item, spec, cluster)
        snapshot.take(cluster.name, plan.total_resources)
        batch.jobs.append(Job(item, cluster, plan, placement, summary))

    @staticmethod
    def _parse(item: Pending) -> Spec:
        if item.kind == Kind.NOTEBOOK:
            return NotebookSpec.model_validate(item.spec)
        if item.kind == Kind.SERVE:
            return spec_of(item.spec)
        return ExperimentSpec.model_validate(item.spec)

    def _plan(self, item: Pending, spec: Spec, cluster: ClusterState) -> LaunchPlan:
        """The launch plan of the item's attempt on ``cluster``, with its images' registry credentials."""
        return self.images.for_plan(self._built_plan(item, spec, cluster))

    def _built_plan(self, item: Pending, spec: Spec, cluster: ClusterState) -> LaunchPlan:
        """The launch plan of the item's attempt on ``cluster``: the framework's, or a notebook's."""
        addressing = cluster.adapter.addressing(item.uid)
        if isinstance(spec, ServeSpec):
            if self.tokens is None or self.serving is None:
                raise RuntimeError("a dispatcher without the broker's secret key cannot start serves")
            return self.serving.plan(
                item.spec,
                workload_id=item.id,
                uid=item.uid,
                namespace=item.namespace,
                addressing=addressing,
                # The cluster's interpreter for the servers the broker starts (notebook_python).
                python=self._notebook_python(cluster),
                server_token=self.tokens.reveal(item.access_token) or "",
                extra_env=self.extra_env,
                environment=item.environment_plan,
            )
        if isinstance(spec, NotebookSpec):
            if self.tokens is None:
                raise RuntimeError("a dispatcher without the broker's secret key cannot start notebooks")
            token = self.tokens.reveal(item.access_token) or ""
            return build_notebook_plan(
                spec,
                workload_id=item.id,
                uid=item.uid,
                namespace=item.namespace,
                addressing=addressing,
                python=self._notebook_python(cluster),
                app_module=self.notebooks.app_module,
                extra_env={**self.extra_env, "JUPYTER_TOKEN": token},
                environment=item.environment_plan,
            )
        return build_plan(
            spec,
            workload_id=item.id,
            uid=item.uid,
            namespace=item.namespace,
            addressing=addressing,
            extra_env=self.extra_env,
            environment=item.environment_plan,
        )

    def _notebook_python(self, cluster: ClusterState) -> str:
        return self.notebooks.python_on(cluster)


def _less(reserved: Resources, taken: Resources) -> Resources:
    """``reserved`` without ``taken``, never below zero (a health check may have reset it since)."""
    return Resources(
        cpu=max(0.0, reserved.cpu - taken.cpu),
        memory=max(0, reserved.memory - taken.memory),
        gpu=max(0, reserved.gpu - taken.gpu),
    )


#: What the claim and record units read of a row: no JSON column (each would be decoded).
_SLIM = load_only(
    Workload.id,
    Workload.uid,
    Workload.status,
    Workload.cluster,
    Workload.attempt,
    Workload.status_message,
    Workload.created_at,
)


def _rows(session: Session, ids: list[str], *, lock: bool = False) -> dict[str, Workload]:
    """The rows of ``ids`` in one query, fresh from the database (the session may be shared)."""
    if not ids:
        return {}
    query = (
        select(Workload).options(_SLIM).where(Workload.id.in_(ids)).execution_options(populate_existing=True)
    )
    if lock:
        query = query.order_by(Workload.id).with_for_update()  # one lock order for everyone
    return {row.id: row for row in session.scalars(query)}


_TABLE = cast(Table, Workload.__table__)
_MINE = (
    _TABLE.c.id == bindparam("row_id"),
    _TABLE.c.status == Status.ACCEPTED.value,
    _TABLE.c.uid == bindparam("row_uid"),  # a patch replaced the spec since we read it: not ours
)
#: Claim a row for the cluster it was just placed on: nobody chose one since the read.
_CLAIM = (
    update(_TABLE)
    .where(*_MINE, _TABLE.c.cluster.is_(None))
    .values(
        cluster=bindparam("to_cluster"),
        placement=bindparam("to_placement"),
        status_message=bindparam("to_summary"),
        next_dispatch_at=bindparam("until"),
    )
)
#: Claim a row again to finish its submission: claimed before (by a pass that died or gave up
#: on it), and not held now by another dispatcher's claim.
_RECLAIM = (
    update(_TABLE)
    .where(
        *_MINE,
        _TABLE.c.cluster == bindparam("to_cluster"),
        or_(_TABLE.c.next_dispatch_at.is_(None), _TABLE.c.next_dispatch_at <= bindparam("stamp")),
    )
    .values(next_dispatch_at=bindparam("until"))
)


def _claim(batch: Batch, hold: float, *, tracked: bool = False) -> Callable[[Session], Claimed]:
    """The unit of work that claims the placed rows and notes why the others wait.

    Returns the jobs whose claim held: their rows are still the attempt read, Accepted, and
    unclaimed (or claimed by an earlier pass whose submit is to be finished, and not held now).
    With ``tracked``, also opens the tracking run of each claimed experiment attempt, before any
    replica can log to it: the second part is each run's experiment id by attempt uid.
    """

    def claim(session: Session) -> Claimed:
        stamp = now()
        until = stamp + timedelta(seconds=hold)
        won = []
        for job in batch.jobs:
            mine = {
                "row_id": job.item.id,
                "row_uid": job.item.uid,
                "to_cluster": job.cluster.name,
                "until": until,
            }
            changes: dict[str, Any] = {"next_dispatch_at": until}
            if job.placement is not None:
                query, values = _CLAIM, {**mine, "to_placement": job.placement, "to_summary": job.summary}
                changes.update(cluster=job.cluster.name, placement=job.placement, status_message=job.summary)
            else:
                query, values = _RECLAIM, {**mine, "stamp": stamp}
            result: Any = session.execute(query, values)
            if result.rowcount == 1:
                won.append(job)
                _sync(session, job.item.id, changes)
        placed = [
            _event(job.item, f"placed on {job.cluster.name}", stamp)
            for job in won
            if job.placement is not None
        ]
        if placed:  # Core: the one event of each claimed row, in one statement
            session.execute(insert(Event), placed)
        rows = _rows(session, [wait.item.id for wait in batch.waits] + [note.item.id for note in batch.notes])
        for wait in batch.waits:
            row = rows.get(wait.item.id)
            if row is None or row.status != Status.ACCEPTED.value or row.uid != wait.item.uid or row.cluster:
                continue
            if row.placement != wait.placement:
                row.placement = wait.placement
            if row.status_message != wait.summary:
                row.status_message = wait.summary
                record(session, row, f"waiting: {wait.summary}", at=stamp)
        for note in batch.notes:
            row = rows.get(note.item.id)
            if row is None or row.status != Status.ACCEPTED.value or row.uid != note.item.uid:
                continue
            if note.release:
                row.cluster = None
            else:
                row.status_message = note.message
            record(session, row, note.message, at=stamp)
        runs = (
            open_runs(session, (_attempt_run(job) for job in won if job.item.kind == Kind.EXPERIMENT))
            if tracked
            else {}
        )
        return won, runs

    return claim


Claimed = tuple[list[Job], dict[str, int]]


def _attempt_run(job: Job) -> AttemptRun:
    """What the tracking run of a claimed experiment attempt records."""
    item, meta = job.item, job.item.spec.get("meta") or {}
    placement = job.placement if job.placement is not None else item.placement
    return AttemptRun(
        workload_id=item.id,
        uid=item.uid,
        attempt=item.attempt,
        name=job.plan.name,
        namespace=item.namespace,
        owner=item.owner,
        experiment_name=experiment_name_for(item.namespace, meta.get("trackingExperiment")),
        cluster=job.cluster.name,
        cluster_kind=job.cluster.config.kind,
        placement_revision=(placement or {}).get("revision"),
    )


def _sync(session: Session, workload_id: str, changes: dict[str, Any]) -> None:
    """Give a copy of the row that another unit of this (shared) session loaded the values a Core
    UPDATE just wrote, as the ORM's own bulk UPDATE would: that unit's caller reads it later."""
    cached = session.identity_map.get(identity_key(Workload, workload_id))
    if cached is not None:
        for key, value in changes.items():
            set_committed_value(cached, key, value)


def _event(item: Pending, reason: str, at: datetime) -> dict[str, Any]:
    """A note on a row still Accepted, as :func:`broker.state.record` would write it."""
    return {
        "workload_id": item.id,
        "at": at,
        "from_status": Status.ACCEPTED.value,
        "to_status": None,
        "reason": redact(reason),
        "attempt": item.attempt,
    }


Outcome = tuple[int, list[tuple[Job, Handle]]]


def _record(results: list[Result], backoff_max: float) -> Callable[[Session], Outcome]:
    """The unit of work that records submit results.

    Returns how many rows went Created, and the handles whose row moved on meanwhile (deleted,
    stopped, superseded): what they started is to be cancelled.
    """

    def save(session: Session) -> Outcome:
        rows = _rows(session, [job.item.id for job, _ in results], lock=True)
        created = 0
        gone: list[tuple[Job, Handle]] = []
        for job, result in results:
            row, cluster = rows.get(job.item.id), job.cluster
            ours = (
                row is not None
                and row.status == Status.ACCEPTED.value
                and row.uid == job.item.uid
                and row.cluster == cluster.name
            )
            if isinstance(result, ClusterError):
                if ours:
                    assert row is not None
                    _refused(session, row, job.item, cluster, result, backoff_max)
                continue
            if ours:
                assert row is not None
                _created(session, row, job, cluster, result)
                created += 1
            elif not (row is not None and row.uid == job.item.uid and row.status in ACTIVE and row.handle):
                gone.append((job, result))  # (an attempt another dispatcher recorded is left alone)
        return created, gone

    return save


def _created(session: Session, row: Workload, job: Job, cluster: ClusterState, handle: Handle) -> None:
    row.handle = handle.to_json()
    row.next_dispatch_at = None
    if job.plan.image and Capability.IMAGES not in cluster.adapter.capabilities:
        record(
            session,
            row,
            f"image {job.plan.image} is recorded but not used: {cluster.config.kind} clusters run the "
            "command directly on their hosts",
        )
    if job.plan.environment is not None:
        touch(session, [(cluster.name, job.plan.environment.hash)])
    transition(session, row, Status.CREATED, f"submitted to {cluster.name}")


def _refused(
    session: Session,
    row: Workload,
    item: Pending,
    cluster: ClusterState,
    exc: ClusterError,
    backoff_max: float,
) -> None:
    """A refusal frees the attempt for another cluster; any other error may have reached the
    cluster, so the choice is kept and the same uid is submitted there again after a back-off."""
    keep_cluster = not isinstance(exc, SubmitRejected)
    reason = cluster.config.mask(str(exc))
    if isinstance(exc, EnvironmentBuildFailed):
        # The installer's own line: trying again (here or elsewhere) would fail the same way.
        if job_environment := item.environment_plan:
            record_build(session, cluster.name, job_environment, FAILED, reason)
        transition(session, row, Status.FAILED, reason, category=FailureCategory.ENVIRONMENT)
        return
    tries = item.tries + 1
    delay = min(backoff_max, 2.0 ** min(tries, 10))
    row.dispatch_tries = tries
    record(session, row, f"submit to {cluster.name} failed (try {tries}): {reason}")
    if not keep_cluster and tries >= MAX_SUBMIT_REFUSALS:
        transition(
            session,
            row,
            Status.FAILED,
            f"refused by {cluster.name} {tries} times: {reason}",
            category=FailureCategory.REJECTED,
        )
        return
    if not keep_cluster:
        row.cluster = None
        refused = set((row.placement or {}).get("refusedBy", [])) | {cluster.name}
        row.placement = {**(row.placement or {}), "refusedBy": sorted(refused)}
    row.next_dispatch_at = now() + timedelta(seconds=delay)
    row.status_message = f"submit to {cluster.name} failed, retrying in {delay:g}s: {reason}"
