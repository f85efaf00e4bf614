"""Environments in the pure parts: the plan a spec's environment makes (registered or inline),
build_plan setting LaunchPlan.environment, and the placement engine's environment filter and
warm-environment score with its configurable weight."""

from __future__ import annotations

from policies.placement import default_engine
from runtimes.environment import EnvironmentPlan
from runtimes.environment_spec import INLINE, inline_plan, plan_of
from runtimes.frameworks import build_plan
from runtimes.plan import LaunchPlan, StaticAddressing
from runtimes.spec import EnvironmentRef, ExperimentSpec
from tests.test_placement import cluster, request

KERNEL = {
    "name": "py3",
    "channels": ["defaults"],
    "condaDependencies": ["python=3.11"],
    "pipDependencies": ["NumPy"],
}


def spec(environment: dict[str, object]) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "meta": {"name": "m", "framework": "python", "cmd": "python x.py"},
            "environment": environment,
            "spec": {"Worker": {"replicas": 1, "resources": "cpu=1,memory=1Gi"}},
        }
    )


def plan_for(exp: ExperimentSpec, environment: EnvironmentPlan | None = None) -> LaunchPlan:
    addressing = StaticAddressing(lambda role, index: "h", lambda: 1)
    return build_plan(
        exp, workload_id="w", uid="u", namespace="n", addressing=addressing, environment=environment
    )


def test_the_plan_of_a_spec_names_its_python_and_normalises() -> None:
    plan = plan_of("torch", {"dockerImage": "img", "kernelSpec": KERNEL}, 3)
    assert (plan.name, plan.revision, plan.image, plan.python) == ("torch", 3, "img", "3.11")
    assert plan.pip == ["numpy"] and plan.conda == ["python=3.11"]
    same = plan_of("other", {"dockerImage": "img", "kernelSpec": {**KERNEL, "pipDependencies": ["numpy "]}})
    assert same.hash == plan.hash  # two names, the same content: one build


def test_inline_and_registered_environments_on_the_launch_plan() -> None:
    inline = plan_for(spec({"image": "python:3.12", "kernelSpec": KERNEL}))
    assert inline.environment is not None and inline.environment.name == INLINE
    assert inline.pip_packages == ["NumPy"] and inline.conda_packages == ["python=3.11"]
    assert inline.image == "python:3.12"
    assert plan_for(spec({})).environment is None
    assert inline_plan(EnvironmentRef(name="torch")) is None

    pinned = plan_of("torch", {"dockerImage": "img", "kernelSpec": KERNEL}, 2)
    registered = plan_for(spec({"name": "torch"}), environment=pinned)
    assert registered.environment == pinned
    assert (registered.pip_packages, registered.conda_packages, registered.image) == (
        ["numpy"],
        ["python=3.11"],
        "img",
    )


def test_warm_environment_breaks_a_tie_and_its_weight_is_configurable() -> None:
    clusters = [cluster("a"), cluster("b")]
    warm_b = request(environment="h1", warm=frozenset({"b"}))
    decision = default_engine().place(warm_b, clusters)
    assert decision.chosen == "b"
    scores = {v.cluster: v.scores["warm-environment"] for v in decision.verdicts}
    assert scores == {"a": 0.0, "b": 1.0}
    assert (
        default_engine(warm_weight=2.5).place(warm_b, clusters).verdicts[0].scores["warm-environment"] == 2.5
    )
    assert default_engine(warm_weight=0).place(warm_b, clusters).chosen == "a"
    # Without an environment nobody is warm.
    assert default_engine().place(request(warm=frozenset({"b"})), clusters).chosen == "a"


def test_an_environment_refusal_is_static_and_named_in_the_rejection() -> None:
    refusing = [
        cluster("a").__class__(**{**cluster("a").__dict__, "environment_refusal": "no conda here"}),
        cluster("b").__class__(
            **{**cluster("b").__dict__, "environment_refusal": "pip installs are disabled"}
        ),
    ]
    decision = default_engine().place(request(environment="h1"), refusing)
    assert decision.chosen is None and decision.never_fits
    assert decision.rejection is not None
    assert "a: no conda here" in decision.rejection and "b: pip installs are disabled" in decision.rejection
    # The refusal is about an environment: work that installs nothing is not refused.
    assert default_engine().place(request(), refusing).chosen == "a"
