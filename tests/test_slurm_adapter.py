"""The ``slurm`` adapter (mode cli) against a real single-node Slurm (``slurm`` fixture).

Every job here asks for at most 2 of the node's 4 advertised CPUs and leaves nothing running.
The controller-loss test starts a Slurm of its own, since it stops the controller.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from clusters.base import Handle, Observation, Phase
from clusters.errors import ClusterUnreachable, SubmitRejected, WorkloadNotFound
from clusters.slurm.adapter import SlurmAdapter
from clusters.slurm.config import SlurmClusterConfig
from runtimes.frameworks import build_plan
from runtimes.plan import LaunchPlan
from runtimes.spec import ExperimentSpec
from tests.slurm_cluster import SlurmCluster
from tests.support import python_spec

SMALL = "cpu=0.5,memory=64Mi"


def make_adapter(cluster: SlurmCluster, tmp_path: Path, **extra: Any) -> SlurmAdapter:
    config = SlurmClusterConfig(name="slurm", **cluster.cluster_config(**extra))
    return SlurmAdapter(config, data_dir=str(tmp_path))


def make_plan(
    adapter: SlurmAdapter, code: str, roles: dict[str, Any], framework: str = "pytorch"
) -> LaunchPlan:
    spec = python_spec(code, framework=framework, roles=roles)
    uid = secrets.token_hex(16)
    return build_plan(
        ExperimentSpec.model_validate(spec),
        workload_id=f"experiment-{uid[:6]}",
        uid=uid,
        namespace="default",
        addressing=adapter.addressing(uid),
    )


async def wait_phase(
    adapter: SlurmAdapter, handle: Handle, *phases: Phase, timeout: float = 60
) -> Observation:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = (await adapter.poll([handle]))[handle.uid]
        if seen.phase in phases:
            return seen
        if seen.phase.is_terminal:
            raise AssertionError(f"ended {seen.phase}: {seen.message}")
        await asyncio.sleep(0.2)
    raise AssertionError(f"not {phases} after {timeout}s: {seen}")


async def until(check: Callable[[], Awaitable[Any] | Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def processes_with(marker: str) -> list[int]:
    return [
        p.pid for p in psutil.process_iter(["pid", "cmdline"]) if marker in " ".join(p.info["cmdline"] or ())
    ]


#: Master listens on MASTER_PORT, the worker connects to MASTER_ADDR:MASTER_PORT and says hello.
HANDSHAKE = """
import os, socket
rank = os.environ["RANK"]
where = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
if rank == "0":
    server = socket.create_server(("", where[1]))
    conn, _ = server.accept()
    print("rank 0 of", os.environ["WORLD_SIZE"], "got", conn.recv(100).decode())
else:
    for _ in range(200):
        try:
            sock = socket.create_connection(where, timeout=1)
            break
        except OSError:
            import time; time.sleep(0.05)
    sock.sendall(f"hello from rank {rank}".encode())
    print("rank", rank, "of", os.environ["WORLD_SIZE"], "reached", os.environ["MASTER_ADDR"])
