"""Experiments on a real Ray cluster through a real broker (issue 5).

Most tests share the session's Ray head (``ray_head`` fixture: ``ray start --head``, 2 CPUs, free
loopback ports); each asks for at most 1 CPU in all and leaves nothing running. The head-loss test
starts a head of its own, since it kills it.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from typing import Any

import pytest

from tests.ray_cluster import RayHead
from tests.support import hold_code, processes_with, python_spec, wait_for

FAST = {"dispatch_interval": 0.3, "monitor_interval": 0.3, "health_interval": 0.5}
SMALL = "cpu=0.5,memory=64M"
#: How long a wait that includes a Ray job's start may take: a loaded 2-core host (the suite's other
#: workers and a CPU burner beside it) has taken over 90 s; a passing run waits a few seconds.
RAY_WAIT = 240


def _ray(head: RayHead) -> dict[str, dict[str, Any]]:
    return {"ray": {"kind": "ray", "address": head.address}}


def _jobs_of(head: RayHead, uid: str) -> list[Any]:
    """Every Ray job of one attempt: its submission id or its metadata names the attempt uid."""
    return [
        job
        for job in head.jobs().list_jobs()
        if uid in (job.submission_id or "") or uid in json.dumps(job.metadata or {})
    ]


def _attempts(head: RayHead) -> list[Any]:
    """The Ray jobs of brokers' attempts (not their entrypoint probes)."""
    return [job for job in head.jobs().list_jobs() if (job.metadata or {}).get("submarine-broker") == "1"]


def _probes(head: RayHead, cluster: str) -> list[str]:
    return [
        job.submission_id
        for job in head.jobs().list_jobs()
        if (job.submission_id or "").startswith(f"sb-probe-{cluster}-")
    ]


def _one_job(head: RayHead, uid: str) -> Any:
    jobs = _jobs_of(head, uid)
    assert len(jobs) == 1, f"expected one Ray job for attempt {uid}, found {[j.submission_id for j in jobs]}"
    return jobs[0]


def test_pytorch_master_and_worker_succeed_with_both_logs(broker_factory, ray_head) -> None:
    broker = broker_factory(clusters=_ray(ray_head), loops=FAST)
    code = "import os\nprint('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'])"
    roles = {"Master": {"replicas": 1, "resources": SMALL}, "Worker": {"replicas": 1, "resources": SMALL}}
    exp = broker.submit(python_spec(code, framework="pytorch", roles=roles))["experimentId"]

    done = broker.wait_status(exp, "Succeeded", timeout=RAY_WAIT)
    assert done["cluster"] == "ray" and done["attempt"] == 1
    logs = broker.logs(exp)
    assert logs[f"{exp}-master-0"] == ["rank 0 of 2"], logs
    assert logs[f"{exp}-worker-0"] == ["rank 1 of 2"], logs
    job = _one_job(ray_head, done["uid"])
    assert job.status == "SUCCEEDED"


def test_a_failing_replica_fails_the_experiment_with_its_reason(broker_factory, ray_head) -> None:
    broker = broker_factory(clusters=_ray(ray_head), loops=FAST)
    marker = f"sb-ray-fail-{secrets.token_hex(4)}"
    code = (
        f"# {marker}\nimport os, sys, time\n"
        "if os.environ['RANK'] == '1':\n    print('bad input', flush=True)\n    sys.exit(3)\n"
        "time.sleep(300)"
    )
    roles = {"Master": {"replicas": 1, "resources": SMALL}, "Worker": {"replicas": 1, "resources": SMALL}}
    exp = broker.submit(python_spec(code, framework="pytorch", roles=roles))["experimentId"]

    failed = broker.wait_status(exp, "Failed", timeout=RAY_WAIT)
    assert "worker-0" in failed["reason"] and "3" in failed["reason"], failed["reason"]
    assert _one_job(ray_head, failed["uid"]).status == "FAILED"
    assert "bad input" in broker.logs(exp)[f"{exp}-worker-0"]
    # the launcher stops the Master that was still sleeping
    wait_for(lambda: not processes_with(marker), timeout=20, what="the other replica to be stopped")


