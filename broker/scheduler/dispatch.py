"""Dispatch: Accepted experiments → placement → launch plan → adapter.submit → Created.

The chosen cluster is written to the row *before* the submit. If the broker dies between the two,
the next dispatch finds the cluster already chosen and submits the same attempt uid there again;
adapters are idempotent on that uid, so the workload starts once, on one cluster.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from broker.notebooks.runtime import NotebookRuntime
from broker.notebooks.tokens import NotebookTokens
from broker.planner import Planner
from broker.registry import ClusterRegistry, ClusterState
from broker.state import FailureCategory, IllegalTransition, Status, now, record, transition
from broker.store.database import Database
from broker.workloads.kind import Kind
from broker.workloads.model import Workload
from clusters.base import Capability, Handle
from clusters.errors import ClusterError, SubmitRejected
from runtimes.frameworks import build_plan
from runtimes.notebook import NotebookSpec, build_notebook_plan
from runtimes.plan import LaunchPlan
from runtimes.spec import ExperimentSpec

log = logging.getLogger(__name__)

#: Refusals after which an experiment fails instead of being retried.
MAX_SUBMIT_REFUSALS = 5
BATCH = 100


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


def _pending(session: Session) -> list[Pending]:
    stamp = now()
    rows = session.scalars(
        select(Workload)
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
        )
        for r in rows
    ]


class Dispatcher:
    """One dispatch pass over the Accepted experiments, oldest (and highest priority) first."""

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
    ) -> None:
        self.db = db
        self.registry = registry
        self.planner = planner
        self.backoff_max = backoff_max
        self.extra_env = extra_env
        self.notebooks = notebooks or NotebookRuntime(sys.executable)
        self.tokens = tokens

    async def run_once(self) -> int:
        """Dispatch what can go now; returns how many experiments were submitted."""
        submitted = 0
        for item in await self.db.run(_pending):
            try:
                if await self._dispatch(item):
                    submitted += 1
            except Exception:  # one broken row must not stop the others
                log.exception("dispatch of %s failed", item.id)
        return submitted

    def _plan(self, item: Pending, spec: ExperimentSpec | NotebookSpec, cluster: ClusterState) -> LaunchPlan:
        """The launch plan of the item's attempt on ``cluster``: the framework's, or a notebook's."""
        addressing = cluster.adapter.addressing(item.uid)
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
            )
        return build_plan(
            spec,
            workload_id=item.id,
            uid=item.uid,
            namespace=item.namespace,
            addressing=addressing,
            extra_env=self.extra_env,
        )

    def _notebook_python(self, cluster: ClusterState) -> str:
        return self.notebooks.python_on(cluster)

    async def _dispatch(self, item: Pending) -> bool:
        spec: ExperimentSpec | NotebookSpec = (
            NotebookSpec.model_validate(item.spec)
            if item.kind == Kind.NOTEBOOK
            else ExperimentSpec.model_validate(item.spec)
        )
        cluster = self.registry.get(item.cluster) if item.cluster else None
        if item.cluster is None:
            cluster = await self._place(item, spec)
            if cluster is None:
                return False
        elif cluster is None:
            # Its cluster left the registry between the choice and the submit: choose again.
            await self._release(
                item, f"cluster {item.cluster} left the registry before the submit; placing again"
            )
            return False
        elif not cluster.reachable:
            # The submit may have reached it: wait (failover re-places after the grace period).
            await self._note(
                item, f"waiting for cluster {item.cluster} to be reachable to finish its submission"
            )
            return False
        # A chosen cluster that is reachable finishes the submission even if cordoned or draining
        # meanwhile: the attempt may exist there already, and submitting its uid again is idempotent.
        plan = self._plan(item, spec, cluster)
        before = cluster.reserved
        cluster.reserved = before + plan.total_resources
        try:
            handle = await cluster.adapter.submit(plan)
        except ClusterError as exc:
            cluster.reserved = before
            # A refusal frees the attempt for another cluster; any other error may have reached the
            # cluster, so the choice is kept and the same uid is submitted there again.
            await self._refused(
                item,
                cluster.name,
                cluster.config.mask(str(exc)),
                keep_cluster=not isinstance(exc, SubmitRejected),
            )
            return False
        ignores_image = plan.image and Capability.IMAGES not in cluster.adapter.capabilities
        return await self._created(item, cluster, handle, image_note=plan.image if ignores_image else None)

    async def _place(self, item: Pending, spec: ExperimentSpec | NotebookSpec) -> ClusterState | None:
        decision = self.planner.decide(spec, item.namespace, item.owner, item.refused_by)
        placed = {**decision.to_json(), "refusedBy": sorted(item.refused_by)}
        if decision.chosen is None:
            summary = decision.summary

            def wait(session: Session) -> None:
                row = session.get(Workload, item.id)
                if row is None or row.status != Status.ACCEPTED.value or row.uid != item.uid:
                    return
                row.placement = placed
                if row.status_message != summary:
                    row.status_message = summary
                    record(session, row, f"waiting: {summary}")

            await self.db.run(wait)
            return None

        def claim(session: Session) -> bool:
            result = session.execute(
                update(Workload)
                .where(
                    Workload.id == item.id,
                    Workload.status == Status.ACCEPTED.value,
                    Workload.cluster.is_(None),
                    Workload.uid == item.uid,  # a patch replaced the spec since we read it: not ours
                )
                .values(
                    cluster=decision.chosen, placement=decision.to_json(), status_message=decision.summary
                )
            )
            if result.rowcount != 1:
                return False
            row = session.get(Workload, item.id)
            record(session, row, f"placed on {decision.chosen}")
            return True

        if not await self.db.run(claim):
            return None
        return self.registry.get(decision.chosen)

    async def _release(self, item: Pending, message: str) -> None:
        def release(session: Session) -> None:
            row = session.get(Workload, item.id)
            if row is not None and row.status == Status.ACCEPTED.value and row.uid == item.uid:
                row.cluster = None
                record(session, row, message)

        await self.db.run(release)

    async def _note(self, item: Pending, message: str) -> None:
        if item.status_message == message:
            return

        def note(session: Session) -> None:
            row = session.get(Workload, item.id)
            if row is not None and row.status == Status.ACCEPTED.value:
                row.status_message = message
                record(session, row, message)

        await self.db.run(note)

    async def _refused(self, item: Pending, cluster: str, reason: str, *, keep_cluster: bool) -> None:
        tries = item.tries + 1
        delay = min(self.backoff_max, 2.0 ** min(tries, 10))

        def refuse(session: Session) -> None:
            row = session.get(Workload, item.id)
            if row is None or row.status != Status.ACCEPTED.value:
                return
            row.dispatch_tries = tries
            record(session, row, f"submit to {cluster} failed (try {tries}): {reason}")
            if not keep_cluster and tries >= MAX_SUBMIT_REFUSALS:
                transition(
                    session,
                    row,
                    Status.FAILED,
                    f"refused by {cluster} {tries} times: {reason}",
                    category=FailureCategory.REJECTED,
                )
                return
            if not keep_cluster:
                row.cluster = None
                refused = set((row.placement or {}).get("refusedBy", [])) | {cluster}
                row.placement = {**(row.placement or {}), "refusedBy": sorted(refused)}
            row.next_dispatch_at = now() + timedelta(seconds=delay)
            row.status_message = f"submit to {cluster} failed, retrying in {delay:g}s: {reason}"

        await self.db.run(refuse)

    async def _created(
        self, item: Pending, cluster: ClusterState, handle: Handle, image_note: str | None
    ) -> bool:
        def save(session: Session) -> bool:
            row = session.get(Workload, item.id, with_for_update=True)
            if row is None or row.status != Status.ACCEPTED.value:
                return False
            row.handle = handle.to_json()
            if image_note:
                record(
                    session,
                    row,
                    f"image {image_note} is recorded but not used: {cluster.config.kind} clusters run the "
                    "command directly on their hosts",
                )
            try:
                transition(session, row, Status.CREATED, f"submitted to {cluster.name}")
            except IllegalTransition:
                return False
            return True

        if await self.db.run(save):
            return True
        # Deleted (or otherwise ended) while we were submitting: stop what we just started.
        try:
            await cluster.adapter.cancel(handle)
        except ClusterError as exc:
            log.warning(
                "could not cancel %s on %s after its deletion: %s",
                item.id,
                cluster.name,
                cluster.config.mask(str(exc)),
            )
        return False
