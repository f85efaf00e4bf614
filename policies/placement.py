"""The placement engine: filter the clusters, score the survivors, explain the choice.

Filters answer "may this workload go there at all, now?" with a reason when not; scorers rank
the clusters that pass. Every filter is evaluated for every cluster and the decision keeps each
cluster's verdict (every filter's outcome with its reason, every scorer's score), so a user can
see why work went where it went, or why it waits. The spec's preference order outranks the
scores, and cluster names break ties, so a decision is reproducible.

A filter is *static* when its outcome cannot change without an admin or policy edit (permission,
the explicit cluster, labels, capabilities, total capacity) and *dynamic* otherwise (readiness,
free capacity). Work that fails a static filter on every cluster could never be placed: the
decision says so (``never_fits``) and why (``rejection``), and the broker refuses it at submit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from policies.lines import MAX_WEIGHT
from runtimes.plan import Resources

if TYPE_CHECKING:
    from policies.authorizer import Authorizer


@dataclass(frozen=True)
class ClusterView:
    """What placement needs to know about one cluster, at one moment."""

    name: str
    kind: str
    labels: dict[str, str]
    weight: float
    ready: bool
    state: str
    capabilities: frozenset[str]
    total: Resources
    free: Resources
    message: str = ""
    running: int = 0  # workloads running there now (the spread scorer prefers fewer)
    #: Workload kinds this cluster cannot run for a reason of its own (say, its interpreter lacks
    #: Jupyter for notebooks), each with that reason; the capabilities filter refuses them.
    cannot_run: Mapping[str, str] = field(default_factory=dict)
    #: Why this cluster cannot apply the environment of the request being placed (its adapter's
    #: ``environment_problem``), set per request; the environment filter refuses it.
    environment_refusal: str | None = None


@dataclass(frozen=True)
class PlacementRequest:
    """What one workload asks for, and who asks."""

    workload_kind: str
    namespace: str
    total: Resources
    largest_replica: Resources
    replicas: int = 1
    cluster: str | None = None
    selector: dict[str, str] = field(default_factory=dict)
    preferred: tuple[str, ...] = ()
    needs: frozenset[str] = frozenset()
    user: str = "admin"
    #: Clusters that refused this workload's submit: tried again only when no other cluster fits.
    refused_by: frozenset[str] = frozenset()
    #: The identity hash of the environment the workload installs (None: none).
    environment: str | None = None
    #: Clusters where that environment is built already (the warm-environment score prefers them).
    warm: frozenset[str] = frozenset()


@dataclass
class Verdict:
    """One cluster's outcome.

    ``filters`` holds every filter's outcome ``{name, passed, reason}`` in pipeline order;
    ``reasons`` the failing filters' reasons. ``scores`` maps each scorer to its weighted
    contribution and ``score`` is their sum (both empty/zero for an ineligible cluster).
    """

    cluster: str
    eligible: bool
    reasons: list[str]
    score: float = 0.0
    filters: list[dict[str, object]] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "cluster": self.cluster,
            "eligible": self.eligible,
            "reasons": list(self.reasons),
            "filters": [dict(result) for result in self.filters],
            "scores": dict(self.scores),
            "score": self.score,
        }


@dataclass
class Decision:
    """The chosen cluster (or None), every cluster's verdict (best first) and the policy revision."""

    chosen: str | None
    verdicts: list[Verdict]
    revision: int | None = None
    never_fits: bool = False
    rejection: str | None = None

    @property
    def summary(self) -> str:
        """One sentence for a status message: where it went, or why it waits."""
        if self.chosen:
            return f"placed on {self.chosen}"
        if not self.verdicts:
            return "no clusters are registered"
        parts = [f"{v.cluster}: {'; '.join(v.reasons)}" for v in self.verdicts]
        return "no cluster fits now (" + " | ".join(parts) + ")"

    def to_json(self) -> dict[str, object]:
        """The decision as stored with the experiment and shown by the API (camelCase keys)."""
        return {
            "chosen": self.chosen,
            "summary": self.summary,
            "revision": self.revision,
            "neverFits": self.never_fits,
            "rejection": self.rejection,
            "verdicts": [v.to_json() for v in self.verdicts],
        }


