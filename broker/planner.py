"""From a spec to a placement decision: the bridge between the broker and the placement engine.

Used for real placement (dispatch), for the dry run at submit (work no cluster could ever take
is refused there) and for ``POST /api/v1/placement/explain``.
"""

from __future__ import annotations

import dataclasses

from broker.notebooks.runtime import InterpreterProbe, NotebookRuntime, jupyter_problem
from broker.policy_runtime import PolicyRuntime
from broker.registry import ClusterRegistry, ClusterState
from broker.workloads.kind import Kind
from policies.placement import ClusterView, Decision, PlacementEngine, PlacementRequest
from runtimes.notebook import NotebookSpec
from runtimes.plan import ZERO, Resources
from runtimes.resources import parse_resources
from runtimes.spec import ExperimentSpec


def placement_request(
    spec: ExperimentSpec | NotebookSpec, namespace: str, user: str, refused_by: frozenset[str] = frozenset()
) -> PlacementRequest:
    """What the spec asks placement for: the whole gang's resources and its placement hints."""
    if isinstance(spec, NotebookSpec):
        return notebook_request(spec, namespace, user, refused_by)
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
        spec: ExperimentSpec | NotebookSpec,
        namespace: str,
        user: str,
        refused_by: frozenset[str] = frozenset(),
    ) -> Decision:
        """Where ``spec`` would go now, with every cluster's verdict.

        Clusters in ``refused_by`` turned the workload down before; they are tried again only
        when no other cluster could take it now.
        """
        views = [self._view(cluster, spec, namespace) for cluster in self.registry.all()]
        request = placement_request(spec, namespace, user, refused_by)
        decision = self.engine.place(request, views, self.policy.authorizer)
        if decision.chosen is None and refused_by:
            decision = self.engine.place(
                placement_request(spec, namespace, user), views, self.policy.authorizer
            )
        return decision

    def _view(
        self, cluster: ClusterState, spec: ExperimentSpec | NotebookSpec, namespace: str
    ) -> ClusterView:
        """The cluster as placement sees it: refused for a namespace it takes no work of (a local
        cluster whose run_as names no user for it) and, for a notebook, where Jupyter is missing."""
        view = cluster.view()
        kind = Kind.NOTEBOOK.value if isinstance(spec, NotebookSpec) else Kind.EXPERIMENT.value
        refusal = cluster.adapter.refuses_namespace(namespace)
        if refusal:
            return dataclasses.replace(view, cannot_run={kind: refusal})
        if isinstance(spec, NotebookSpec) and self.notebooks is not None:
            problem = jupyter_problem(self.notebooks, cluster, self.probe)
            if problem:
                return dataclasses.replace(view, cannot_run={kind: problem})
        return view

    def home_namespace(self, user: str) -> str | None:
        """The namespace a user's work goes to when the spec names none: their first team."""
        teams = self.policy.teams_of(user)
        return teams[0] if teams else None
