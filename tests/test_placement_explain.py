"""The placement engine with a policy: permission, policy weights, spread, the per-filter
explanation, and work that no cluster could ever take."""

from __future__ import annotations

import json
import math
from pathlib import Path

from policies.authorizer import Authorizer
from policies.lines import parse_csv, parse_lines
from policies.placement import ClusterView, Decision, PlacementRequest, Verdict, default_engine
from runtimes.plan import Resources
from tests.test_placement import GI, cluster, request

DEFAULT = parse_csv(
    (Path(__file__).resolve().parent.parent / "broker" / "defaults" / "policy.csv").read_text()
)
FILTERS = [
    "explicit_cluster",
    "permission",
    "ready",
    "labels",
    "capabilities",
    "environment",
    "fits_total",
    "fits_free",
    "not_refused",
]


def policy(*texts: str, revision: int = 4) -> Authorizer:
    return Authorizer(DEFAULT + parse_lines(["g, bob, member, vision", *texts]), revision)


def place(
    req: PlacementRequest, clusters: list[ClusterView], authorizer: Authorizer | None = None
) -> Decision:
    return default_engine().place(req, clusters, authorizer)


def verdict(decision: Decision, name: str) -> Verdict:
    return next(v for v in decision.verdicts if v.cluster == name)


def req(**kwargs: object) -> PlacementRequest:
    """A one-replica experiment for bob in vision (unless told otherwise)."""
    base = request(**{k: v for k, v in kwargs.items() if k in {"replicas", "cpu", "memory", "gpu"}})  # type: ignore[arg-type]
    rest = {k: v for k, v in kwargs.items() if k not in {"replicas", "cpu", "memory", "gpu"}}
    fields = {**base.__dict__, "user": "bob", "namespace": "vision", **rest}
    return PlacementRequest(**fields)  # type: ignore[arg-type]


def test_every_filter_is_reported_for_every_cluster() -> None:
    decision = place(req(cpu=4), [cluster("a", cpu=2), cluster("b", cpu=16)], policy())
    for v in decision.verdicts:
        assert [f["name"] for f in v.filters] == FILTERS
        assert all(set(f) == {"name", "passed", "reason"} for f in v.filters)
        assert [f["reason"] for f in v.filters if not f["passed"]] == v.reasons
    failing = [f["name"] for f in verdict(decision, "a").filters if not f["passed"]]
    assert failing == ["fits_total"]  # fits_free does not repeat what fits_total said
    assert all(f["passed"] and f["reason"] is None for f in verdict(decision, "b").filters)


def test_permission_denied_by_a_line_names_it() -> None:
    authorizer = policy("p, bob, vision, cluster/gpu-*, place, deny")
    decision = place(req(), [cluster("gpu-east", gpu=2), cluster("cpu-1")], authorizer)
    assert decision.chosen == "cpu-1"
    assert verdict(decision, "gpu-east").reasons == [
        "denied by policy line `p, bob, vision, cluster/gpu-*, place, deny`: "
        "bob place experiment work for vision on gpu-east is not allowed"
    ]


def test_permission_without_any_allowing_line() -> None:
    lines = [line for line in DEFAULT if line.csv() != "p, *, *, cluster/*, place, allow"]
    authorizer = Authorizer([*lines, *parse_lines(["p, bob, vision, cluster/cpu-*, place, allow"])], 9)
    decision = place(req(), [cluster("gpu-east"), cluster("cpu-1")], authorizer)
    assert decision.chosen == "cpu-1"
    assert verdict(decision, "gpu-east").reasons == [
        "no policy line lets bob place experiment work for vision on gpu-east"
    ]
    assert not decision.never_fits


def test_notebook_permission_is_separate_from_experiments() -> None:
    authorizer = policy("p, *, vision, cluster/a/notebook, place, deny")
    assert place(req(), [cluster("a")], authorizer).chosen == "a"
    assert place(req(workload_kind="notebook"), [cluster("a")], authorizer).chosen is None


def test_without_an_authorizer_everything_is_permitted() -> None:
    decision = place(req(), [cluster("a")])
    assert decision.chosen == "a" and decision.revision is None


def test_policy_weight_overrides_the_configured_weight() -> None:
    clusters = [cluster("a", weight=5), cluster("b", weight=1)]
    assert place(req(), clusters, policy()).chosen == "a"
    decision = place(req(), clusters, policy("p2, vision, cluster/b, 20", "p2, vision, cluster/a, 0"))
    assert decision.chosen == "b"
    assert verdict(decision, "b").scores["policy_weight"] == round(2 * 20 / 21, 6)
    assert verdict(decision, "a").scores["policy_weight"] == 0.0
    # Another namespace keeps the configured weights.
    assert (
        place(req(namespace="nlp", user="admin"), clusters, policy("p2, vision, cluster/b, 20")).chosen == "a"
    )


def test_spread_prefers_fewer_running_workloads() -> None:
    busy = ClusterView(**{**cluster("a").__dict__, "running": 9})
    idle = ClusterView(**{**cluster("b").__dict__, "running": 0})
    decision = place(req(), [busy, idle])
    assert decision.chosen == "b"
    assert verdict(decision, "b").scores["spread"] > verdict(decision, "a").scores["spread"]


