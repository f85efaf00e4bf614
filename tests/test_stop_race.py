"""A stop races the monitor: what the cluster reports while the attempt dies must not decide the end.

Stopping cancels the attempt on its cluster, and a monitor tick can land while that happens: a
Jupyter server exits 0 on SIGTERM (a Succeeded observation), a replica dies of the signal (a
Failed one, ``replica worker-0 was killed by SIGTERM``). The adapter here plays that tick from
inside ``cancel``, the widest window there is, so the stop must have written its end (status,
reason and category in one transaction) before it cancels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Literal

import pytest

import broker.registry as registry_module
from broker.notebooks.service import stop_notebook
from broker.notebooks.views import notebook_json
from broker.registry import ClusterRegistry
from broker.scheduler.monitor import apply_observation
from broker.state import FailureCategory, Status, now
from broker.store.database import Database
from broker.store.migrate import upgrade
from broker.workloads.model import Event, Workload
from broker.workloads.service import end_then_cancel
from clusters.base import ClusterAdapter, Handle, Health, Observation, Phase, ReplicaLog
from clusters.config import ClusterConfig
from clusters.errors import ClusterUnreachable
from runtimes.plan import LaunchPlan, Resources, StaticAddressing


class DyingConfig(ClusterConfig):
    kind: Literal["dying"] = "dying"


class DyingAdapter(ClusterAdapter):
    """``cancel`` lets the monitor see the attempt end as ``seen`` says before it returns."""

    kind = "dying"
    config_model = DyingConfig
    db: Database
    seen: Phase = Phase.SUCCEEDED
    refuse = False

    async def health(self) -> Health:
        return Health(reachable=True, total=Resources(cpu=4.0, memory=2**33), free=Resources(cpu=4.0))

    def addressing(self, uid: str) -> StaticAddressing:
        return StaticAddressing(lambda _role, _index: "127.0.0.1", lambda: 1)

    async def submit(self, plan: LaunchPlan) -> Handle:
        return Handle(plan.uid)

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Observation]:
        return {}

    async def cancel(self, handle: Handle) -> None:
        if self.refuse:
            raise ClusterUnreachable("connection refused")
        message = "all replicas finished" if self.seen is Phase.SUCCEEDED else "replica worker-0 was killed"
        category = None if self.seen is Phase.SUCCEEDED else "killed"
        seen = Observation(handle.uid, self.seen, message, category)
        rows = await self.db.run(lambda s: s.query(Workload).filter(Workload.uid == handle.uid).all())
        for row in rows:  # the monitor's tick, between the signal and the stop's own write
            await self.db.run(lambda s, r=row: apply_observation(s, r.id, r.uid, seen))

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        return []


@pytest.fixture
def world(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Database, ClusterRegistry]]:
    db = Database(f"sqlite:///{tmp_path / 'broker.db'}")
    upgrade(db.engine)
    monkeypatch.setattr(registry_module, "adapter_class", lambda kind: DyingAdapter)
    registry = ClusterRegistry(str(tmp_path))
    cluster = registry.add(DyingConfig(name="c1"))
    assert isinstance(cluster.adapter, DyingAdapter)
    cluster.adapter.db = db
    yield db, registry
    db.dispose()


def running(db: Database, ident: str, kind: str) -> Workload:
    stamp = now()
    row = Workload(
        id=ident,
        uid=f"uid-{ident}",
        attempt=1,
        name="nb",
        namespace="vision",
        owner="alice",
        framework=kind,
        kind=kind,
        status=Status.RUNNING.value,
        spec={"meta": {"name": "nb"}},
        cluster="c1",
        handle={"uid": f"uid-{ident}", "state": {}},
        access={"uid": f"uid-{ident}", "url": "http://127.0.0.1:1", "readyAt": stamp.isoformat()},
        accepted_at=stamp,
        running_at=stamp,
        updated_at=stamp,
    )
    db.call(lambda s: s.add(row))
    return row


def ended(db: Database, ident: str) -> tuple[Workload, list[tuple[str | None, str]]]:
    row = db.call(lambda s: s.get(Workload, ident))
    events = db.call(
        lambda s: [(e.to_status, e.reason) for e in s.query(Event).filter(Event.workload_id == ident)]
    )
    return row, events


def test_an_idle_notebook_stopped_while_jupyter_exits_0_reads_stopped_killed(world) -> None:
    db, registry = world
    row = running(db, "notebook_1_0001", "notebook")
    reason = "stopped after 5s without activity (idle timeout 4s)"

    asyncio.run(stop_notebook(db, registry, row, reason))

    stored, events = ended(db, row.id)
    shown = notebook_json(stored)
    assert (shown["status"], shown["failureCategory"], shown["reason"]) == ("stopped", "killed", reason)
    assert [to for to, _ in events if to] == ["Failed"]  # the monitor's Succeeded never landed


def test_a_server_that_never_answered_is_failed_not_stopped(world) -> None:
    db, registry = world
    row = running(db, "notebook_1_0002", "notebook")

    asyncio.run(stop_notebook(db, registry, row, "no answer", category=FailureCategory.TIMEOUT))

    shown = notebook_json(ended(db, row.id)[0])
    assert (shown["status"], shown["failureCategory"]) == ("failed", "timeout")


def test_a_stopped_experiment_keeps_the_stop_reason_when_its_replica_dies_of_the_signal(world) -> None:
    db, registry = world
    registry.get("c1").adapter.seen = Phase.FAILED  # type: ignore[union-attr]
    row = running(db, "experiment-1-0001", "experiment")

    asyncio.run(
        end_then_cancel(
            db, registry, row.id, "stopped by alice", category=FailureCategory.KILLED, refused="ended"
        )
    )

    stored, events = ended(db, row.id)
    assert (stored.status, stored.reason, stored.failure_category) == ("Failed", "stopped by alice", "killed")
    assert [to for to, _ in events if to] == ["Failed"]


def test_a_cancel_that_fails_is_an_event_after_the_stop(world) -> None:
    db, registry = world
    registry.get("c1").adapter.refuse = True  # type: ignore[union-attr]
    row = running(db, "experiment-1-0002", "experiment")

    asyncio.run(
        end_then_cancel(
            db, registry, row.id, "stopped by alice", category=FailureCategory.KILLED, refused="ended"
        )
    )

    stored, events = ended(db, row.id)
    assert (stored.status, stored.reason) == ("Failed", "stopped by alice")
    assert events[-1][0] is None and "could not stop it on cluster c1" in events[-1][1]
