"""The Ray kind's entrypoint check without a cluster: one probe job per (re)connection, its verdict
kept between health checks, its job deleted (again, if Ray writes it back), over a fake SDK client."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import httpx
import pytest

from clusters.base import Health
from clusters.ray.adapter import RayAdapter
from clusters.ray.config import RayClusterConfig
from clusters.ray.probe import PROBE_MARK
from tests.test_ray_states import FakeSDK, _status

NO_RAY = (
    "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\n"
    "2026-12-06 22:36:25,155\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
    "Running entrypoint for job sb-probe-r1-0a1b2c3d: /usr/bin/python3 -c 'import ray, pydantic'\n"
    "Traceback (most recent call last):\n"
    '  File "<string>", line 1, in <module>\n'
    "ModuleNotFoundError: No module named 'ray'\n"
)
WHY = "entrypoint_python /usr/bin/python3 on cluster r1 cannot import ray: ModuleNotFoundError: No module named 'ray'"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Up:
    """The dashboard answering, or not."""

    def __init__(self) -> None:
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused")
        if request.url.path == "/api/version":
            return httpx.Response(200, json={"ray_version": "2.60.0"})
        return httpx.Response(200, json=_status({"CPU": [0.0, 2.0], "memory": [0.0, 4.0e9]}))


@pytest.fixture
def fake() -> FakeSDK:
    return FakeSDK()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def up() -> Up:
    return Up()


@pytest.fixture
def adapter(fake: FakeSDK, clock: Clock, up: Up, tmp_path) -> RayAdapter:
    config = RayClusterConfig(name="r1", address="http://h:8265", entrypoint_python="/usr/bin/python3")
    a = RayAdapter(config, data_dir=str(tmp_path))
    a._client = fake
    a.http_transport = httpx.MockTransport(up)
    a.probe.clock, a.probe.sleep = clock, clock.sleep
    return a


def health(adapter: RayAdapter) -> Health:
    return asyncio.run(adapter.health())


def test_a_passing_probe_runs_once_and_its_job_is_deleted(
    adapter: RayAdapter, fake: FakeSDK, clock: Clock
) -> None:
    first = health(adapter)
    assert first.reachable and first.usable and first.message == ""
    assert first.total.cpu == 2.0
    (probe,) = fake.probes()
    job = fake.jobs[probe]
    assert probe.startswith("sb-probe-r1-") and job.entrypoint == "/usr/bin/python3 -c 'import ray, pydantic'"
    assert job.metadata == {"submarine-broker": PROBE_MARK, "cluster": "r1"}
    for _ in range(20):  # health every few seconds: no further probe job
        clock.now += 5
        assert health(adapter).usable
    assert fake.calls.count("submit_job") == 1
    assert fake.probes() == [] and fake.calls.count("delete_job") == 1


def test_a_probe_job_ray_writes_back_is_deleted_again(
    adapter: RayAdapter, fake: FakeSDK, clock: Clock
) -> None:
    fake.resurrect = 1
    health(adapter)
    clock.now += 6
    health(adapter)  # deleted: Ray writes it back as FAILED
    assert len(fake.probes()) == 1 and fake.jobs[fake.probes()[0]].status == "FAILED"
    clock.now += 6
    health(adapter)  # found again and deleted again
    clock.now += 6
    assert health(adapter).usable  # the pass stands: a written-back job is not read again
    assert fake.probes() == [] and fake.calls.count("delete_job") == 2


def test_an_entrypoint_without_ray_makes_the_cluster_not_usable(
    adapter: RayAdapter, fake: FakeSDK, clock: Clock
) -> None:
    fake.probe_status, fake.probe_message = "FAILED", NO_RAY
    found = health(adapter)
    assert found.reachable and not found.usable
    assert found.message == WHY
    clock.now += 30
    assert health(adapter).message == WHY
    assert fake.calls.count("submit_job") == 1  # the failure holds...
    clock.now += 31
    fake.probe_status, fake.probe_message = "SUCCEEDED", "Job finished successfully."
    assert health(adapter).usable  # ...for a minute, then a new probe finds Ray installed
    assert fake.calls.count("submit_job") == 2


def test_a_running_probe_is_waited_for_then_given_up(
    adapter: RayAdapter, fake: FakeSDK, clock: Clock
) -> None:
    fake.probe_status = "PENDING"
    found = health(adapter)
    (probe,) = fake.probes()
    assert not found.usable
    assert (
        found.message
        == f"checking that entrypoint_python /usr/bin/python3 can import ray, pydantic (Ray job {probe})"
    )
    clock.now += 60
    assert not health(adapter).usable and fake.calls.count("submit_job") == 1
    fake.jobs[probe].status = "SUCCEEDED"
    assert health(adapter).usable

    stuck = RayAdapter(adapter.config, data_dir="/tmp")
    stuck._client, stuck.http_transport = fake, adapter.http_transport
    stuck.probe.clock, stuck.probe.sleep = clock, clock.sleep
    before = set(fake.probes())
    health(stuck)
    (probe,) = set(fake.probes()) - before
    clock.now += 121
    found = health(stuck)
    assert not found.usable and found.message.startswith(f"the probe job {probe} checking entrypoint_python")
    assert "did not end within 120s (status PENDING)" in found.message
    assert fake.jobs[probe].status == "STOPPED"


def test_a_reconnection_probes_again(adapter: RayAdapter, fake: FakeSDK, clock: Clock, up: Up) -> None:
    assert health(adapter).usable
    up.down = True
    assert not health(adapter).reachable
    up.down = False
    fake.probe_status, fake.probe_message = "FAILED", NO_RAY  # the head came back with another python
    assert health(adapter).message == WHY
    assert fake.calls.count("submit_job") == 2


def test_a_job_api_that_does_not_answer_is_unreachable(adapter: RayAdapter, fake: FakeSDK) -> None:
    fake.down = True
    found = health(adapter)
    assert not found.reachable and "did not answer" in found.message


def test_leftover_probe_jobs_of_the_cluster_are_deleted(
    adapter: RayAdapter, fake: FakeSDK, clock: Clock
) -> None:
    def job(sid: str, cluster: str, mark: str = PROBE_MARK) -> None:
        fake.jobs[sid] = SimpleNamespace(
            submission_id=sid,
            status="FAILED",
            message="",
            metadata={"submarine-broker": mark, "cluster": cluster},
        )

    job("sb-probe-r1-old", "r1")
    job("sb-probe-r2-old", "r2")  # another cluster's (another broker's config of the same head)
    job("sb-u1", "r1", mark="1")  # an attempt
    health(adapter)
    clock.now += 6
    health(adapter)
    assert sorted(fake.jobs) == ["sb-probe-r2-old", "sb-u1"]
