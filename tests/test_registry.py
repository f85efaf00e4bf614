"""Cluster conditions in the registry: health checks with backoff, first failure time, flags, replace."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest

import broker.registry as registry_module
from broker.registry import MAX_BACKOFF, ClusterRegistry, ClusterState
from clusters.base import Capability, ClusterAdapter, Handle, Health, Observation, ReplicaLog
from clusters.config import ClusterConfig
from runtimes.plan import LaunchPlan, Resources, StaticAddressing

FULL = Resources(cpu=8.0, memory=16 * 2**30, gpu=1)
HALF = Resources(cpu=4.0, memory=8 * 2**30, gpu=1)


class ControlledConfig(ClusterConfig):
    kind: Literal["controlled"] = "controlled"


class ControlledAdapter(ClusterAdapter):
    """Answers health checks with whatever the test put in ``answer`` (an exception is raised)."""

    kind = "controlled"
    config_model = ControlledConfig
    capabilities = Capability.GPU

    def __init__(self, config: ClusterConfig, *, data_dir: str) -> None:
        super().__init__(config, data_dir=data_dir)
        self.answer: Health | Exception = Health(reachable=True, total=FULL, free=HALF, running=2)
        self.calls = 0
        self.hang = False
        self.closed = False

    async def health(self) -> Health:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def addressing(self, uid: str) -> StaticAddressing:
        return StaticAddressing(lambda _role, _index: "127.0.0.1", lambda: 1)

    async def submit(self, plan: LaunchPlan) -> Handle:
        return Handle(plan.uid)

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Observation]:
        return {}

    async def cancel(self, handle: Handle) -> None:
        return None

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        return []

    async def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(registry_module, "now", fake)
    monkeypatch.setattr(registry_module, "adapter_class", lambda kind: ControlledAdapter)
    return fake


def make(tmp_path, **settings) -> tuple[ClusterRegistry, ClusterState, ControlledAdapter]:
    registry = ClusterRegistry(str(tmp_path), health_interval=2.0)
    cluster = registry.add(ControlledConfig(name="c1", labels={"zone": "a"}), source="/x/c1.yaml")
    adapter = cluster.adapter
    assert isinstance(adapter, ControlledAdapter)
    for key, value in settings.items():
        setattr(adapter, key, value)
    return registry, cluster, adapter


def run(coro):
    return asyncio.run(coro)


def test_a_cluster_is_unknown_until_checked_then_ready_with_capacity(clock: Clock, tmp_path) -> None:
    registry, cluster, _ = make(tmp_path)
    assert (cluster.state, cluster.ready, cluster.reachable) == ("Unknown", False, None)
    assert not cluster.view().ready
    assert run(registry.check(cluster))
    assert (cluster.state, cluster.ready, cluster.reachable) == ("Ready", True, True)
    assert (cluster.total, cluster.free, cluster.running) == (FULL, HALF, 2)
    assert cluster.last_check == clock.at and cluster.next_check == clock.at + timedelta(seconds=2)
    view = cluster.view()
    assert (
        view.ready and view.state == "Ready" and view.capabilities == frozenset({"gpu"}) and view.running == 2
    )


def test_one_missed_check_stops_placement_at_once_and_keeps_the_first_failure_time(
    clock: Clock, tmp_path
) -> None:
    registry, cluster, adapter = make(tmp_path)
    run(registry.check(cluster))
    adapter.answer = Health(reachable=False, message="connection refused")
    clock.advance(2)
    first = clock.at
    run(registry.check(cluster))
    assert (cluster.state, cluster.ready, cluster.reachable) == ("Unreachable", False, False)
    assert cluster.unreachable_since == first and cluster.failed_checks == 1
    assert cluster.message == "connection refused"
    view = cluster.view()
    assert not view.ready and view.message == "connection refused"
    assert cluster.total == FULL  # the last known capacity stays on show

    delays = []
    for failures in range(2, 10):
        clock.at = cluster.next_check
        adapter.answer = Health(reachable=False, message=f"refused #{failures}")
        assert run(registry.check(cluster))
        delays.append((cluster.next_check - clock.at).total_seconds())
        assert cluster.failed_checks == failures and cluster.unreachable_since == first
        assert cluster.message == f"refused #{failures}"
    assert delays == [4, 8, 16, 32, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]


def test_a_check_that_is_not_due_is_skipped_unless_forced(clock: Clock, tmp_path) -> None:
    registry, cluster, adapter = make(tmp_path)
    adapter.answer = Health(reachable=False, message="down")
    assert run(registry.check(cluster))
    assert not run(registry.check(cluster)) and adapter.calls == 1  # the retry is one interval away
    clock.advance(2)
    assert run(registry.check(cluster))  # second failure: next in 4 s
    clock.advance(1)
    assert not run(registry.check(cluster)) and adapter.calls == 2
    run(registry.check_all())
    assert adapter.calls == 2
    assert run(registry.check(cluster, force=True)) and adapter.calls == 3  # third failure: next in 8 s
    clock.advance(6.9)  # a check may run half an interval early (timer jitter), not more
    assert not registry.due(cluster)
    clock.advance(0.1)
    assert registry.due(cluster)


def test_success_resets_the_backoff_and_clears_the_failure(clock: Clock, tmp_path) -> None:
    registry, cluster, adapter = make(tmp_path)
    adapter.answer = Health(reachable=False, message="down")
    for _ in range(4):
        run(registry.check(cluster, force=True))
        clock.advance(1)
    assert cluster.failed_checks == 4
    adapter.answer = Health(reachable=True, total=FULL, free=FULL, running=0, message="fine")
    run(registry.check(cluster, force=True))
    assert cluster.state == "Ready" and cluster.ready
    assert (cluster.failed_checks, cluster.unreachable_since, cluster.message) == (0, None, "fine")
    assert cluster.next_check == clock.at + timedelta(seconds=2) and cluster.free == FULL


def test_an_adapter_that_raises_or_hangs_counts_as_a_failure(clock: Clock, tmp_path) -> None:
    registry, cluster, adapter = make(tmp_path)
    adapter.answer = RuntimeError("boom")
    run(registry.check(cluster))
    assert cluster.state == "Unreachable" and "RuntimeError: boom" in cluster.message
    registry.health_timeout = 0.05
    adapter.hang = True
    run(registry.check(cluster, force=True))
    assert cluster.failed_checks == 2 and "no answer within 0.05s" in cluster.message


def test_condition_precedence_and_messages(clock: Clock, tmp_path) -> None:
    registry, cluster, adapter = make(tmp_path)
    run(registry.check(cluster))
    cluster.cordoned = True
    assert (cluster.state, cluster.ready) == ("Cordoned", False)
    assert "cordoned" in cluster.view().message
    cluster.draining = True
    assert cluster.state == "Draining" and "drained" in cluster.view().message
    cluster.cordoned = cluster.draining = False
    cluster.removed = True
    assert cluster.state == "Draining" and "file was removed" in cluster.condition_message
    assert not cluster.ready
    cluster.removed = False
    cluster.cordoned = True
    adapter.answer = Health(reachable=False, message="gone")
    run(registry.check(cluster, force=True))
    assert cluster.state == "Unreachable"  # unreachability outranks the admin flags
    adapter.answer = Health(reachable=True, total=FULL, free=FULL)
    run(registry.check(cluster, force=True))
    assert cluster.state == "Cordoned"
    cluster.cordoned = False
    assert cluster.state == "Ready" and cluster.ready and cluster.view().message == ""


def test_replace_keeps_the_condition_and_retires_the_old_adapter(clock: Clock, tmp_path) -> None:
    registry, cluster, old = make(tmp_path)
    old.answer = Health(reachable=False, message="down")
    run(registry.check(cluster))
    since = cluster.unreachable_since
    cluster.cordoned, cluster.removed = True, True
    same = registry.replace(ControlledConfig(name="c1", labels={"zone": "b"}))
    assert same is cluster and registry.get("c1") is cluster
    assert cluster.adapter is not old and cluster.config.labels == {"zone": "b"}
    assert cluster.cordoned and not cluster.removed and cluster.unreachable_since == since
    assert cluster.source == "/x/c1.yaml"
    assert not old.closed
    run(registry.close_retired())
    assert old.closed

    new = cluster.adapter
    assert registry.remove("c1") is cluster and "c1" not in registry and registry.all() == []
    run(registry.close_retired())
    assert new.closed


def test_a_check_answered_by_a_replaced_adapter_is_ignored(clock: Clock, tmp_path) -> None:
    registry, cluster, old = make(tmp_path)
    old.answer = Health(reachable=False, message="stale answer")

    async def scenario() -> bool:
        gate = asyncio.Event()
        original = old.health

        async def slow() -> Health:
            await gate.wait()
            return await original()

        old.health = slow  # type: ignore[method-assign]
        pending = asyncio.create_task(registry.check(cluster))
        await asyncio.sleep(0)
        registry.replace(ControlledConfig(name="c1"))
        gate.set()
        return await pending

    assert run(scenario()) is False
    assert cluster.reachable is None and cluster.failed_checks == 0


def test_a_cluster_that_answers_but_cannot_run_work_is_not_ready(
    clock: Clock, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    from policies.placement import PlacementRequest, ready

    registry, cluster, adapter = make(tmp_path)
    why = "entrypoint_python /usr/bin/python3 on cluster c1 cannot import ray: ModuleNotFoundError: No module named 'ray'"
    adapter.answer = Health(reachable=True, total=FULL, free=FULL, message=why, usable=False)
    caplog.set_level("INFO", logger="broker.registry")
    run(registry.check(cluster))
    assert (cluster.state, cluster.ready, cluster.reachable) == ("NotReady", False, True)
    assert (
        cluster.condition_message == why and cluster.failed_checks == 0 and cluster.unreachable_since is None
    )
    assert cluster.next_check == clock.at + timedelta(seconds=2)  # no backoff: it answers
    view = cluster.view()
    assert (view.ready, view.state, view.message) == (False, "NotReady", why)
    request = PlacementRequest(
        workload_kind="experiment", namespace="default", total=HALF, largest_replica=HALF
    )
    assert ready(request, view, None) == f"cluster is NotReady: {why}"
    cluster.cordoned = True
    assert cluster.state == "NotReady"  # like unreachability, it outranks the admin flags
    cluster.cordoned = False
    clock.advance(2)
    run(registry.check(cluster))
    assert caplog.text.count(f"cluster c1 takes no new work: {why}") == 1  # logged once, not per check
    adapter.answer = Health(reachable=True, total=FULL, free=FULL)
    clock.advance(2)
    run(registry.check(cluster))
    assert (cluster.state, cluster.ready) == (
        "Ready",
        True,
    ) and "cluster c1 can take new work again" in caplog.text
