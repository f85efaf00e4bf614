"""The placement engine: which cluster a workload goes to, and why the others were left out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from policies.placement import ClusterView, Decision, PlacementRequest, Verdict, default_engine
from runtimes.plan import Resources

GI = 2**30


def cluster(
    name: str,
    *,
    cpu: float = 8,
    free_cpu: float | None = None,
    memory: int = 32 * GI,
    free_memory: int | None = None,
    gpu: int = 0,
    free_gpu: int | None = None,
    weight: float = 1.0,
    ready: bool = True,
    state: str = "ready",
    message: str = "",
    labels: dict[str, str] | None = None,
) -> ClusterView:
    return ClusterView(
        name=name,
        kind="local",
        labels=labels or {},
        weight=weight,
        ready=ready,
        state=state,
        capabilities=frozenset(),
        total=Resources(cpu=cpu, memory=memory, gpu=gpu),
        free=Resources(
            cpu=cpu if free_cpu is None else free_cpu,
            memory=memory if free_memory is None else free_memory,
            gpu=gpu if free_gpu is None else free_gpu,
        ),
        message=message,
    )


def request(
    replicas: int = 1, cpu: float = 1, memory: int = GI, gpu: int = 0, **kwargs: Any
) -> PlacementRequest:
    one = Resources(cpu=cpu, memory=memory, gpu=gpu)
    return PlacementRequest(
        workload_kind="experiment",
        namespace="default",
        total=one.scaled(replicas),
        largest_replica=one,
        replicas=replicas,
        **kwargs,
    )


def place(req: PlacementRequest, *clusters: ClusterView) -> Decision:
    return default_engine().place(req, list(clusters))


def verdict(decision: Decision, name: str) -> Verdict:
    return next(v for v in decision.verdicts if v.cluster == name)


def test_chooses_the_only_fitting_cluster() -> None:
    decision = place(request(cpu=4), cluster("small", cpu=2), cluster("big", cpu=16))
    assert decision.chosen == "big"
    assert decision.summary == "placed on big"
    assert verdict(decision, "big").eligible
    assert not verdict(decision, "small").eligible


def test_gang_must_fit_whole_not_one_replica() -> None:
    decision = place(request(replicas=3, cpu=1), cluster("c1", cpu=8, free_cpu=2))
    assert decision.chosen is None
    (reason,) = verdict(decision, "c1").reasons
    assert "needs cpu=3" in reason
    assert "for all 3 replicas" in reason
    assert "free now: cpu=2" in reason
    assert "in all" not in reason


def test_gang_that_fits_free_is_placed() -> None:
    assert place(request(replicas=2, cpu=1), cluster("c1", cpu=8, free_cpu=2)).chosen == "c1"


def test_memory_shortage_is_reported_in_gib() -> None:
    decision = place(request(replicas=2, memory=4 * GI), cluster("c1", memory=16 * GI, free_memory=6 * GI))
    (reason,) = verdict(decision, "c1").reasons
    assert "memory=8.00Gi" in reason
    assert "memory=6.00Gi" in reason


def test_larger_than_the_whole_cluster_says_in_all() -> None:
    decision = place(request(replicas=4, cpu=4), cluster("c1", cpu=8, free_cpu=8))
    (reason,) = verdict(decision, "c1").reasons
    assert "needs cpu=16" in reason
    assert "cpu=8" in reason
    assert reason.endswith("in all")
    assert "free now" not in reason


def test_unready_cluster_excluded_with_its_state() -> None:
    decision = place(
        request(),
        cluster("down", ready=False, state="unreachable", message="connection refused", weight=100),
        cluster("up"),
    )
    assert decision.chosen == "up"
    assert verdict(decision, "down").reasons == ["cluster is unreachable: connection refused"]


def test_unready_cluster_without_message() -> None:
    decision = place(request(), cluster("c1", ready=False, state="draining"))
    assert decision.chosen is None
    assert verdict(decision, "c1").reasons == ["cluster is draining"]


def test_explicit_cluster_only() -> None:
    decision = place(request(cluster="b"), cluster("a", weight=50), cluster("b"), cluster("c", weight=50))
    assert decision.chosen == "b"
    assert verdict(decision, "a").reasons == ["not the requested cluster b"]
    assert verdict(decision, "c").reasons == ["not the requested cluster b"]


def test_explicit_cluster_that_does_not_fit_waits() -> None:
    decision = place(request(cpu=4, cluster="a"), cluster("a", cpu=2), cluster("b", cpu=16))
    assert decision.chosen is None
    assert "needs cpu=4" in verdict(decision, "a").reasons[0]


def test_label_selector() -> None:
    decision = place(
        request(selector={"site": "eu", "tier": "gold"}),
        cluster("us", labels={"site": "us", "tier": "gold"}),
        cluster("eu", labels={"site": "eu", "tier": "gold", "extra": "x"}),
        cluster("bare"),
    )
    assert decision.chosen == "eu"
    assert verdict(decision, "us").reasons == ["lacks labels site=eu"]
    assert verdict(decision, "bare").reasons == ["lacks labels site=eu, tier=gold"]


def test_gpu_request_excludes_gpu_less_cluster() -> None:
    decision = place(request(gpu=1), cluster("cpu-only", cpu=64), cluster("gpu", cpu=8, gpu=2))
    assert decision.chosen == "gpu"
    reasons = verdict(decision, "cpu-only").reasons
    assert "local cluster cannot provide gpu" in reasons


def test_gpu_request_waits_when_gpus_are_busy() -> None:
    decision = place(request(gpu=2), cluster("gpu", gpu=2, free_gpu=1))
    assert decision.chosen is None
    assert "gpu=1" in verdict(decision, "gpu").reasons[0]


def test_missing_capability_named() -> None:
    decision = place(request(needs=frozenset({"notebook"})), cluster("c1"))
    assert verdict(decision, "c1").reasons == ["local cluster cannot provide notebook"]


def test_preferred_order_wins_over_weight() -> None:
    decision = place(
        request(preferred=("b", "a")), cluster("a", weight=100), cluster("b", weight=0.1, free_cpu=1)
    )
    assert decision.chosen == "b"
    assert [v.cluster for v in decision.verdicts] == ["b", "a"]


def test_preferred_cluster_wins_over_unpreferred_one() -> None:
    decision = place(
        request(preferred=("z",)), cluster("a", weight=100), cluster("z", weight=0.1, free_cpu=1)
    )
    assert decision.chosen == "z"


PREFERRED = ("p1", "p2", "p3", "p4", "p5", "p6")


def test_preferred_order_wins_over_weight_with_a_long_list() -> None:
    # The first preferred cluster fits exactly (no free share left) with the default weight;
    # the second is idle with a high weight. The user's order must still decide.
    decision = place(
        request(preferred=PREFERRED), cluster("p1", cpu=1, free_cpu=1), cluster("p2", cpu=100, weight=50)
    )
    assert decision.chosen == "p1"


def test_preferred_cluster_wins_over_unpreferred_one_with_a_long_list() -> None:
    # "p6" is in the preferred list, "other" is not: every listed cluster comes before the rest.
    decision = place(
        request(preferred=PREFERRED), cluster("p6", cpu=1, free_cpu=1), cluster("other", cpu=100, weight=50)
    )
    assert decision.chosen == "p6"


def test_higher_weight_wins_among_equals() -> None:
    decision = place(request(), cluster("a", weight=1), cluster("b", weight=3), cluster("c", weight=2))
    assert decision.chosen == "b"
    assert [v.cluster for v in decision.verdicts] == ["b", "c", "a"]


def test_more_free_capacity_wins_at_equal_weight() -> None:
    decision = place(request(), cluster("busy", free_cpu=2), cluster("idle"))
    assert decision.chosen == "idle"


@pytest.mark.parametrize("order", [("b", "a", "c"), ("c", "b", "a"), ("a", "c", "b")])
def test_ties_broken_by_name(order: tuple[str, ...]) -> None:
    decision = place(request(), *(cluster(name) for name in order))
    assert decision.chosen == "a"
    assert [v.cluster for v in decision.verdicts] == ["a", "b", "c"]


def test_ineligible_clusters_listed_after_eligible_ones() -> None:
    decision = place(request(cpu=4), cluster("a", cpu=2), cluster("b", cpu=16), cluster("c", cpu=2))
    assert [(v.cluster, v.eligible) for v in decision.verdicts] == [("b", True), ("a", False), ("c", False)]
    assert verdict(decision, "a").score == 0.0


def test_summary_when_nothing_fits_names_every_cluster_and_reason() -> None:
    decision = place(
        request(replicas=2, cpu=2, selector={"site": "eu"}),
        cluster("down", ready=False, state="unreachable", labels={"site": "eu"}),
        cluster("us", labels={"site": "us"}),
        cluster("full", free_cpu=1, labels={"site": "eu"}),
    )
    assert decision.chosen is None
    summary = decision.summary
    assert summary.startswith("no cluster fits now (")
    assert "down: cluster is unreachable" in summary
    assert "us: lacks labels site=eu" in summary
    assert "full: needs cpu=4" in summary
    assert "free now: cpu=1" in summary
    assert summary.count(" | ") == 2


def test_summary_joins_several_reasons_of_one_cluster() -> None:
    decision = place(request(selector={"site": "eu"}), cluster("c1", ready=False, state="unreachable"))
    assert decision.summary == "no cluster fits now (c1: cluster is unreachable; lacks labels site=eu)"


def test_summary_with_no_clusters() -> None:
    decision = place(request())
    assert decision.chosen is None
    assert decision.verdicts == []
    assert decision.summary == "no clusters are registered"


def test_to_json_shape() -> None:
    decision = place(request(cpu=4), cluster("a", cpu=2), cluster("b", cpu=16))
    data = decision.to_json()
    assert set(data) == {"chosen", "summary", "revision", "neverFits", "rejection", "verdicts"}
    assert data["chosen"] == "b"
    assert data["summary"] == "placed on b"
    assert data["revision"] is None and data["neverFits"] is False and data["rejection"] is None
    verdicts = data["verdicts"]
    assert isinstance(verdicts, list)
    assert [set(v) for v in verdicts] == [
        {"cluster", "eligible", "reasons", "filters", "scores", "score"}
    ] * 2
    assert verdicts[0]["cluster"] == "b" and verdicts[0]["eligible"] is True and verdicts[0]["reasons"] == []
    assert verdicts[0]["score"] > 0
    assert set(verdicts[0]["scores"]) == {"policy_weight", "free_share", "spread", "warm-environment"}
    assert verdicts[1]["cluster"] == "a" and verdicts[1]["eligible"] is False and verdicts[1]["scores"] == {}
    assert {"name": "fits_total", "passed": False, "reason": verdicts[1]["reasons"][0]} in verdicts[1][
        "filters"
    ]
    assert json.loads(json.dumps(data)) == data


def test_decision_is_reproducible() -> None:
    clusters = [cluster("a", weight=2, free_cpu=3), cluster("b", weight=1), cluster("c", ready=False)]
    first = place(request(), *clusters).to_json()
    assert place(request(), *reversed(clusters)).to_json() == first
