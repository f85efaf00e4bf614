"""Late binding: the placeholder scheme, environments rendered at launch, and who decides a run."""

from __future__ import annotations

import json

import pytest

from clusters.base import Phase, ReplicaStatus, summarise
from clusters.slurm.script import tasks_document
from runtimes.frameworks import build_plan
from runtimes.plan import LaunchPlan, StaticAddressing, decider_names
from runtimes.ray_launcher import verdict
from runtimes.rendezvous import (
    PlaceholderAddressing,
    placeholder_endpoints,
    render_env,
    substitute,
)
from runtimes.spec import ExperimentSpec

ROLES = {
    "tensorflow": {"Chief": 1, "Ps": 2, "Worker": 2, "Evaluator": 1},
    "pytorch": {"Master": 1, "Worker": 3},
    "xgboost": {"Master": 1, "Worker": 2},
    "python": {"Worker": 2},
}


def plan_for(framework: str, addressing: object | None = None) -> LaunchPlan:
    spec = ExperimentSpec.model_validate(
        {
            "meta": {"name": "t", "framework": framework, "cmd": "python train.py", "envVars": {"A": "1"}},
            "spec": {role: {"replicas": n} for role, n in ROLES[framework].items()},
        }
    )
    return build_plan(
        spec,
        workload_id="experiment-1",
        uid="u1",
        namespace="default",
        addressing=addressing or PlaceholderAddressing(),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("framework", sorted(ROLES))
def test_placeholders_filled_in_later_give_what_the_endpoints_give_at_once(framework: str) -> None:
    """Slurm renders over placeholders and its tasks substitute; Ray renders over the endpoints:
    both give every replica the same environment."""
    plan = plan_for(framework)
    names = [r.name for r in plan.replicas]
    endpoints = {name: (f"10.0.0.{i + 1}", 20000 + i) for i, name in enumerate(names)}
    at_once = render_env(plan, endpoints)
    later = render_env(plan, placeholder_endpoints(names))
    for name in names:
        filled = {key: substitute(value, endpoints) for key, value in later[name].items()}
        assert filled == at_once[name]
        assert not any("{{" in value for value in filled.values())
        assert (filled["SUBMARINE_REPLICA_HOST"], filled["SUBMARINE_REPLICA_PORT"]) == (
            endpoints[name][0],
            str(endpoints[name][1]),
        )


@pytest.mark.parametrize("framework", sorted(ROLES))
def test_rendering_at_launch_gives_what_a_plan_built_with_those_addresses_has(framework: str) -> None:
    """The builders read role names and endpoints only: re-run at launch they give exactly what
    build_plan gives when the addresses are known beforehand."""
    ports = iter(range(30000, 31000))
    known = plan_for(framework, StaticAddressing(lambda role, index: f"host-{role}-{index}", ports.__next__))
    endpoints = {r.name: (r.host, r.port if r.port is not None else 0) for r in known.replicas}
    rendered = render_env(plan_for(framework), endpoints)
    for replica in known.replicas:
        env = dict(rendered[replica.name])
        assert env.pop("SUBMARINE_REPLICA_HOST") == endpoints[replica.name][0]
        assert env.pop("SUBMARINE_REPLICA_PORT") == str(endpoints[replica.name][1])
        assert env == replica.env


def test_substitute_leaves_other_braces_alone() -> None:
    endpoints = {"worker-0": ("n1", 7)}
    assert substitute("{{host:worker-0}}:{{port:worker-0}}", endpoints) == "n1:7"
    assert substitute("{{host:worker-9}} {x}", endpoints) == "{{host:worker-9}} {x}"
    assert substitute("plain", endpoints) == "plain"


def test_one_rule_decides_the_run_everywhere() -> None:
    """TensorFlow's chief decides alone; elsewhere every replica does: the plan, the adapters'
    summary, the Ray launcher's verdict and the Slurm tasks agree."""
    tf = plan_for("tensorflow")
    assert tf.deciders() == ["chief-0"]
    torch = plan_for("pytorch")
    assert torch.deciders() == [r.name for r in torch.replicas]
    assert decider_names(["worker-0", "ps-0"], ["Chief"]) == ["worker-0", "ps-0"]  # none of those roles

    document = tasks_document(tf, 60)
    assert {r["name"] for r in document["replicas"] if r["decides"]} == set(tf.deciders())

    chief_done = {r.name: (0 if r.name == "chief-0" else None) for r in tf.replicas}
    assert verdict(tf, chief_done)[0] == "succeeded"
    statuses = [
        ReplicaStatus(r.name, Phase.SUCCEEDED if r.name == "chief-0" else Phase.RUNNING, 0)
        for r in tf.replicas
    ]
    assert summarise("u1", tf.success_roles, statuses).phase is Phase.SUCCEEDED

    master_done = {r.name: (0 if r.name == "master-0" else None) for r in torch.replicas}
    assert verdict(torch, master_done)[0] == "running"
    statuses = [
        ReplicaStatus(r.name, Phase.SUCCEEDED if r.name == "master-0" else Phase.RUNNING, 0)
        for r in torch.replicas
    ]
    assert summarise("u1", torch.success_roles, statuses).phase is Phase.RUNNING
    everyone = [ReplicaStatus(r.name, Phase.SUCCEEDED, 0) for r in torch.replicas]
    assert summarise("u1", torch.success_roles, everyone).phase is Phase.SUCCEEDED
    # Handles found by the orphan sweep carry no success roles: every replica decides.
    assert summarise("u1", [], everyone).phase is Phase.SUCCEEDED


def test_tf_config_is_rebuilt_from_the_endpoints() -> None:
    plan = plan_for("tensorflow")
    names = [r.name for r in plan.replicas]
    endpoints = {name: (f"n{i}", 2222) for i, name in enumerate(names)}
    tf = json.loads(render_env(plan, endpoints)["worker-1"]["TF_CONFIG"])
    assert tf["task"] == {"type": "worker", "index": 1}
    assert tf["cluster"]["ps"] == [f"{endpoints['ps-0'][0]}:2222", f"{endpoints['ps-1'][0]}:2222"]
    assert "evaluator" not in tf["cluster"]