Check = Callable[[PlacementRequest, ClusterView, "Authorizer | None"], "str | None"]
Score = Callable[[PlacementRequest, ClusterView, "Authorizer | None"], float]


@dataclass(frozen=True)
class Filter:
    """A named yes/no test: ``check`` returns None to pass, or the reason the cluster is out."""

    name: str
    check: Check
    static: bool


@dataclass(frozen=True)
class Scorer:
    """A named preference in [0, 1] (higher is better), counted ``weight`` times."""

    name: str
    score: Score
    weight: float = 1.0


def _cpu(value: float) -> str:
    return f"{value:g}"


def _gib(value: int) -> str:
    return f"{value / 2**30:.2f}Gi"


def _reported(cluster: ClusterView) -> bool:
    """False while a cluster has not reported its capacity (all zero): nothing static is known."""
    total = cluster.total
    return bool(total.cpu or total.memory or total.gpu)


def explicit_cluster(
    request: PlacementRequest, cluster: ClusterView, authorizer: Authorizer | None
) -> str | None:
    if request.cluster and request.cluster != cluster.name:
        return f"not the requested cluster {request.cluster}"
    return None


def not_refused(request: PlacementRequest, cluster: ClusterView, authorizer: Authorizer | None) -> str | None:
    if cluster.name in request.refused_by:
        return "refused this workload's submit before"
    return None


def permission(request: PlacementRequest, cluster: ClusterView, authorizer: Authorizer | None) -> str | None:
    """The policy must let the user place this kind of work for the namespace on the cluster."""
    if authorizer is None:
        return None
    decision = authorizer.may_place(request.user, request.namespace, cluster.name, request.workload_kind)
    if decision.allowed:
        return None
    what = f"{request.user} place {request.workload_kind} work for {request.namespace} on {cluster.name}"
    if not decision.matched:
        return f"no policy line lets {what}"
    lines = ", ".join(f"`{line.csv()}`" for line in decision.matched)
    return f"denied by policy line{'s' if len(decision.matched) > 1 else ''} {lines}: {what} is not allowed"


def ready(request: PlacementRequest, cluster: ClusterView, authorizer: Authorizer | None) -> str | None:
    """The cluster must be healthy and not cordoned."""
    if not cluster.ready:
        return f"cluster is {cluster.state}" + (f": {cluster.message}" if cluster.message else "")
    return None


def labels(request: PlacementRequest, cluster: ClusterView, authorizer: Authorizer | None) -> str | None:
    if not request.selector:
        return None
    missing = [f"{k}={v}" for k, v in sorted(request.selector.items()) if cluster.labels.get(k) != v]
    return f"lacks labels {', '.join(missing)}" if missing else None


def capabilities(
    request: PlacementRequest, cluster: ClusterView, authorizer: Authorizer | None
) -> str | None:
    lacking = sorted(request.needs - cluster.capabilities)
    if request.total.gpu and cluster.total.gpu == 0 and _reported(cluster):
        lacking = sorted(set(lacking) | {"gpu"})
    if lacking:
        return f"{cluster.kind} cluster cannot provide {', '.join(lacking)}"
    return cluster.cannot_run.get(request.workload_kind)


def environment(request: PlacementRequest, cluster: ClusterView, authorizer: Authorizer | None) -> str | None:
    """The cluster must be able to apply the workload's environment (conda where there is conda,
    pip installs where its config allows them, ...)."""
    if request.environment is None:
        return None
    return cluster.environment_refusal


def _needs(request: PlacementRequest) -> str:
    need = request.total
    return (
        f"needs cpu={_cpu(need.cpu)}, memory={_gib(need.memory)}, gpu={need.gpu} "
        f"for all {request.replicas} replicas"
    )