def test_deleting_a_running_experiment_stops_its_ray_job(broker_factory, ray_head, tmp_path) -> None:
    broker = broker_factory(clusters=_ray(ray_head), loops=FAST)
    marker = f"sb-ray-delete-{secrets.token_hex(4)}"
    spec = python_spec(
        hold_code(tmp_path / "never", marker), roles={"Worker": {"replicas": 1, "resources": SMALL}}
    )
    exp = broker.submit(spec)["experimentId"]
    running = broker.wait_status(exp, "Running", timeout=RAY_WAIT)
    assert running["cluster"] == "ray"
    job = _one_job(ray_head, running["uid"])
    wait_for(lambda: processes_with(marker), timeout=30, what="the replica process to start")

    answer = broker.client.delete(f"/experiment/{exp}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["status"] == "Deleted"
    jobs = ray_head.jobs()
    wait_for(
        lambda: jobs.get_job_status(job.submission_id) == "STOPPED",
        timeout=30,
        what=f"Ray job {job.submission_id} to be STOPPED",
    )
    wait_for(lambda: not processes_with(marker), timeout=20, what="the replica process to end")


def test_broker_killed_mid_run_adopts_its_ray_jobs_and_submits_nothing_again(
    broker_factory, ray_head, tmp_path
) -> None:
    broker = broker_factory(clusters=_ray(ray_head), loops=FAST)
    roles = {"Worker": {"replicas": 1, "resources": "cpu=0.25,memory=64M"}}
    early, late = tmp_path / "early", tmp_path / "late"
    first = broker.submit(python_spec(hold_code(early), name="first", roles=roles))["experimentId"]
    second = broker.submit(python_spec(hold_code(late), name="second", roles=roles))["experimentId"]
    uids = {exp: broker.wait_status(exp, "Running", timeout=RAY_WAIT)["uid"] for exp in (first, second)}
    for uid in uids.values():
        _one_job(ray_head, uid)

    broker.kill()  # SIGKILL: no shutdown hook runs
    early.touch()  # the first finishes while no broker is watching
    wait_for(
        lambda: _one_job(ray_head, uids[first]).status == "SUCCEEDED",
        timeout=RAY_WAIT,
        what="the first job to end",
    )
    broker.start()

    kept = broker.experiment(second)
    assert kept["status"] == "Running" and kept["attempt"] == 1 and kept["uid"] == uids[second]
    assert broker.wait_status(first, "Succeeded", timeout=RAY_WAIT)["attempt"] == 1
    late.touch()
    done = broker.wait_status(second, "Succeeded", timeout=RAY_WAIT)
    assert done["attempt"] == 1 and done["uid"] == uids[second]
    for exp, uid in uids.items():
        assert _one_job(ray_head, uid).status == "SUCCEEDED"
        assert broker.logs(exp)[f"{exp}-worker-0"] == ["done"]


def test_a_stopped_ray_head_turns_unreachable_and_new_work_runs_beside_it(broker_factory) -> None:
    head = RayHead()
    try:
        head.start()
        broker = broker_factory(
            clusters={**_ray(head), "local": {"kind": "local"}},
            loops={**FAST, "health_interval": 0.4},
        )
        state = lambda: broker.client.get("/cluster/ray").json()["result"]["state"]  # noqa: E731
        wait_for(lambda: state() == "Ready", timeout=60, what="the ray cluster to be Ready")
        on_ray = broker.submit(python_spec("print('on ray')", placement={"cluster": "ray"}))["experimentId"]
        assert broker.wait_status(on_ray, "Succeeded", timeout=RAY_WAIT)["cluster"] == "ray"

        head.kill()
        wait_for(lambda: state() == "Unreachable", timeout=20, what="the ray cluster to turn Unreachable")
        exp = broker.submit(python_spec("print('beside')", placement={"preferredClusters": ["ray"]}))[
            "experimentId"
        ]
        done = broker.wait_status(exp, "Succeeded", timeout=RAY_WAIT)
        assert done["cluster"] == "local"
        assert broker.logs(exp)[f"{exp}-worker-0"] == ["beside"]
    finally:
        head.stop()
    assert not head.processes()


def test_gpu_work_is_never_placed_on_a_ray_cluster_without_gpus(broker_factory, ray_head) -> None:
    # Ray would keep such a job PENDING for ever (and stop_job cannot end it): refuse it up front.
    broker = broker_factory(clusters=_ray(ray_head), loops=FAST)

    def capacity() -> dict[str, Any] | None:
        found = broker.client.get("/cluster/ray").json()["result"]
        return found if found["state"] == "Ready" and found["capacity"]["total"]["cpu"] == 2 else None

    cluster = wait_for(capacity, timeout=60, what="the Ray cluster's capacity")
    assert cluster["capacity"]["total"]["gpu"] == 0
    before = len(_attempts(ray_head))
    spec = python_spec("print(1)", roles={"Worker": {"replicas": 1, "resources": "cpu=0.5,nvidia.com/gpu=1"}})
    answer = broker.client.post("/experiment", json=spec)
    assert answer.status_code == 422 and "gpu" in answer.json()["message"], answer.text
    assert len(_attempts(ray_head)) == before


@pytest.fixture(scope="module")
def python_without_ray(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Python that cannot import ray: a fresh virtualenv's, without pip or site packages."""
    venv = tmp_path_factory.mktemp("no-ray") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    assert subprocess.run([python, "-c", "import ray"], capture_output=True, timeout=60).returncode == 1
    return python


def test_an_entrypoint_python_without_ray_keeps_the_cluster_from_work(
    broker_factory, ray_head, python_without_ray
) -> None:
    cluster = {"kind": "ray", "address": ray_head.address, "entrypoint_python": python_without_ray}
    broker = broker_factory(clusters={"ray": cluster}, loops=FAST)
    why = (
        f"entrypoint_python {python_without_ray} on cluster ray cannot import ray: "
        "ModuleNotFoundError: No module named 'ray'"
    )

    def shown() -> dict[str, Any]:
        return broker.client.get("/cluster/ray").json()["result"]

    found = wait_for(lambda: shown()["message"] == why and shown(), timeout=60, what="the entrypoint check")
    assert found["state"] == "NotReady" and found["reachable"] is True
    exp = broker.submit(python_spec("print('never here')"))["experimentId"]
    waiting = wait_for(
        lambda: why in (broker.experiment(exp).get("statusMessage") or "") and broker.experiment(exp),
        timeout=30,
        what="the experiment to say why it waits",
    )
    assert waiting["status"] == "Accepted" and waiting["cluster"] is None
    placement = broker.client.get(f"/experiment/{exp}/placement").json()["result"]["decision"]
    (verdict,) = placement["verdicts"]
    assert verdict["cluster"] == "ray" and f"cluster is NotReady: {why}" in verdict["reasons"]
    assert not [job for job in _attempts(ray_head) if (job.metadata or {}).get("experiment") == exp]
    wait_for(lambda: not _probes(ray_head, "ray"), timeout=40, what="the probe job to be deleted")
    assert f"cluster ray takes no new work: {why}" in broker.log()

    # Pointed at a Python with Ray, the cluster passes its check and takes the work.
    broker.add_cluster("ray", **{**cluster, "entrypoint_python": sys.executable})
    assert broker.wait_status(exp, "Succeeded", timeout=RAY_WAIT)["cluster"] == "ray"
    assert shown()["state"] == "Ready"
    wait_for(lambda: not _probes(ray_head, "ray"), timeout=40, what="the second probe job to be deleted")


def test_an_exception_in_a_replica_is_the_reason(broker_factory, ray_head) -> None:
    broker = broker_factory(clusters=_ray(ray_head), loops=FAST)
    marker = f"sb-ray-raise-{secrets.token_hex(4)}"
    code = f"print('starting')\nraise ValueError('learning rate is {marker}')"
    exp = broker.submit(python_spec(code))["experimentId"]
    failed = broker.wait_status(exp, "Failed", timeout=RAY_WAIT)
    assert failed["reason"] == f"replica worker-0 exited with code 1: ValueError: learning rate is {marker}"
    assert failed["failureCategory"] == "exit_code"


def test_a_failing_entrypoint_names_its_cause(ray_head, python_without_ray, tmp_path) -> None:
    # Straight through the adapter (the broker's placement would not send work there): the job's
    # entrypoint dies importing ray, and Ray's message starts with its header line only.
    from clusters.base import Phase
    from clusters.ray.adapter import RayAdapter
    from clusters.ray.config import RayClusterConfig
    from runtimes.plan import LaunchPlan, ReplicaPlan

    config = RayClusterConfig(name="ray", address=ray_head.address, entrypoint_python=python_without_ray)
    adapter = RayAdapter(config, data_dir=str(tmp_path))
    replica = ReplicaPlan(role="Worker", index=0, argv=["true"], host="{{host:worker-0}}", port=0)
    plan = LaunchPlan(
        uid=f"noray-{secrets.token_hex(4)}",
        workload_id="experiment-noray",
        name="noray",
        namespace="default",
        framework="python",
        replicas=[replica],
        success_roles=["Worker"],
    )
    handle = asyncio.run(adapter.submit(plan))

    def ended() -> Any:
        seen = asyncio.run(adapter.poll([handle]))[plan.uid]
        return seen if seen.phase is Phase.FAILED else None

    seen = wait_for(ended, timeout=90, interval=0.5, what="the job to fail")
    # The launcher's module imports runtimes.plan (pydantic) before it imports ray.
    assert seen.message == (
        "Job entrypoint command failed with exit code 1: ModuleNotFoundError: No module named 'pydantic'"
    )
    assert seen.failure_category == "exit_code"