"""


def test_submit_runs_both_replicas_that_reach_each_other_and_succeeds_once(slurm, tmp_path) -> None:
    adapter = make_adapter(slurm, tmp_path)
    roles = {"Master": {"replicas": 1, "resources": SMALL}, "Worker": {"replicas": 1, "resources": SMALL}}
    plan = make_plan(adapter, HANDSHAKE, roles)

    async def body() -> None:
        handle = await adapter.submit(plan)
        again = await adapter.submit(plan)  # a retry, or a broker restarted before saving the handle
        assert again == handle
        assert handle.state["replicas"] == ["master-0", "worker-0"]
        assert len(slurm.jobs_named(f"sb-{plan.uid}")) == 1
        done = await wait_phase(adapter, handle, Phase.SUCCEEDED)
        assert done.message == "all replicas finished"
        assert [(r.name, r.phase, r.exit_code) for r in done.replicas] == [
            ("master-0", Phase.SUCCEEDED, 0),
            ("worker-0", Phase.SUCCEEDED, 0),
        ]
        logs = await adapter.logs(handle)
        assert [log.replica for log in logs] == ["master-0", "worker-0"]  # the primary first
        assert logs[0].lines == ["rank 0 of 2 got hello from rank 1"]
        assert logs[1].lines == [f"rank 1 of 2 reached {slurm.node}"]
        assert await adapter.logs(handle, replica="worker-0", tail=1) == [logs[1]]
        folder = Path(handle.state["job_dir"])
        assert folder == slurm.work_dir / plan.uid
        assert (folder / "tasks.json").stat().st_mode & 0o077 == 0  # the replicas' environment is private
        with pytest.raises(WorkloadNotFound, match="its replicas are master-0, worker-0"):
            await adapter.logs(handle, replica="worker-7")
        # Still one job, and a submit after the end finds it rather than running the attempt again.
        assert await adapter.submit(plan) == handle
        (row,) = slurm.jobs_named(f"sb-{plan.uid}")
        assert row[2] == "COMPLETED" and row[3].startswith(f"submarine-broker cluster=slurm uid={plan.uid}")

        # After MinJobAge Slurm forgets the job: its folder still tells how it ended.
        forgotten = Handle(handle.uid, {**handle.state, "job_id": "99999999"})
        late = (await adapter.poll([forgotten]))[handle.uid]
        assert late.phase is Phase.SUCCEEDED, late
        lost = Handle("f" * 32, {**handle.state, "job_id": "99999998", "job_dir": str(tmp_path / "none")})
        assert (await adapter.poll([lost]))[lost.uid].phase is Phase.NOT_FOUND

    asyncio.run(body())


def test_a_failing_replica_fails_the_job_naming_it_and_stops_its_peers(slurm, tmp_path) -> None:
    adapter = make_adapter(slurm, tmp_path)
    marker = f"sb-slurm-fail-{secrets.token_hex(4)}"
    code = (
        f"# {marker}\nimport os, sys, time\n"
        "if os.environ['RANK'] == '1':\n    print('bad input', flush=True)\n    sys.exit(3)\n"
        "time.sleep(300)"
    )
    roles = {"Master": {"replicas": 1, "resources": SMALL}, "Worker": {"replicas": 1, "resources": SMALL}}
    plan = make_plan(adapter, code, roles)

    async def body() -> None:
        handle = await adapter.submit(plan)
        failed = await wait_phase(adapter, handle, Phase.FAILED)
        assert failed.message == "replica worker-0 exited with code 3"
        assert failed.failure_category == "exit_code"
        statuses = {r.name: r for r in failed.replicas}
        assert statuses["worker-0"].exit_code == 3 and statuses["master-0"].message.startswith("stopped")
        assert (await adapter.logs(handle, replica="worker-0"))[0].lines == ["bad input"]
        await until(lambda: not processes_with(marker), "the master to be stopped", timeout=20)
        (row,) = slurm.jobs_named(f"sb-{plan.uid}")
        assert row[2] == "FAILED"

    asyncio.run(body())


def test_cancel_stops_the_job_and_every_replica_process(slurm, tmp_path) -> None:
    adapter = make_adapter(slurm, tmp_path)
    marker = f"sb-slurm-cancel-{secrets.token_hex(4)}"
    roles = {"Worker": {"replicas": 2, "resources": "cpu=1,memory=128Mi"}}
    plan = make_plan(adapter, f"# {marker}\nimport time\ntime.sleep(300)", roles, framework="python")

    async def body() -> None:
        before = await adapter.health()
        assert before.reachable and before.total.cpu >= 4 and before.total.memory == 4000 * 2**20
        handle = await adapter.submit(plan)
        await wait_phase(adapter, handle, Phase.RUNNING)
        await until(lambda: len(processes_with(marker)) == 2, "both replicas to start")
        busy = await adapter.health()
        assert busy.free.cpu == busy.total.cpu - 2 and busy.free.memory == busy.total.memory - 256 * 2**20
        owned = {h.uid: h for h in await adapter.owned()}
        assert owned[plan.uid].state["job_id"] == handle.state["job_id"]
        assert owned[plan.uid].state["replicas"] == ["worker-0", "worker-1"]

        await adapter.cancel(handle)
        await until(lambda: not processes_with(marker), "the replicas to end", timeout=15)
        ended = await wait_phase(adapter, handle, Phase.FAILED, timeout=15)
        assert ended.failure_category == "killed" and "was cancelled" in ended.message
        (row,) = slurm.jobs_named(f"sb-{plan.uid}")
        assert row[2] == "CANCELLED"
        await adapter.cancel(handle)  # cancelling what ended is fine
        assert plan.uid not in {h.uid for h in await adapter.owned()}

    asyncio.run(body())


def test_parameter_servers_are_stopped_once_the_chief_succeeds(slurm, tmp_path) -> None:
    adapter = make_adapter(slurm, tmp_path)
    # The chief reaches the parameter server at its TF_CONFIG address, then ends; the ps would serve on.
    code = """
