"""Experiments as users see them: submit, patch, list and logs; the verbs every kind shares are
:class:`~broker.workloads.service.WorkloadService`'s."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from broker.errors import ApiError, BadRequest, Conflict, NotFound
from broker.experiments.patch import in_namespace, keep_secrets, replace_spec, replaceable, retag
from broker.experiments.validation import parse_experiment_spec
from broker.experiments.views import replica_names, stored_spec
from broker.guard import Guard
from broker.state import Status
from broker.workloads.kind import Kind
from broker.workloads.model import Workload
from broker.workloads.rows import insert_accepted, new_row, pinned_columns
from broker.workloads.service import WorkloadService, attempt_logs
from clusters.base import ReplicaLog
from policies.placement import Decision
from runtimes.environment import EnvironmentPlan
from runtimes.spec import ExperimentSpec

MAX_PAGE_SIZE = 1000
#: How often a patch looks again at an experiment that moved while it was being patched.
PATCH_TRIES = 3


class ExperimentService(WorkloadService):
    """Experiments as users see them."""

    kind = Kind.EXPERIMENT

    async def check_submission(
        self, document: dict[str, Any], guard: Guard
    ) -> tuple[ExperimentSpec, str, Decision]:
        """Validate a spec for ``guard``'s user and place it as a dry run.

        Raises 400 for a bad spec (an unknown ``environment.name`` too) and 403 when the user may
        not submit in the namespace; the decision says whether any registered cluster could ever
        take the work (and why not, for each).
        """
        spec, namespace, decision, _ = await self.check_pinned(document, guard)
        return spec, namespace, decision

    async def check_pinned(
        self, document: dict[str, Any], guard: Guard
    ) -> tuple[ExperimentSpec, str, Decision, EnvironmentPlan | None]:
        """:meth:`check_submission`, and the environment the submission would pin."""
        spec = parse_experiment_spec(document, clusters=self.cluster_names(), limits=self.limits)
        namespace, decision, environment = await self.dry_run(spec, guard)
        return spec, namespace, decision, environment

    async def create(
        self,
        document: dict[str, Any],
        *,
        guard: Guard,
        idempotency_key: str | None = None,
        template: dict[str, Any] | None = None,
    ) -> Workload:
        """Validate, authorise and store a new experiment as Accepted; wake the dispatcher.

        ``template`` records the template (name, namespace, params) the spec was filled from."""
        owner = guard.user
        spec, namespace, decision, environment = await self.check_pinned(document, guard)
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
            template=template,
            **pinned_columns(environment),
        )
        try:
            created = await self.db.run(insert_accepted(values, f"submitted by {owner}"))
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = await self.db.run(
                lambda s: s.scalar(
                    select(Workload).where(
                        Workload.owner == owner, Workload.idempotency_key == idempotency_key
                    )
                )
            )
            if existing is None:
                raise
            return existing
        self.on_submitted()
        return created

    async def patch(self, experiment_id: str, document: dict[str, Any], guard: Guard) -> Workload:
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
                _, decision, environment = await self.dry_run(spec, owner)
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
                    environment=pinned_columns(environment),
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

    # Last in the class: below it, ``list`` in an annotation would name this method.
    async def list(
        self,
        guard: Guard,
        *,
        status: str | None = None,
        page: int = 1,
        page_size: int = MAX_PAGE_SIZE,
        name: str | None = None,
        namespace: str | None = None,
    ) -> tuple[list[Workload], int]:
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
        where = []
        if name:
            where.append(Workload.name == name.strip().lower())  # names are stored lower-case
        if namespace:
            where.append(Workload.namespace == namespace.strip())
        visible = await self.readable(guard, *where, status=wanted)
        start = (page - 1) * page_size
        return visible[start : start + page_size], len(visible)
