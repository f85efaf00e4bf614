"""The Ray job's launcher without a cluster: plan transport, environments, verdicts, one replica."""

from __future__ import annotations

import json
import sys
import time

from runtimes.frameworks import build_plan
from runtimes.ray_launcher import ReplicaProcess, bundle, decode_plan, encode_plan, verdict
from runtimes.rendezvous import PlaceholderAddressing, render_env
from runtimes.spec import ExperimentSpec


def spec(framework: str, roles: dict[str, int]) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {
            "meta": {"name": "t", "framework": framework, "cmd": "python train.py", "envVars": {"A": "1"}},
            "spec": {role: {"replicas": n, "resources": "cpu=1,memory=512M"} for role, n in roles.items()},
        }
    )


def plan_for(framework: str, roles: dict[str, int]):
    return build_plan(
        spec(framework, roles),
        workload_id="experiment-1",
        uid="u1",
        namespace="default",
        addressing=PlaceholderAddressing(),
    )


def test_plan_round_trips_through_one_shell_word() -> None:
    plan = plan_for("pytorch", {"Master": 1, "Worker": 2})
    word = encode_plan(plan)
    assert word.replace("-", "").replace("_", "").replace("=", "").isalnum()
    assert decode_plan(word) == plan
    assert decode_plan(plan.model_dump_json()) == plan


def test_pytorch_env_uses_the_real_endpoints() -> None:
    plan = plan_for("pytorch", {"Master": 1, "Worker": 2})
    assert plan.replicas[0].host == "{{host:master-0}}"
    assert plan.replicas[0].env["MASTER_ADDR"] == "{{host:master-0}}"
    endpoints = {
        "master-0": ("10.0.0.1", 29500),
        "worker-0": ("10.0.0.2", 4000),
        "worker-1": ("10.0.0.3", 4001),
    }
    envs = render_env(plan, endpoints)
    for name, rank in (("master-0", "0"), ("worker-0", "1"), ("worker-1", "2")):
        env = envs[name]
        assert env["MASTER_ADDR"] == "10.0.0.1" and env["MASTER_PORT"] == "29500"
        assert env["WORLD_SIZE"] == "3" and env["RANK"] == rank
        assert env["A"] == "1" and env["JOB_ID"] == "experiment-1"
        assert (env["SUBMARINE_REPLICA_HOST"], int(env["SUBMARINE_REPLICA_PORT"])) == endpoints[name]
        assert not any("{{host:" in v for v in env.values())


def test_tensorflow_config_uses_the_real_endpoints() -> None:
    plan = plan_for("tensorflow", {"Ps": 1, "Worker": 2})
    endpoints = {"ps-0": ("10.0.0.1", 2222), "worker-0": ("10.0.0.2", 2223), "worker-1": ("10.0.0.3", 2224)}
    envs = render_env(plan, endpoints)
    tf = json.loads(envs["worker-1"]["TF_CONFIG"])
    assert tf["cluster"] == {"ps": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2223", "10.0.0.3:2224"]}
    assert tf["task"] == {"type": "worker", "index": 1}


def test_xgboost_and_python_and_leftover_placeholders() -> None:
    plan = plan_for("xgboost", {"Master": 1, "Worker": 2})
    endpoints = {"master-0": ("10.0.0.1", 9091), "worker-0": ("10.0.0.2", 1), "worker-1": ("10.0.0.3", 2)}
    env = render_env(plan, endpoints)["worker-0"]
    assert env["WORKER_ADDRS"] == "10.0.0.2,10.0.0.3" and env["DMLC_TRACKER_URI"] == "10.0.0.1"
    plan = plan_for("python", {"Worker": 1})
    plan.replicas[0].env["PEER"] = "{{host:worker-0}}:80"
    env = render_env(plan, {"worker-0": ("10.0.0.9", 5)})["worker-0"]
    assert env["PEER"] == "10.0.0.9:80"


def test_verdict_follows_success_roles() -> None:
    plan = plan_for("tensorflow", {"Chief": 1, "Ps": 1, "Worker": 1})
    assert plan.success_roles == ["Chief"]
    assert verdict(plan, {})[0] == "running"
    assert verdict(plan, {"worker-0": 0})[0] == "running"
    assert verdict(plan, {"chief-0": 0}) == ("succeeded", None, None)
    assert verdict(plan, {"ps-0": -9}) == ("failed", "ps-0", -9)
    plan = plan_for("pytorch", {"Master": 1, "Worker": 1})
    assert verdict(plan, {"master-0": 0})[0] == "running"
    assert verdict(plan, {"master-0": 0, "worker-0": 0})[0] == "succeeded"
    assert verdict(plan, {"master-0": None, "worker-0": 3}) == ("failed", "worker-0", 3)


def test_bundles_are_never_empty() -> None:
    assert bundle(1.0, 512, 0) == {"CPU": 1.0, "memory": 512.0}
    assert bundle(2, 0, 1) == {"CPU": 2.0, "GPU": 1.0}
    assert bundle(0, 0, 0) == {"CPU": 0.01}


def _drain_until_exit(proc: ReplicaProcess, timeout: float = 10.0) -> tuple[list[str], int | None]:
    lines, code = [], None
    deadline = time.monotonic() + timeout
    while code is None and time.monotonic() < deadline:
        more, code = proc.drain()
        lines += more
        time.sleep(0.02)
    return lines, code


def test_replica_process_runs_collects_and_reports_exit() -> None:
    proc = ReplicaProcess("worker-0")
    ip, port = proc.endpoint()
    assert ip and port > 0
    proc.start(
        [sys.executable, "-c", "import os, sys; print(os.environ['X']); print('b'); sys.exit(4)"], {"X": "a"}
    )
    lines, code = _drain_until_exit(proc)
    assert (lines, code) == (["a", "b"], 4)


def test_replica_process_stop_and_bad_command() -> None:
    proc = ReplicaProcess("ps-0")
    proc.start([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"], {})
    deadline = time.monotonic() + 10
    seen: list[str] = []
    while not seen and time.monotonic() < deadline:
        seen += proc.drain()[0]
        time.sleep(0.02)
    assert seen == ["up"]
    began = time.monotonic()
    assert proc.stop(grace=1.0) == -15
    assert time.monotonic() - began < 3
    bad = ReplicaProcess("worker-0")
    bad.start(["/nonexistent/binary"], {})
    lines, code = bad.drain()
    assert code == 127 and "cannot start" in lines[0]