def fits_total(request: PlacementRequest, cluster: ClusterView, authorizer: Authorizer | None) -> str | None:
    """The whole gang must fit in the cluster's total capacity (every replica, or none)."""
    total = cluster.total
    if request.total.fits_in(total) or not _reported(cluster):
        return None
    return (
        f"{_needs(request)}; the cluster has cpu={_cpu(total.cpu)}, memory={_gib(total.memory)}, "
        f"gpu={total.gpu} in all"
    )


def fits_free(request: PlacementRequest, cluster: ClusterView, authorizer: Authorizer | None) -> str | None:
    """The whole gang must fit in what is free now. Work that cannot fit even an empty cluster is
    fits_total's to report, so this filter passes it rather than repeat the reason."""
    need, free = request.total, cluster.free
    if need.fits_in(free):
        return None
    if not _reported(cluster):
        return "the cluster has not reported its capacity yet"
    if not need.fits_in(cluster.total):
        return None
    return f"{_needs(request)}; free now: cpu={_cpu(free.cpu)}, memory={_gib(free.memory)}, gpu={free.gpu}"


def weight_score(request: PlacementRequest, cluster: ClusterView, authorizer: Authorizer | None) -> float:
    """The policy's weight for (namespace, cluster) from p2 lines, else the cluster's configured one."""
    weight = authorizer.weight(request.namespace, cluster.name) if authorizer is not None else None
    if weight is None:
        weight = cluster.weight
    # A weight past MAX_WEIGHT scores 1 anyway; capping it keeps one stored before weights were
    # bounded (or an infinite one) from scoring inf/inf = NaN.
    weight = min(weight, MAX_WEIGHT) if not math.isnan(weight) else 0.0
    return weight / (1.0 + weight)


def free_share_score(request: PlacementRequest, cluster: ClusterView, authorizer: Authorizer | None) -> float:
    """The share of the cluster's CPU still free after placing: spreads work out."""
    if cluster.total.cpu <= 0:
        return 0.0
    return max(0.0, (cluster.free.cpu - request.total.cpu) / cluster.total.cpu)


def spread_score(request: PlacementRequest, cluster: ClusterView, authorizer: Authorizer | None) -> float:
    """Fewer workloads running there scores higher."""
    return 1.0 / (1.0 + max(0, cluster.running))


def warm_environment_score(
    request: PlacementRequest, cluster: ClusterView, authorizer: Authorizer | None
) -> float:
    """1 where the workload's environment is built already (it starts without installing), else 0."""
    return 1.0 if request.environment is not None and cluster.name in request.warm else 0.0


def preference_rank(request: PlacementRequest, cluster: str) -> int:
    """A cluster's place in the spec's ``preferredClusters`` (0 is first); unlisted ones come after all."""
    return request.preferred.index(cluster) if cluster in request.preferred else len(request.preferred)


def _rejection(
    request: PlacementRequest, clusters: Sequence[ClusterView], failed: dict[str, list[tuple[str, str]]]
) -> str:
    """Why no cluster could ever take the work: shared causes first, then each cluster's reasons."""
    if not clusters:
        return "no clusters are registered"
    if request.cluster:
        # The other clusters are out because they were not asked for; the requested one says why.
        if request.cluster not in failed:
            return f"the requested cluster {request.cluster} is not registered"
        failed = {request.cluster: failed[request.cluster]}
    headlines, dropped = [], set()
    need = request.total
    sized = [c.total for c in clusters if _reported(c)]
    if sized:
        for dim, show in (("cpu", _cpu), ("memory", _gib), ("gpu", str)):
            most = max(getattr(t, dim) for t in sized)
            if getattr(need, dim) > most + (1e-9 if dim == "cpu" else 0):
                headlines.append(
                    f"needs {dim}={show(getattr(need, dim))} for all {request.replicas} replicas "
                    f"but no cluster has more than {dim}={show(most)} in all"
                )
                dropped.add("fits_total")
    if all(any(n == "permission" and r.startswith("no policy line") for n, r in f) for f in failed.values()):
        headlines.append(
            f"no policy line lets {request.user} place {request.workload_kind} work for "
            f"{request.namespace} on any cluster"
        )
        dropped.add("permission")
    parts = [
        f"{name}: {'; '.join(reasons)}"
        for name, failures in failed.items()
        if (reasons := [r for n, r in failures if n not in dropped])
    ]
    return "; ".join(headlines + ([" | ".join(parts)] if parts else []))


