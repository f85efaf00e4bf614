"""From a spec to a placement decision: the bridge between the broker and the placement engine.

Used for real placement (dispatch), for the dry run at submit (work no cluster could ever take
is refused there) and for ``POST /api/v1/placement/explain``.
"""

from __future__ import annotations

import dataclasses
import logging

from broker.notebooks.runtime import InterpreterProbe, NotebookRuntime, jupyter_problem
from broker.policy_runtime import PolicyRuntime
from broker.registry import ClusterRegistry, ClusterState
from broker.workloads.kind import Kind
from policies.placement import ClusterView, Decision, PlacementEngine, PlacementRequest
from runtimes.environment import EnvironmentPlan
from runtimes.notebook import NotebookSpec
from runtimes.plan import ZERO, Resources
from runtimes.resources import parse_resources
from runtimes.serving import ServeSpec
from runtimes.spec import ExperimentSpec

log = logging.getLogger(__name__)


def placement_request(
    spec: ExperimentSpec | NotebookSpec | ServeSpec,
    namespace: str,
    user: str,
    refused_by: frozenset[str] = frozenset(),
    *,
    environment: EnvironmentPlan | None = None,
    warm: frozenset[str] = frozenset(),
) -> PlacementRequest:
    """What the spec asks placement for: the whole gang's resources, its placement hints, and the
    environment it installs with the clusters where that is built already (``warm``)."""
    request = _request(spec, namespace, user, refused_by)
    if environment is None:
        return request
    return dataclasses.replace(request, environment=environment.hash, warm=warm)


def _request(
    spec: ExperimentSpec | NotebookSpec | ServeSpec, namespace: str, user: str, refused_by: frozenset[str]
) -> PlacementRequest:
    if isinstance(spec, NotebookSpec):
        return notebook_request(spec, namespace, user, refused_by)
    if isinstance(spec, ServeSpec):
        return serve_request(spec, namespace, user, refused_by)
    total: Resources = ZERO
    largest: Resources = ZERO
    count = 0
    for _, task in spec.ordered_roles():
        each = parse_resources(task.resources)
        total = total + each.scaled(task.replicas)
        count += task.replicas
        if each.cpu > largest.cpu or each.memory > largest.memory:
            largest = each
    hints = spec.meta.placement
    return PlacementRequest(
        workload_kind=Kind.EXPERIMENT.value,
        namespace=namespace,
        user=user,
        total=total,
        largest_replica=largest,
        replicas=count,
        cluster=hints.cluster,
        selector=dict(hints.clusterSelector),
        preferred=tuple(hints.preferredClusters),
        refused_by=refused_by,
    )


def notebook_request(
    spec: NotebookSpec, namespace: str, user: str, refused_by: frozenset[str] = frozenset()
) -> PlacementRequest:
    """A notebook asks for one replica on a cluster that can serve an endpoint to the broker."""
    each = parse_resources(spec.spec.resources)
    hints = spec.meta.placement
    return PlacementRequest(
        workload_kind=Kind.NOTEBOOK.value,
        namespace=namespace,
        user=user,
        total=each,
        largest_replica=each,
        replicas=1,
        cluster=hints.cluster,
        selector=dict(hints.clusterSelector),
        preferred=tuple(hints.preferredClusters),
        needs=frozenset({"endpoints"}),
        refused_by=refused_by,
    )


def serve_request(
    spec: ServeSpec, namespace: str, user: str, refused_by: frozenset[str] = frozenset()
) -> PlacementRequest:
    """A served model asks for its replicas on one cluster that can serve endpoints to the broker
    (Slurm and YARN cannot: placement names that as their reason)."""
    each = parse_resources(spec.resources)
    hints = spec.placement
    return PlacementRequest(
        workload_kind=Kind.SERVE.value,
        namespace=namespace,
        user=user,
        total=each.scaled(spec.replicas),
        largest_replica=each,
        replicas=spec.replicas,
        cluster=hints.cluster,
        selector=dict(hints.clusterSelector),
        preferred=tuple(hints.preferredClusters),
        needs=frozenset({"endpoints"}),
        refused_by=refused_by,
    )


def kind_of(spec: ExperimentSpec | NotebookSpec | ServeSpec) -> Kind:
    """The workload kind a spec submits."""
    if isinstance(spec, NotebookSpec):
        return Kind.NOTEBOOK
    if isinstance(spec, ServeSpec):
        return Kind.SERVE
    return Kind.EXPERIMENT


def environment_problem(cluster: ClusterState, env: EnvironmentPlan) -> str | None:
    """Why ``cluster`` cannot apply ``env``, as its adapter says (an adapter bug reads as a refusal,
    logged, rather than failing every placement)."""
    try:
        return cluster.adapter.environment_problem(env)
    except Exception:  # noqa: BLE001 - one adapter must not break placement everywhere
        log.exception("cluster %s: environment_problem failed", cluster.name)
        return "the cluster could not tell whether it can apply this environment (see the broker log)"


