"""Experiments on a real single-node Slurm through a real broker (issue 7, ``kind: slurm``).

The broker reaches Slurm with its commands (``mode: cli``, ``slurm_conf`` of the ``slurm``
fixture). The controller-loss test starts a Slurm of its own, since it stops the controller.
"""

from __future__ import annotations

import secrets

from tests.slurm_cluster import SlurmCluster
from tests.support import hold_code, processes_with, python_spec, wait_for

FAST = {"dispatch_interval": 0.3, "monitor_interval": 0.3, "health_interval": 0.5}
SMALL = "cpu=0.5,memory=64Mi"


def _jobs(cluster: SlurmCluster, uid: str) -> list[list[str]]:
    """Every Slurm job of one attempt: its name or its comment names the uid."""
    return [row for row in cluster.squeue() if uid in row[1] or uid in row[3]]


def _one_job(cluster: SlurmCluster, uid: str) -> list[str]:
    jobs = _jobs(cluster, uid)
    assert len(jobs) == 1, f"expected one Slurm job for attempt {uid}, found {jobs}"
    return jobs[0]


def test_pytorch_master_and_worker_succeed_with_both_logs(broker_factory, slurm) -> None:
    broker = broker_factory(clusters={"hpc": slurm.cluster_config()}, loops=FAST)
    code = "import os\nprint('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'], 'master', os.environ['MASTER_ADDR'])"
    roles = {"Master": {"replicas": 1, "resources": SMALL}, "Worker": {"replicas": 1, "resources": SMALL}}
    exp = broker.submit(python_spec(code, framework="pytorch", roles=roles))["experimentId"]

    done = broker.wait_status(exp, "Succeeded", timeout=60)
    assert done["cluster"] == "hpc" and done["attempt"] == 1
    logs = broker.logs(exp)
    assert list(logs) == [f"{exp}-master-0", f"{exp}-worker-0"]
    assert logs[f"{exp}-master-0"] == [f"rank 0 of 2 master {slurm.node}"]
    assert logs[f"{exp}-worker-0"] == [f"rank 1 of 2 master {slurm.node}"]
    wait_for(
        lambda: _one_job(slurm, done["uid"])[2] == "COMPLETED", timeout=30, what="the job to end COMPLETED"
    )

    cluster = broker.client.get("/cluster/hpc").json()["result"]
    assert cluster["state"] == "Ready" and cluster["capacity"]["total"]["cpu"] >= 4


def test_a_failing_replica_fails_the_experiment_with_its_reason(broker_factory, slurm) -> None:
    broker = broker_factory(clusters={"hpc": slurm.cluster_config()}, loops=FAST)
    code = "import os, sys\nif os.environ['RANK'] == '1':\n    print('bad input')\n    sys.exit(3)\n"
    roles = {"Master": {"replicas": 1, "resources": SMALL}, "Worker": {"replicas": 1, "resources": SMALL}}
    exp = broker.submit(python_spec(code, framework="pytorch", roles=roles))["experimentId"]

    failed = broker.wait_status(exp, "Failed", timeout=60)
    assert failed["reason"] == "replica worker-0 exited with code 3", failed["reason"]
    assert broker.logs(exp)[f"{exp}-worker-0"] == ["bad input"]
    # Slurm shows COMPLETING for a moment after the broker already saw the step fail.
    wait_for(lambda: _one_job(slurm, failed["uid"])[2] == "FAILED", timeout=30, what="the job to end FAILED")


