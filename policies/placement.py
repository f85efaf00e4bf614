"""The placement engine: filter the clusters, score the survivors, explain the choice.

Filters answer "may this workload go there at all, now?" with a reason when not; scorers rank
the clusters that pass. The decision keeps every cluster's verdict so a user can see why work
went where it went (or why it waits). Ties are broken by cluster name, so a decision is
reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from runtimes.plan import Resources


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


@dataclass(frozen=True)
class PlacementRequest:
    """What one workload asks for."""

    workload_kind: str
    namespace: str
    total: Resources
    largest_replica: Resources
    replicas: int = 1
    cluster: str | None = None
    selector: dict[str, str] = field(default_factory=dict)
    preferred: tuple[str, ...] = ()
    needs: frozenset[str] = frozenset()


@dataclass
class Verdict:
    """One cluster's outcome: eligible or not (with reasons), and its score."""

    cluster: str
    eligible: bool
    reasons: list[str]
    score: float = 0.0


@dataclass
class Decision:
    """The chosen cluster (or None) and every cluster's verdict, best first."""

    chosen: str | None
    verdicts: list[Verdict]

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
        return {
            "chosen": self.chosen,
            "summary": self.summary,
            "verdicts": [asdict(v) for v in self.verdicts],
        }


class Filter(Protocol):
    """A yes/no test; returns None to pass, or the reason the cluster is out."""

    def __call__(self, request: PlacementRequest, cluster: ClusterView) -> str | None: ...


class Scorer(Protocol):
    """A preference in [0, 1]; higher is better."""

    def __call__(self, request: PlacementRequest, cluster: ClusterView) -> float: ...


def _cpu(value: float) -> str:
    return f"{value:g}"


def _gib(value: int) -> str:
    return f"{value / 2**30:.2f}Gi"


def explicit_cluster(request: PlacementRequest, cluster: ClusterView) -> str | None:
    if request.cluster and request.cluster != cluster.name:
        return f"not the requested cluster {request.cluster}"
    return None


def ready(request: PlacementRequest, cluster: ClusterView) -> str | None:
    if not cluster.ready:
        return f"cluster is {cluster.state}" + (f": {cluster.message}" if cluster.message else "")
    return None


def labels(request: PlacementRequest, cluster: ClusterView) -> str | None:
    missing = [f"{k}={v}" for k, v in sorted(request.selector.items()) if cluster.labels.get(k) != v]
    return f"lacks labels {', '.join(missing)}" if missing else None


def capabilities(request: PlacementRequest, cluster: ClusterView) -> str | None:
    lacking = sorted(request.needs - cluster.capabilities)
    if request.total.gpu and cluster.total.gpu == 0:
        lacking = sorted(set(lacking) | {"gpu"})
    return f"{cluster.kind} cluster cannot provide {', '.join(lacking)}" if lacking else None


def capacity(request: PlacementRequest, cluster: ClusterView) -> str | None:
    """The whole gang must fit at once: every replica, or none."""
    need, free, total = request.total, cluster.free, cluster.total
    if not need.fits_in(total):
        return (
            f"needs cpu={_cpu(need.cpu)}, memory={_gib(need.memory)}, gpu={need.gpu} for all "
            f"{request.replicas} replicas; the cluster has cpu={_cpu(total.cpu)}, "
            f"memory={_gib(total.memory)}, gpu={total.gpu} in all"
        )
    if not need.fits_in(free):
        return (
            f"needs cpu={_cpu(need.cpu)}, memory={_gib(need.memory)}, gpu={need.gpu} for all "
            f"{request.replicas} replicas; free now: cpu={_cpu(free.cpu)}, memory={_gib(free.memory)}, "
            f"gpu={free.gpu}"
        )
    return None


def weight_score(request: PlacementRequest, cluster: ClusterView) -> float:
    return cluster.weight / (1.0 + cluster.weight)


def free_share_score(request: PlacementRequest, cluster: ClusterView) -> float:
    """The share of the cluster's CPU still free after placing: spreads work out."""
    if cluster.total.cpu <= 0:
        return 0.0
    return max(0.0, (cluster.free.cpu - request.total.cpu) / cluster.total.cpu)


def preference_rank(request: PlacementRequest, cluster: str) -> int:
    """A cluster's place in the spec's ``preferredClusters`` (0 is first); unlisted ones come after all."""
    return request.preferred.index(cluster) if cluster in request.preferred else len(request.preferred)


class PlacementEngine:
    """Runs filters then weighted scorers over a set of clusters."""

    def __init__(self, filters: Sequence[Filter], scorers: Sequence[tuple[Scorer, float]]) -> None:
        self.filters = list(filters)
        self.scorers = list(scorers)

    def place(self, request: PlacementRequest, clusters: Sequence[ClusterView]) -> Decision:
        """Choose the best eligible cluster; every cluster gets a verdict."""
        verdicts = []
        for cluster in clusters:
            reasons = [reason for check in self.filters if (reason := check(request, cluster))]
            verdict = Verdict(cluster.name, not reasons, reasons)
            if verdict.eligible:
                verdict.score = round(sum(w * score(request, cluster) for score, w in self.scorers), 6)
            verdicts.append(verdict)
        # The user's preference order outranks every score; scores order the rest; names break ties.
        verdicts.sort(
            key=lambda v: (not v.eligible, preference_rank(request, v.cluster), -v.score, v.cluster)
        )
        chosen = verdicts[0].cluster if verdicts and verdicts[0].eligible else None
        return Decision(chosen, verdicts)


def default_engine() -> PlacementEngine:
    """The built-in pipeline: explicit cluster, readiness, labels, capabilities, gang capacity;
    then the spec's preference order, then weight and free share."""
    return PlacementEngine(
        filters=[explicit_cluster, ready, labels, capabilities, capacity],
        scorers=[(weight_score, 2.0), (free_share_score, 1.0)],
    )
