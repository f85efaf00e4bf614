"""The ``ray`` kind without a cluster: the state table, config, and the adapter over a fake SDK client."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import httpx
import pytest

from clusters.base import Capability, Handle, Phase
from clusters.errors import ClusterUnreachable, SubmitRejected, WorkloadNotFound
from clusters.kinds import adapter_class
from clusters.ray.adapter import RayAdapter, failure_message, split_logs, submission_id
from clusters.ray.config import RayClusterConfig
from clusters.ray.states import RAY_JOB_STATES, TERMINAL, ray_state
from runtimes.plan import LaunchPlan, ReplicaPlan
from runtimes.ray_launcher import decode_plan, failure_line
from tests.doubles.ray_sdk import FakeSDK

SECRET = "Bearer very-secret-token"


def test_every_ray_job_status_is_in_the_table() -> None:
    from ray import job_submission

    statuses = {status.value for status in job_submission.JobStatus}
    missing = statuses - set(RAY_JOB_STATES)
    assert not missing, f"Ray job statuses missing from clusters/ray/states.py: {sorted(missing)}"
    assert {"PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED"} <= statuses
    terminal = {s.value for s in job_submission.JobStatus if s.is_terminal()}
    assert terminal == set(TERMINAL)
    for status in job_submission.JobStatus:
        assert ray_state(status).phase.is_terminal == status.is_terminal()


def test_state_table_readings() -> None:
    assert ray_state("PENDING").phase is Phase.PENDING
    assert ray_state("RUNNING").phase is Phase.RUNNING
    assert ray_state("SUCCEEDED").phase is Phase.SUCCEEDED
    assert ray_state("FAILED") == (Phase.FAILED, "exit_code")
    assert ray_state("STOPPED") == (Phase.FAILED, "killed")
    assert ray_state("SOMETHING_NEW").phase is Phase.UNKNOWN


def test_kind_is_registered_and_config_masks_headers() -> None:
    assert adapter_class("ray") is RayAdapter
    assert RayAdapter.capabilities == (
        Capability.GPU | Capability.MULTI_NODE | Capability.ENDPOINTS | Capability.LISTS_WORK
    )
    config = RayClusterConfig(
        name="r1", kind="ray", address="http://h:8265/", headers={"Authorization": SECRET}
    )
    assert config.address == "http://h:8265"
    view = config.public_view()
    assert view["headers"] == "******"
    assert SECRET not in json.dumps(view)
    with pytest.raises(ValueError):
        RayClusterConfig(name="r1", address="h:8265")
    with pytest.raises(ValueError):
        RayClusterConfig(name="r1", address="http://h:8265", bogus=1)


def test_split_logs_and_failure_message() -> None:
    text = "\n".join(
        [
            "2026-01-01 INFO worker.py -- Connecting",
            "submarine-broker: started master-0@1.2.3.4:5, worker-0@1.2.3.5:6",
            "[master-0] hello",
            "[worker-0] [nested] brackets kept",
            "[worker-1] not in the plan",
            "[master-0] ",
            failure_line("worker-0", 3),
        ]
    )
    split = split_logs(text, ["master-0", "worker-0"])
    assert split == {"master-0": ["hello", ""], "worker-0": ["[nested] brackets kept"]}
    message = "Job entrypoint command failed with exit code 1, last available logs:\n" + text
    assert failure_message(message) == "replica worker-0 exited with code 3: [nested] brackets kept"
    assert failure_message("Job supervisor actor died") == "Job supervisor actor died"
    assert failure_message(None) == "the Ray job failed"


#: Ray's header line of a FAILED job whose entrypoint exited non-zero (Ray 2.60).
HEADER = "Job entrypoint command failed with exit code {}, last available logs (truncated to 20,000 chars):"
RAY_SETUP = "2026-12-06 22:36:25,155\tINFO job_manager.py:581 -- Runtime env is setting up."


def test_a_failed_replica_is_named_with_its_exception() -> None:
    lines = [
        HEADER.format(1),
        RAY_SETUP,
        "submarine-broker: started master-0@1.2.3.4:5, worker-0@1.2.3.5:6",
        "[worker-0] Traceback (most recent call last):",
        '[worker-0]   File "<string>", line 3, in <module>',
        "[worker-0] ValueError: bad learning rate 'x'",
        "[worker-0] cleanup done",
        "[master-0] KeyError: 'not this replica'",
        "submarine-broker: replica master-0 stopped (exit code -15)",
        failure_line("worker-0", 1),
    ]
    assert failure_message("\n".join(lines)) == (
        "replica worker-0 exited with code 1: ValueError: bad learning rate 'x'"
    )
    # no exception line: the replica's last line; no line at all: the exit code alone
    assert failure_message(
        "\n".join([HEADER.format(1), "[worker-0] bad input", failure_line("worker-0", 3)])
    ) == ("replica worker-0 exited with code 3: bad input")
    assert failure_message(failure_line("worker-0", 7)) == "replica worker-0 exited with code 7"


def test_a_failed_entrypoint_is_named_with_its_cause() -> None:
    no_ray = "\n".join(
        [
            HEADER.format(1),
            RAY_SETUP,
            "Running entrypoint for job sb-u1: /usr/bin/python3 -m runtimes.ray_launcher eJx...",
            "Traceback (most recent call last):",
            '  File "<frozen runpy>", line 198, in _run_module_as_main',
            '  File "/tmp/ray/runtimes/ray_launcher.py", line 447, in run',
            "    import ray",
            "ModuleNotFoundError: No module named 'ray'",
            "",
        ]
    )
    assert failure_message(no_ray) == (
        "Job entrypoint command failed with exit code 1: ModuleNotFoundError: No module named 'ray'"
    )
    not_found = "\n".join(
        [
            HEADER.format(127),
            RAY_SETUP,
            "/bin/sh: 1: /nope/python: not found",
            "Running entrypoint for job sb-u1: /nope/python -m runtimes.ray_launcher eJx...",
        ]
    )
    assert failure_message(not_found) == (
        "Job entrypoint command failed with exit code 127: /bin/sh: 1: /nope/python: not found"
    )
    assert (
        failure_message(HEADER.format(2) + "\n" + RAY_SETUP)
        == "Job entrypoint command failed with exit code 2"
    )


# -- the adapter over a fake JobSubmissionClient ----------------------------------------------


def make_plan(uid: str = "u1") -> LaunchPlan:
    return LaunchPlan(
        uid=uid,
        workload_id="experiment-1",
        name="t",
        namespace="default",
        framework="pytorch",
        replicas=[
            ReplicaPlan(role="Master", index=0, argv=["true"], host="{{host:master-0}}", port=0),
            ReplicaPlan(role="Worker", index=0, argv=["true"], host="{{host:worker-0}}", port=0),
        ],
        success_roles=["Master", "Worker"],
    )


@pytest.fixture
def fake() -> FakeSDK:
    return FakeSDK()


@pytest.fixture
def adapter(fake: FakeSDK, tmp_path) -> RayAdapter:
    config = RayClusterConfig(name="r1", address="http://h:8265", headers={"Authorization": SECRET})
    a = RayAdapter(config, data_dir=str(tmp_path))
    a._client = fake
    return a


def test_submit_is_idempotent_and_carries_the_plan(adapter: RayAdapter, fake: FakeSDK) -> None:
    plan = make_plan()
    handle = asyncio.run(adapter.submit(plan))
    again = asyncio.run(adapter.submit(plan))
    assert handle == again
    assert list(fake.jobs) == [submission_id("u1")] == ["sb-u1"]
    assert fake.calls.count("submit_job") == 1
    job = fake.jobs["sb-u1"]
    assert job.metadata["submarine-broker"] == "1"
    assert job.metadata["experiment"] == "experiment-1" and job.metadata["uid"] == "u1"
    assert decode_plan(job.entrypoint.split()[-1]) == plan
    assert job.entrypoint.startswith("python -m runtimes.ray_launcher ")
    assert job.runtime_env["py_modules"][0].endswith("runtimes")
    assert handle.state["replicas"] == ["master-0", "worker-0"]


def test_a_duplicate_500_means_the_job_exists(adapter: RayAdapter, fake: FakeSDK) -> None:
    fake.race = True
    handle = asyncio.run(adapter.submit(make_plan()))
    assert handle.state["submission_id"] == "sb-u1"
    assert len(fake.jobs) == 1


def test_a_refused_submit_is_rejected(adapter: RayAdapter, fake: FakeSDK) -> None:
    def refuse(**_kw):
        raise RuntimeError("Request failed with status code 400: bad runtime_env.")

    fake.submit_job = refuse
    with pytest.raises(SubmitRejected):
        asyncio.run(adapter.submit(make_plan()))


def test_poll_is_one_list_call_and_maps_every_status(adapter: RayAdapter, fake: FakeSDK) -> None:
    handles = [asyncio.run(adapter.submit(make_plan(f"u{i}"))) for i in range(5)]
    statuses = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"]
    for handle, status in zip(handles, statuses, strict=True):
        fake.jobs[handle.state["submission_id"]].status = status
    fake.jobs["sb-u3"].message = "Job entrypoint command failed:\n" + failure_line("worker-0", 7)
    fake.calls.clear()
    seen = asyncio.run(adapter.poll([*handles, Handle("ghost", {})]))
    assert fake.calls == ["list_jobs"]
    assert [seen[h.uid].phase for h in handles] == [
        Phase.PENDING,
        Phase.RUNNING,
        Phase.SUCCEEDED,
        Phase.FAILED,
        Phase.FAILED,
    ]
    assert seen["u3"].message == "replica worker-0 exited with code 7"
    assert seen["u3"].failure_category == "exit_code"
    assert seen["u4"].failure_category == "killed"
    assert seen["ghost"].phase is Phase.NOT_FOUND


def test_unreachable_never_leaks_headers(adapter: RayAdapter, fake: FakeSDK) -> None:
    handle = asyncio.run(adapter.submit(make_plan()))
    fake.down = True
    for call in (adapter.poll([handle]), adapter.submit(make_plan("u2")), adapter.cancel(handle)):
        with pytest.raises(ClusterUnreachable) as info:
            asyncio.run(call)
        assert SECRET not in str(info.value)


def test_cancel_is_idempotent(adapter: RayAdapter, fake: FakeSDK) -> None:
    handle = asyncio.run(adapter.submit(make_plan()))
    asyncio.run(adapter.cancel(handle))
    assert fake.jobs["sb-u1"].status == "STOPPED"
    asyncio.run(adapter.cancel(handle))
    asyncio.run(adapter.cancel(Handle("ghost", {})))


def test_logs_per_replica_in_plan_order(adapter: RayAdapter, fake: FakeSDK) -> None:
    handle = asyncio.run(adapter.submit(make_plan()))
    fake.logs = "Running entrypoint\n[worker-0] w1\n[master-0] m1\n[worker-0] w2\nsubmarine-broker: done\n"
    logs = asyncio.run(adapter.logs(handle))
    assert [(log.replica, log.lines) for log in logs] == [("master-0", ["m1"]), ("worker-0", ["w1", "w2"])]
    assert [log.lines for log in asyncio.run(adapter.logs(handle, "worker-0", tail=1))] == [["w2"]]
    with pytest.raises(WorkloadNotFound):
        asyncio.run(adapter.logs(handle, "ps-0"))
    with pytest.raises(WorkloadNotFound):
        asyncio.run(adapter.logs(Handle("ghost", {"replicas": ["worker-0"]})))


def test_owned_lists_live_jobs_of_this_broker(adapter: RayAdapter, fake: FakeSDK) -> None:
    asyncio.run(adapter.submit(make_plan("live")))
    asyncio.run(adapter.submit(make_plan("done")))
    fake.jobs["sb-done"].status = "SUCCEEDED"
    fake.jobs["foreign"] = SimpleNamespace(submission_id="foreign", status="RUNNING", metadata={"x": "y"})
    owned = asyncio.run(adapter.owned())
    assert [h.uid for h in owned] == ["live"]
    assert owned[0].state["replicas"] == ["master-0", "worker-0"]


# -- health ------------------------------------------------------------------------------------


def _status(usage: dict) -> dict:
    return {"result": True, "data": {"clusterStatus": {"loadMetricsReport": {"usage": usage}}}}


def health_of(adapter: RayAdapter, handler) -> object:
    adapter.http_transport = httpx.MockTransport(handler)
    return asyncio.run(adapter.health())


def test_health_reads_capacity(adapter: RayAdapter) -> None:
    seen_headers = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen_headers.append(request.headers.get("authorization"))
        if request.url.path == "/api/version":
            return httpx.Response(200, json={"version": "4", "ray_version": "2.60.0"})
        assert request.url.path == "/api/cluster_status"
        return httpx.Response(200, json=_status({"CPU": [1.0, 4.0], "memory": [2.0e9, 8.0e9]}))

    health = health_of(adapter, handler)
    assert health.reachable
    assert (health.total.cpu, health.total.memory, health.total.gpu) == (4.0, 8_000_000_000, 0)
    assert (health.free.cpu, health.free.memory, health.free.gpu) == (3.0, 6_000_000_000, 0)
    assert seen_headers == [SECRET, SECRET]

    adapter.config = RayClusterConfig.model_validate(
        {**adapter.config.model_dump(), "capacity": {"cpu": 2, "gpu": 1}}
    )
    health = health_of(
        adapter,
        lambda r: (
            httpx.Response(200, json={"ray_version": "2.60.0"})
            if r.url.path == "/api/version"
            else httpx.Response(200, json=_status({"CPU": [1.0, 4.0], "GPU": [0, 2], "memory": [0, 8.0e9]}))
        ),
    )
    assert (health.total.cpu, health.total.gpu, health.free.cpu, health.free.gpu) == (2.0, 1, 1.0, 1)


def test_health_unreachable_and_refused(adapter: RayAdapter) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    health = health_of(adapter, down)
    assert not health.reachable and SECRET not in health.message
    health = health_of(adapter, lambda r: httpx.Response(401, text="unauthorized"))
    assert not health.reachable and "credentials refused" in health.message
    assert SECRET not in health.message
    health = health_of(
        adapter,
        lambda r: (
            httpx.Response(200, json={}) if r.url.path == "/api/version" else httpx.Response(200, json={})
        ),
    )
    assert not health.reachable


def test_health_of_a_closed_port(tmp_path) -> None:
    config = RayClusterConfig(name="r1", address="http://127.0.0.1:9", headers={"X-Key": SECRET})
    health = asyncio.run(RayAdapter(config, data_dir=str(tmp_path)).health())
    assert not health.reachable
    assert SECRET not in health.message


def test_a_stopped_head_is_unreachable_for_the_real_sdk(tmp_path) -> None:
    config = RayClusterConfig(name="r1", address="http://127.0.0.1:9", headers={"X-Key": SECRET})
    adapter = RayAdapter(config, data_dir=str(tmp_path))
    with pytest.raises(ClusterUnreachable) as info:
        asyncio.run(adapter.poll([Handle("u1", {})]))
    assert SECRET not in str(info.value)


def test_a_hanging_call_times_out(adapter: RayAdapter, fake: FakeSDK) -> None:
    import time

    fake.list_jobs = lambda: time.sleep(2)
    adapter.call_timeout = 0.2
    with pytest.raises(ClusterUnreachable, match="did not answer within"):
        asyncio.run(adapter.poll([Handle("u1", {})]))


def _plan_with(pip: list[str], conda: list[str]):
    from runtimes.plan import LaunchPlan, ReplicaPlan

    replica = ReplicaPlan(role="Worker", index=0, argv=["python", "-c", "1"], host="h")
    return LaunchPlan(
        uid="u1",
        workload_id="e",
        name="n",
        namespace="ns",
        framework="python",
        replicas=[replica],
        success_roles=["Worker"],
        pip_packages=pip,
        conda_packages=conda,
    )


def test_environment_packages_map_to_the_runtime_env() -> None:
    from clusters.ray.adapter import RayAdapter
    from clusters.ray.config import RayClusterConfig

    adapter = RayAdapter(
        RayClusterConfig(name="r", kind="ray", address="http://127.0.0.1:1"), data_dir="/tmp"
    )
    assert "pip" not in adapter.runtime_env(_plan_with([], [])) and "conda" not in adapter.runtime_env(
        _plan_with([], [])
    )
    assert adapter.runtime_env(_plan_with(["numpy==2.1"], []))["pip"] == ["numpy==2.1"]
    both = adapter.runtime_env(_plan_with(["torch"], ["python=3.11"]))
    assert both["conda"] == {"dependencies": ["python=3.11", "pip", {"pip": ["torch"]}]} and "pip" not in both