def test_deleting_a_running_experiment_cancels_its_slurm_job(broker_factory, slurm, tmp_path) -> None:
    broker = broker_factory(clusters={"hpc": slurm.cluster_config()}, loops=FAST)
    marker = f"sb-slurm-delete-{secrets.token_hex(4)}"
    spec = python_spec(
        hold_code(tmp_path / "never", marker), roles={"Worker": {"replicas": 2, "resources": SMALL}}
    )
    exp = broker.submit(spec)["experimentId"]
    running = broker.wait_status(exp, "Running", timeout=60)
    wait_for(lambda: len(processes_with(marker)) == 2, timeout=30, what="both replicas to start")

    answer = broker.client.delete(f"/experiment/{exp}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["status"] == "Deleted"
    wait_for(lambda: not processes_with(marker), timeout=20, what="the replica processes to end")
    wait_for(lambda: _one_job(slurm, running["uid"])[2] == "CANCELLED", timeout=20, what="CANCELLED")


def test_broker_killed_mid_run_adopts_its_slurm_jobs_and_submits_nothing_again(
    broker_factory, slurm, tmp_path
) -> None:
    broker = broker_factory(clusters={"hpc": slurm.cluster_config()}, loops=FAST)
    roles = {"Worker": {"replicas": 1, "resources": SMALL}}
    early, late = tmp_path / "early", tmp_path / "late"
    first = broker.submit(python_spec(hold_code(early), name="first", roles=roles))["experimentId"]
    second = broker.submit(python_spec(hold_code(late), name="second", roles=roles))["experimentId"]
    uids = {exp: broker.wait_status(exp, "Running", timeout=60)["uid"] for exp in (first, second)}
    for uid in uids.values():
        _one_job(slurm, uid)

    broker.kill()  # SIGKILL: no shutdown hook runs
    early.touch()  # the first finishes while no broker is watching
    wait_for(lambda: _one_job(slurm, uids[first])[2] == "COMPLETED", timeout=30, what="the first job to end")
    broker.start()

    kept = broker.experiment(second)
    assert kept["status"] == "Running" and kept["attempt"] == 1 and kept["uid"] == uids[second]
    assert broker.wait_status(first, "Succeeded", timeout=30)["attempt"] == 1
    late.touch()
    done = broker.wait_status(second, "Succeeded", timeout=60)
    assert done["attempt"] == 1 and done["uid"] == uids[second]
    for exp, uid in uids.items():
        assert _one_job(slurm, uid)[2] == "COMPLETED"
        assert broker.logs(exp)[f"{exp}-worker-0"] == ["done"]


def test_a_stopped_controller_turns_the_cluster_unreachable_and_fails_nothing(
    broker_factory, tmp_path
) -> None:
    cluster = SlurmCluster(message_timeout=2)
    try:
        cluster.start()
        broker = broker_factory(
            clusters={"hpc": cluster.cluster_config(command_timeout=5)},
            loops={**FAST, "health_interval": 0.4},
        )
        state = lambda: broker.client.get("/cluster/hpc").json()["result"]["state"]  # noqa: E731
        wait_for(lambda: state() == "Ready", timeout=20, what="the slurm cluster to be Ready")
        release, marker = tmp_path / "release", f"sb-slurm-ctld-{secrets.token_hex(4)}"
        spec = python_spec(hold_code(release, marker), roles={"Worker": {"replicas": 1, "resources": SMALL}})
        exp = broker.submit(spec)["experimentId"]
        uid = broker.wait_status(exp, "Running", timeout=60)["uid"]
        # srun needs the controller to start the job's step: stop it only once the replica runs.
        wait_for(lambda: processes_with(marker), timeout=30, what="the replica to start")

        cluster.stop_controller()
        wait_for(lambda: state() == "Unreachable", timeout=20, what="the slurm cluster to turn Unreachable")
        found = broker.client.get("/cluster/hpc").json()["result"]
        assert "Unable to contact slurm controller" in str(found), found
        release.touch()  # the replica ends while nobody can ask Slurm
        assert broker.experiment(exp)["status"] == "Running"

        cluster.start_controller(clear=False)
        wait_for(lambda: state() == "Ready", timeout=30, what="the slurm cluster to be Ready again")
        done = broker.wait_status(exp, "Succeeded", timeout=60)
        assert done["attempt"] == 1 and done["uid"] == uid
        assert broker.logs(exp)[f"{exp}-worker-0"] == ["done"]
    finally:
        cluster.stop()
