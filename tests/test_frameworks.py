"""Launch plans per framework: the environment each replica gets, ports, order and success roles."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from runtimes.frameworks import build_plan, success_roles
from runtimes.plan import DEFAULT_CPU, DEFAULT_MEMORY, LaunchPlan, Resources, StaticAddressing
from runtimes.spec import ExperimentSpec

WORKLOAD = "experiment-1700000000000-0001"


def host(role: str, index: int) -> str:
    return f"{role.lower()}-{index}.svc"


def addressing(start: int = 30000) -> StaticAddressing:
    counter = itertools.count(start)
    return StaticAddressing(host, lambda: next(counter))


def make_spec(framework: str, roles: dict[str, dict[str, Any]], **meta: Any) -> ExperimentSpec:
    body = {"name": "job", "framework": framework, "cmd": "python train.py", **meta}
    return ExperimentSpec.model_validate({"meta": body, "spec": roles})


def plan_for(spec: ExperimentSpec, **kwargs: Any) -> LaunchPlan:
    return build_plan(
        spec, workload_id=WORKLOAD, uid="uid-1", namespace="default", addressing=addressing(), **kwargs
    )


def by_name(plan: LaunchPlan) -> dict[str, Any]:
    return {r.name: r for r in plan.replicas}


def tf_config(plan: LaunchPlan, name: str) -> dict[str, Any]:
    return json.loads(by_name(plan)[name].env["TF_CONFIG"])


# TensorFlow


@pytest.fixture
def tf_plan() -> LaunchPlan:
    spec = make_spec(
        "tensorflow", {"Ps": {"replicas": 2}, "Worker": {"replicas": 3}, "Chief": {}, "Evaluator": {}}
    )
    return plan_for(spec)


def test_tensorflow_cluster_spec_lists_every_training_replica(tf_plan: LaunchPlan) -> None:
    replicas = by_name(tf_plan)
    cluster = tf_config(tf_plan, "chief-0")["cluster"]
    assert set(cluster) == {"chief", "worker", "ps"}
    for role, count in (("chief", 1), ("worker", 3), ("ps", 2)):
        expected = [f"{role}-{i}.svc:{replicas[f'{role}-{i}'].port}" for i in range(count)]
        assert cluster[role] == expected


def test_tensorflow_cluster_spec_is_the_same_for_every_replica(tf_plan: LaunchPlan) -> None:
    clusters = {json.dumps(tf_config(tf_plan, r.name)["cluster"], sort_keys=True) for r in tf_plan.replicas}
    assert len(clusters) == 1


def test_tensorflow_ports_are_unique_and_match_the_replica(tf_plan: LaunchPlan) -> None:
    ports = [r.port for r in tf_plan.replicas]
    assert all(isinstance(p, int) for p in ports)
    assert len(set(ports)) == len(ports)
    cluster = tf_config(tf_plan, "worker-0")["cluster"]
    for replica in tf_plan.replicas:
        if replica.role == "Evaluator":
            continue
        assert cluster[replica.role.lower()][replica.index] == f"{replica.host}:{replica.port}"


@pytest.mark.parametrize(
    ("name", "task_type", "index"),
    [("chief-0", "chief", 0), ("worker-2", "worker", 2), ("ps-1", "ps", 1), ("evaluator-0", "evaluator", 0)],
)
def test_tensorflow_task_per_replica(tf_plan: LaunchPlan, name: str, task_type: str, index: int) -> None:
    config = tf_config(tf_plan, name)
    assert config["task"] == {"type": task_type, "index": index}
    assert config["environment"] == "cloud"


def test_tensorflow_evaluator_is_not_in_the_cluster_spec(tf_plan: LaunchPlan) -> None:
    cluster = tf_config(tf_plan, "evaluator-0")["cluster"]
    assert "evaluator" not in cluster
    assert not any("evaluator" in address for addresses in cluster.values() for address in addresses)


def test_tensorflow_replica_order_and_success(tf_plan: LaunchPlan) -> None:
    assert [r.name for r in tf_plan.replicas] == [
        "chief-0",
        "worker-0",
        "worker-1",
        "worker-2",
        "ps-0",
        "ps-1",
        "evaluator-0",
    ]
    assert tf_plan.primary.name == "chief-0"
    assert tf_plan.success_roles == ["Chief"]


def test_tensorflow_without_chief_succeeds_on_workers() -> None:
    plan = plan_for(make_spec("tensorflow", {"Ps": {}, "Worker": {"replicas": 2}}))
    assert plan.success_roles == ["Worker"]
    assert "chief" not in tf_config(plan, "ps-0")["cluster"]


# PyTorch


def test_pytorch_master_and_workers() -> None:
    plan = plan_for(make_spec("pytorch", {"Worker": {"replicas": 2}, "Master": {}}))
    replicas = by_name(plan)
    assert [r.name for r in plan.replicas] == ["master-0", "worker-0", "worker-1"]
    master = replicas["master-0"]
    for replica in plan.replicas:
        assert replica.env["MASTER_ADDR"] == "master-0.svc"
        assert replica.env["MASTER_PORT"] == str(master.port)
        assert replica.env["WORLD_SIZE"] == "3"
    assert [replicas[n].env["RANK"] for n in ("master-0", "worker-0", "worker-1")] == ["0", "1", "2"]


def test_pytorch_workers_only_worker_zero_is_rank_zero() -> None:
    plan = plan_for(make_spec("pytorch", {"Worker": {"replicas": 3}}))
    replicas = by_name(plan)
    assert [replicas[f"worker-{i}"].env["RANK"] for i in range(3)] == ["0", "1", "2"]
    assert {r.env["MASTER_ADDR"] for r in plan.replicas} == {"worker-0.svc"}
    assert {r.env["MASTER_PORT"] for r in plan.replicas} == {str(replicas["worker-0"].port)}


# XGBoost


def test_xgboost_tracker_and_worker_variables() -> None:
    plan = plan_for(make_spec("xgboost", {"Master": {}, "Worker": {"replicas": 2}}))
    replicas = by_name(plan)
    master_port = str(replicas["master-0"].port)
    for replica in plan.replicas:
        env = replica.env
        assert env["DMLC_TRACKER_URI"] == "master-0.svc"
        assert env["DMLC_TRACKER_PORT"] == master_port
        assert env["DMLC_NUM_WORKER"] == "3"
        assert env["DMLC_TASK_ID"] == env["RANK"]
        assert env["WORKER_ADDRS"] == "worker-0.svc,worker-1.svc"
        assert env["WORKER_PORT"] == str(replicas["worker-0"].port)
        assert env["MASTER_ADDR"] == "master-0.svc"
    assert [replicas[n].env["DMLC_TASK_ID"] for n in ("master-0", "worker-0", "worker-1")] == ["0", "1", "2"]


# python


def test_python_replicas_get_no_ports_and_no_cluster_variables() -> None:
    plan = plan_for(make_spec("python", {"Worker": {"replicas": 2}}))
    for replica in plan.replicas:
        assert replica.port is None
        assert not {"TF_CONFIG", "MASTER_ADDR", "RANK", "WORLD_SIZE"} & set(replica.env)
        assert replica.argv == ["python", "train.py"]


# Every framework


@pytest.mark.parametrize("framework", ["tensorflow", "pytorch", "xgboost", "python"])
def test_every_replica_gets_job_id_role_and_index(framework: str) -> None:
    plan = plan_for(
        make_spec(
            framework, {"Master" if framework != "tensorflow" else "Chief": {}, "Worker": {"replicas": 2}}
        )
    )
    assert plan.workload_id == WORKLOAD
    assert plan.uid == "uid-1"
    assert plan.framework == framework
    for replica in plan.replicas:
        assert replica.env["JOB_ID"] == WORKLOAD
        assert replica.env["SUBMARINE_ROLE"] == replica.role
        assert replica.env["SUBMARINE_REPLICA_INDEX"] == str(replica.index)
        assert replica.host == host(replica.role, replica.index)


def test_task_env_vars_replace_meta_env_vars_and_extra_env_stays_under() -> None:
    spec = make_spec(
        "pytorch",
        {"Master": {}, "Worker": {"replicas": 1, "envVars": {"ONLY_TASK": "t", "SHARED": "task"}}},
        envVars={"ONLY_META": "m", "SHARED": "meta", "BROKER_URL": "from-user"},
    )
    plan = plan_for(spec, extra_env={"BROKER_URL": "http://broker", "EXTRA": "x"})
    master, worker = by_name(plan)["master-0"].env, by_name(plan)["worker-0"].env
    # The Master has no envVars of its own: meta's apply, and override extra_env.
    assert (master["ONLY_META"], master["SHARED"], master["BROKER_URL"]) == ("m", "meta", "from-user")
    assert "ONLY_TASK" not in master
    # The Worker's envVars replace meta's entirely (no merge); extra_env still applies under them.
    assert (worker["ONLY_TASK"], worker["SHARED"]) == ("t", "task")
    assert "ONLY_META" not in worker
    assert worker["BROKER_URL"] == "http://broker"
    assert worker["EXTRA"] == master["EXTRA"] == "x"


def test_empty_task_env_vars_still_replace_meta() -> None:
    spec = make_spec("python", {"Worker": {"envVars": {}}}, envVars={"ONLY_META": "m"})
    assert "ONLY_META" not in plan_for(spec).replicas[0].env


def test_user_cannot_override_job_id() -> None:
    spec = make_spec("python", {"Worker": {}}, envVars={"JOB_ID": "mine"})
    assert plan_for(spec).replicas[0].env["JOB_ID"] == WORKLOAD


def test_task_cmd_overrides_meta_cmd_per_role() -> None:
    spec = make_spec("pytorch", {"Master": {"cmd": 'python -c "print(1)"'}, "Worker": {}})
    replicas = by_name(plan_for(spec))
    assert replicas["master-0"].argv == ["python", "-c", "print(1)"]
    assert replicas["worker-0"].argv == ["python", "train.py"]


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ({"Chief": {}, "Worker": {}, "Ps": {}}, ["Chief"]),
        ({"Master": {}, "Worker": {}, "Ps": {}}, ["Master"]),
        ({"Worker": {}, "Ps": {}, "Evaluator": {}}, ["Worker"]),
        ({"Chief": {}, "Master": {}, "Worker": {}}, ["Chief"]),
    ],
)
def test_tensorflow_success_roles(roles: dict[str, dict[str, Any]], expected: list[str]) -> None:
    spec = make_spec("tensorflow", roles)
    assert success_roles(spec) == expected
    assert plan_for(spec).success_roles == expected


@pytest.mark.parametrize("framework", ["pytorch", "xgboost", "python"])
def test_other_frameworks_wait_for_every_role(framework: str) -> None:
    # Outside TensorFlow no role is cut off early: Master and Workers must all exit 0.
    assert success_roles(make_spec(framework, {"Worker": {"replicas": 2}, "Master": {}})) == [
        "Master",
        "Worker",
    ]
    assert success_roles(make_spec(framework, {"Worker": {"replicas": 2}})) == ["Worker"]


def test_resources_parsed_per_replica_and_summed() -> None:
    spec = make_spec(
        "pytorch",
        {
            "Master": {"resources": "cpu=2,memory=1Gi"},
            "Worker": {"replicas": 2, "resources": "cpu=500m,memory=512Mi,nvidia.com/gpu=1"},
        },
    )
    plan = plan_for(spec)
    replicas = by_name(plan)
    assert replicas["master-0"].resources == Resources(cpu=2, memory=2**30, gpu=0)
    assert replicas["worker-1"].resources == Resources(cpu=0.5, memory=512 * 2**20, gpu=1)
    total = plan.total_resources
    assert total.cpu == pytest.approx(3.0)
    assert total.memory == 2 * 2**30
    assert total.gpu == 2


def test_replica_without_resources_gets_defaults() -> None:
    plan = plan_for(make_spec("python", {"Worker": {"replicas": 3}}))
    assert plan.replicas[0].resources == Resources(cpu=DEFAULT_CPU, memory=DEFAULT_MEMORY, gpu=0)
    assert plan.total_resources == Resources(cpu=3 * DEFAULT_CPU, memory=3 * DEFAULT_MEMORY, gpu=0)


def test_replica_names_and_lookup() -> None:
    plan = plan_for(make_spec("pytorch", {"Master": {}, "Worker": {"replicas": 2}}))
    worker = plan.replica("worker-1")
    assert worker is not None
    assert (worker.role, worker.index, worker.name) == ("Worker", 1, "worker-1")
    assert plan.replica("worker-2") is None


def test_plan_carries_name_namespace_and_image() -> None:
    document = {
        "meta": {"name": "My-Job", "framework": "python", "cmd": "python x.py"},
        "environment": {"image": "repo/img:1"},
        "spec": {"Worker": {}},
    }
    plan = build_plan(
        ExperimentSpec.model_validate(document),
        workload_id=WORKLOAD,
        uid="u",
        namespace="team-a",
        addressing=addressing(),
    )
    assert (plan.name, plan.namespace, plan.image) == ("my-job", "team-a", "repo/img:1")


def test_kernel_spec_packages_reach_the_plan() -> None:
    from runtimes.frameworks import build_plan
    from runtimes.plan import StaticAddressing
    from runtimes.spec import ExperimentSpec

    spec = ExperimentSpec.model_validate(
        {
            "meta": {"name": "k", "framework": "python", "cmd": "python -c 1"},
            "environment": {
                "kernelSpec": {"pipDependencies": ["numpy==2.1"], "condaDependencies": ["scipy"]}
            },
            "spec": {"Worker": {"replicas": 1}},
        }
    )
    plan = build_plan(
        spec,
        workload_id="e",
        uid="u",
        namespace="n",
        addressing=StaticAddressing(lambda r, i: "h", lambda: 1),
    )
    assert plan.pip_packages == ["numpy==2.1"] and plan.conda_packages == ["scipy"]