class PlacementEngine:
    """Runs every filter over every cluster, then the weighted scorers over the eligible ones."""

    def __init__(self, filters: Sequence[Filter], scorers: Sequence[Scorer]) -> None:
        self.filters = list(filters)
        self.scorers = list(scorers)

    def place(
        self, request: PlacementRequest, clusters: Sequence[ClusterView], authorizer: Authorizer | None = None
    ) -> Decision:
        """Choose the best eligible cluster; every cluster gets a verdict.

        ``authorizer`` is the policy in force (None: everything is permitted, no policy weights).
        """
        filters = [(f.name, f.check, f.static) for f in self.filters]
        scorers = [(s.name, s.score, s.weight) for s in self.scorers]
        verdicts = []
        static_failures: dict[str, list[tuple[str, str]]] = {}
        for cluster in clusters:
            results: list[dict[str, object]] = []
            reasons: list[str] = []
            for name, check, static in filters:
                reason = check(request, cluster, authorizer)
                results.append({"name": name, "passed": reason is None, "reason": reason})
                if reason is not None:
                    reasons.append(reason)
                    if static:
                        static_failures.setdefault(cluster.name, []).append((name, reason))
            verdict = Verdict(cluster.name, not reasons, reasons, 0.0, results, {})
            if not reasons:
                scores = {
                    name: round(w * score(request, cluster, authorizer), 6) for name, score, w in scorers
                }
                verdict.scores = scores
                verdict.score = round(sum(scores.values()), 6)
            verdicts.append(verdict)
        # The user's preference order outranks every score; scores order the rest; names break ties.
        verdicts.sort(
            key=lambda v: (not v.eligible, preference_rank(request, v.cluster), -v.score, v.cluster)
        )
        chosen = verdicts[0].cluster if verdicts and verdicts[0].eligible else None
        revision = authorizer.revision if authorizer is not None else None
        never_fits = len(static_failures) == len(clusters)
        rejection = _rejection(request, clusters, static_failures) if never_fits else None
        return Decision(chosen, verdicts, revision, never_fits, rejection)


#: The warm-environment score's default weight (broker.yaml ``environments.warm_weight``).
WARM_WEIGHT = 1.0
WARM_ENVIRONMENT = "warm-environment"


def default_engine(warm_weight: float = WARM_WEIGHT) -> PlacementEngine:
    """The built-in pipeline: explicit cluster, permission, readiness, labels, capabilities,
    environment, gang capacity (total, then free); then the spec's preference order, then policy
    weight, free share, spread and the warm environment (``warm_weight``)."""
    return PlacementEngine(
        filters=[
            Filter("explicit_cluster", explicit_cluster, static=True),
            Filter("permission", permission, static=True),
            Filter("ready", ready, static=False),
            Filter("labels", labels, static=True),
            Filter("capabilities", capabilities, static=True),
            Filter("environment", environment, static=True),
            Filter("fits_total", fits_total, static=True),
            Filter("fits_free", fits_free, static=False),
            Filter("not_refused", not_refused, static=False),
        ],
        scorers=[
            Scorer("policy_weight", weight_score, 2.0),
            Scorer("free_share", free_share_score, 1.0),
            Scorer("spread", spread_score, 0.5),
            Scorer(WARM_ENVIRONMENT, warm_environment_score, warm_weight),
        ],
    )