class Planner:
    """Places specs on the registered clusters under the policy in force."""

    def __init__(
        self,
        registry: ClusterRegistry,
        policy: PolicyRuntime,
        engine: PlacementEngine,
        notebooks: NotebookRuntime | None = None,
        probe: InterpreterProbe | None = None,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.engine = engine
        #: How notebooks start (None: nothing is checked); the probe looks at their interpreter.
        self.notebooks = notebooks
        self.probe = probe or InterpreterProbe()

    def decide(
        self,
        spec: ExperimentSpec | NotebookSpec | ServeSpec,
        namespace: str,
        user: str,
        refused_by: frozenset[str] = frozenset(),
        *,
        environment: EnvironmentPlan | None = None,
        warm: frozenset[str] = frozenset(),
    ) -> Decision:
        """Where ``spec`` would go now, with every cluster's verdict.

        Clusters in ``refused_by`` turned the workload down before; they are tried again only
        when no other cluster could take it now. ``environment`` is what the workload installs
        (clusters that cannot apply it are out, with their reason) and ``warm`` the clusters
        where it is built already.
        """
        return self.snapshot().decide(spec, namespace, user, refused_by, environment=environment, warm=warm)

    def snapshot(self) -> PlacementSnapshot:
        """The clusters and the policy as they are now, to place a batch of workloads against."""
        return PlacementSnapshot(self)

    def cannot_run(self, cluster: ClusterState, kind: str, namespace: str) -> str | None:
        """Why ``cluster`` takes no work of this kind for ``namespace`` (a local cluster whose run_as
        names no user for it; for a notebook, an interpreter that lacks Jupyter), or None."""
        refusal = cluster.adapter.refuses_namespace(namespace)
        if refusal:
            return refusal
        if kind == Kind.NOTEBOOK and self.notebooks is not None:
            return jupyter_problem(self.notebooks, cluster, self.probe)
        return None

    def home_namespace(self, user: str) -> str | None:
        """The namespace a user's work goes to when the spec names none: their first team."""
        teams = self.policy.teams_of(user)
        return teams[0] if teams else None


class PlacementSnapshot:
    """The registered clusters as placement sees them at one moment, and the policy then in force.

    A dispatch pass places its whole batch against one snapshot: each cluster's view is built
    once, and what one placement takes (:meth:`take`) is no longer free for the next, so the batch
    never promises a cluster more than it has. Decisions are the ones :meth:`Planner.decide` would
    give for the clusters in the same condition (that method is a snapshot of one decision).
    """

    def __init__(self, planner: Planner) -> None:
        self._planner = planner
        self._authorizer = planner.policy.authorizer
        self._clusters = planner.registry.all()
        self._views = [cluster.view() for cluster in self._clusters]
        self._index = {cluster.name: i for i, cluster in enumerate(self._clusters)}
        self._reserved = [cluster.reserved for cluster in self._clusters]
        #: (kind, namespace) → each cluster's refusal of that work (None: no refusal), asked once.
        self._refusals: dict[tuple[str, str], list[str | None]] = {}
        #: environment hash → each cluster's reason it cannot apply it (None: it can), asked once.
        self._environment_refusals: dict[str, list[str | None]] = {}

    def decide(
        self,
        spec: ExperimentSpec | NotebookSpec | ServeSpec,
        namespace: str,
        user: str,
        refused_by: frozenset[str] = frozenset(),
        *,
        environment: EnvironmentPlan | None = None,
        warm: frozenset[str] = frozenset(),
    ) -> Decision:
        """Where ``spec`` would go in this snapshot (see :meth:`Planner.decide`)."""
        views = self._views_for(kind_of(spec).value, namespace)
        if environment is not None:
            views = self._with_environment(views, environment)
        engine, authorizer = self._planner.engine, self._authorizer
        decision = engine.place(
            placement_request(spec, namespace, user, refused_by, environment=environment, warm=warm),
            views,
            authorizer,
        )
        if decision.chosen is None and refused_by:
            request = placement_request(spec, namespace, user, environment=environment, warm=warm)
            decision = engine.place(request, views, authorizer)
        return decision

    def _with_environment(self, views: list[ClusterView], env: EnvironmentPlan) -> list[ClusterView]:
        """``views`` with each cluster's reason it cannot apply ``env`` (its adapter's own)."""
        refusals = self._environment_refusals.get(env.hash)
        if refusals is None:
            refusals = [environment_problem(c, env) for c in self._clusters]
            self._environment_refusals[env.hash] = refusals
        return [
            dataclasses.replace(view, environment_refusal=refusal) if refusal else view
            for view, refusal in zip(views, refusals, strict=True)
        ]

    def take(self, cluster: str, resources: Resources) -> None:
        """Count ``resources`` as promised on ``cluster`` for the rest of this snapshot."""
        i = self._index.get(cluster)
        if i is None:
            return
        self._reserved[i] = self._reserved[i] + resources
        self._views[i] = dataclasses.replace(
            self._views[i], free=self._clusters[i].free_with(self._reserved[i])
        )

    def _views_for(self, kind: str, namespace: str) -> list[ClusterView]:
        refusals = self._refusals.get((kind, namespace))
        if refusals is None:
            refusals = [self._planner.cannot_run(c, kind, namespace) for c in self._clusters]
            self._refusals[(kind, namespace)] = refusals
        if not any(refusals):
            return self._views
        return [
            dataclasses.replace(view, cannot_run={kind: refusal}) if refusal else view
            for view, refusal in zip(self._views, refusals, strict=True)
        ]