def test_score_is_the_sum_of_the_scores() -> None:
    decision = place(req(), [cluster("a", free_cpu=6, weight=3)], policy())
    (v,) = decision.verdicts
    assert set(v.scores) == {"policy_weight", "free_share", "spread", "warm-environment"}
    assert v.scores["warm-environment"] == 0  # the work installs nothing
    assert v.scores["free_share"] == round((6 - 1) / 8, 6)
    assert abs(v.score - sum(v.scores.values())) < 1e-5


def test_decision_records_the_policy_revision() -> None:
    decision = place(req(), [cluster("a")], policy(revision=42))
    assert decision.revision == 42
    assert decision.to_json()["revision"] == 42


# -- work no cluster could ever take -------------------------------------------------------------


def test_more_gpus_than_any_cluster_has_never_fits() -> None:
    decision = place(req(gpu=4), [cluster("gpu-a", gpu=2), cluster("gpu-b", gpu=1), cluster("cpu")], policy())
    assert decision.never_fits and decision.chosen is None
    assert decision.rejection is not None
    assert decision.rejection.startswith(
        "needs gpu=4 for all 1 replicas but no cluster has more than gpu=2 in all; "
    )
    assert "cpu: local cluster cannot provide gpu" in decision.rejection
    assert "gpu-a" not in decision.rejection  # its only static failure is the shared headline


def test_no_permission_anywhere_never_fits() -> None:
    lines = [line for line in DEFAULT if line.csv() != "p, *, *, cluster/*, place, allow"]
    decision = place(req(), [cluster("a"), cluster("b")], Authorizer(lines, 2))
    assert decision.never_fits
    assert decision.rejection == "no policy line lets bob place experiment work for vision on any cluster"


def test_rejection_lists_each_clusters_static_reasons() -> None:
    authorizer = policy("p, bob, vision, cluster/gpu-east/*, place, deny")
    decision = place(
        req(selector={"site": "eu"}),
        [cluster("gpu-east", labels={"site": "eu"}), cluster("cpu-west", labels={"site": "us"})],
        authorizer,
    )
    assert decision.never_fits
    assert decision.rejection == (
        "gpu-east: denied by policy line `p, bob, vision, cluster/gpu-east/*, place, deny`: bob place "
        "experiment work for vision on gpu-east is not allowed | cpu-west: lacks labels site=eu"
    )


def test_waiting_for_dynamic_reasons_is_not_never_fits() -> None:
    decision = place(
        req(cpu=4), [cluster("down", ready=False, state="Unreachable"), cluster("busy", free_cpu=1)], policy()
    )
    assert decision.chosen is None
    assert not decision.never_fits and decision.rejection is None


def test_one_cluster_that_could_take_it_later_is_enough() -> None:
    decision = place(req(cpu=4), [cluster("small", cpu=2), cluster("busy", cpu=8, free_cpu=1)], policy())
    assert not decision.never_fits


def test_no_clusters_never_fits() -> None:
    decision = place(req(), [], policy())
    assert decision.never_fits and decision.rejection == "no clusters are registered"


def test_explicit_cluster_rejection_speaks_of_that_cluster_only() -> None:
    clusters = [cluster("a", labels={"site": "us"}), cluster("b")]
    missing = place(req(cluster="zz"), clusters, policy())
    assert missing.never_fits and missing.rejection == "the requested cluster zz is not registered"
    mislabelled = place(req(cluster="a", selector={"site": "eu"}), clusters, policy())
    assert mislabelled.never_fits and mislabelled.rejection == "a: lacks labels site=eu"


def test_a_cluster_that_has_not_reported_capacity_is_not_ruled_out_for_good() -> None:
    unknown = ClusterView(
        name="new",
        kind="local",
        labels={},
        weight=1.0,
        ready=False,
        state="Unknown",
        capabilities=frozenset(),
        total=Resources(cpu=0, memory=0, gpu=0),
        free=Resources(cpu=0, memory=0, gpu=0),
    )
    decision = place(req(gpu=1, memory=GI), [unknown], policy())
    assert not decision.never_fits
    assert verdict(decision, "new").reasons == [
        "cluster is Unknown",
        "the cluster has not reported its capacity yet",
    ]


def test_never_fits_json() -> None:
    data = place(req(gpu=4), [cluster("a", gpu=2)], policy(revision=3)).to_json()
    assert data["neverFits"] is True and data["revision"] == 3
    assert isinstance(data["rejection"], str) and "no cluster has more than gpu=2" in data["rejection"]
    assert json.loads(json.dumps(data)) == data


def test_a_huge_stored_weight_scores_as_the_largest_and_never_nan() -> None:
    """A weight stored before weights were bounded (parse_lines refuses it now) still scores."""
    from policies.lines import PolicyLine

    huge = Authorizer(DEFAULT + [PolicyLine("p2", ("*", "cluster/a", "9" * 400))], 4)
    decision = place(req(), [cluster("a"), cluster("b")], huge)
    scores = [v.scores for v in decision.verdicts]
    assert all(math.isfinite(s) for score in scores for s in score.values()), scores
    json.loads(json.dumps(decision.to_json(), allow_nan=False))
    assert decision.chosen == "a"