import json, os, socket, time
tf = json.loads(os.environ["TF_CONFIG"])
host, port = tf["cluster"]["ps"][0].rsplit(":", 1)
if tf["task"]["type"] == "ps":
    server = socket.create_server(("", int(port)))
    conn, _ = server.accept()
    print("ps got", conn.recv(100).decode(), flush=True)
    conn.sendall(b"ok")
    time.sleep(300)
for _ in range(200):
    try:
        sock = socket.create_connection((host, int(port)), timeout=1)
        break
    except OSError:
        time.sleep(0.05)
sock.sendall(b"hello from the chief")
print("chief heard", sock.recv(10).decode(), "from", sorted(tf["cluster"]))
"""
    roles = {"Chief": {"replicas": 1, "resources": SMALL}, "Ps": {"replicas": 1, "resources": SMALL}}
    plan = make_plan(adapter, code, roles, framework="tensorflow")

    async def body() -> None:
        handle = await adapter.submit(plan)
        done = await wait_phase(adapter, handle, Phase.SUCCEEDED, timeout=60)
        assert {r.name: r.phase for r in done.replicas} == {
            "chief-0": Phase.SUCCEEDED,
            "ps-0": Phase.SUCCEEDED,
        }
        logs = {log.replica: log.lines for log in await adapter.logs(handle)}
        assert logs == {
            "chief-0": ["chief heard ok from ['chief', 'ps']"],
            "ps-0": ["ps got hello from the chief"],
        }
        (row,) = slurm.jobs_named(f"sb-{plan.uid}")
        assert row[2] == "COMPLETED"

    asyncio.run(body())


def test_a_job_slurm_refuses_is_rejected_with_slurms_reason(slurm, tmp_path) -> None:
    roles = {"Worker": {"replicas": 1, "resources": "cpu=1,memory=64Mi"}}

    async def body() -> None:
        wrong = make_adapter(slurm, tmp_path, partition="nope")
        with pytest.raises(SubmitRejected, match="refused job sb-.*Invalid partition name specified"):
            await wrong.submit(make_plan(wrong, "print(1)", roles, "python"))
        adapter = make_adapter(slurm, tmp_path)
        huge = {"Worker": {"replicas": 1, "resources": "cpu=1,memory=500Gi"}}
        with pytest.raises(SubmitRejected, match="Requested node configuration is not available"):
            await adapter.submit(make_plan(adapter, "print(1)", huge, "python"))

    asyncio.run(body())


def test_a_stopped_controller_is_unreachable_never_a_failure(tmp_path) -> None:
    cluster = SlurmCluster(message_timeout=2)  # a client gives up on a silent controller in ~2 s
    try:
        cluster.start()
        adapter = make_adapter(cluster, tmp_path)
        quick = make_adapter(cluster, tmp_path, command_timeout=1.5)
        marker = f"sb-slurm-ctld-{secrets.token_hex(4)}"
        code = f"# {marker}\nimport time\ntime.sleep(300)"
        plan = make_plan(adapter, code, {"Worker": {"replicas": 1, "resources": SMALL}}, framework="python")

        async def body() -> None:
            handle = await adapter.submit(plan)
            await wait_phase(adapter, handle, Phase.RUNNING)
            await until(lambda: processes_with(marker), "the replica to start")
            cluster.stop_controller()

            health = await adapter.health()
            assert not health.reachable and "Unable to contact slurm controller" in health.message
            with pytest.raises(ClusterUnreachable, match="Unable to contact slurm controller"):
                await adapter.poll([handle])
            with pytest.raises(ClusterUnreachable, match="did not answer within 1.5s"):
                await quick.poll([handle])
            with pytest.raises(ClusterUnreachable):
                await quick.submit(make_plan(adapter, "print(1)", {"Worker": {"replicas": 1}}, "python"))
            with pytest.raises(ClusterUnreachable):
                await quick.cancel(handle)
            assert processes_with(marker), "the replica keeps running while the controller is away"

            cluster.start_controller(clear=False)

            async def reachable() -> bool:
                return (await adapter.health()).reachable

            await until(reachable, "the controller to answer again", timeout=30)
            assert (await wait_phase(adapter, handle, Phase.RUNNING)).phase is Phase.RUNNING
            await adapter.cancel(handle)
            await until(lambda: not processes_with(marker), "the replica to end", timeout=15)

        asyncio.run(body())
    finally:
        cluster.stop()
