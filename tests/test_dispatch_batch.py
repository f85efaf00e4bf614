"""Dispatch in batches, as users see it: what fits goes, the rest waits with its reason, one bad
submit spoils nothing else, and dispatchers sharing a database submit each workload once.

Everything runs in-process: the broker's context with a scripted cluster kind (below), requests
through the REST app, and ``Dispatcher.run_once`` driven directly; nothing waits on a clock
(``asyncio.sleep(0)`` only lets other tasks run).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import pytest
from sqlalchemy import text

import broker.registry as registry_module
import broker.scheduler.dispatch as dispatch_module
from broker.experiments.views import experiment_json
from broker.planner import Planner, placement_request
from broker.registry import ClusterRegistry
from broker.scheduler.dispatch import Dispatcher
from broker.workloads.model import Workload
from clusters.base import Capability, ClusterAdapter, Handle, Health, Observation, Phase, ReplicaLog
from clusters.config import ClusterConfig
from clusters.errors import ClusterError, SubmitRejected
from policies.authorizer import Authorizer
from policies.lines import parse_csv, parse_lines
from policies.placement import default_engine
from runtimes.plan import ZERO, LaunchPlan, Resources, StaticAddressing
from runtimes.spec import ExperimentSpec
from tests.inprocess import InProcessBroker
from tests.support import REPO

GI = 2**30
KIND = {"script": "tests.test_dispatch_batch:ScriptedAdapter"}


class ScriptedConfig(ClusterConfig):
    kind: Literal["script"] = "script"  # type: ignore[assignment]
    cpu: float = 64.0


class ScriptedAdapter(ClusterAdapter):
    """A cluster that starts nothing: it remembers what it was asked to start.

    ``fail`` maps a workload name to the error its submit raises; ``hold``, when set, keeps every
    submit waiting until it is set (a submit in flight); ``log`` is shared by every adapter the
    test hands it to (two brokers' adapters for one cluster).
    """

    kind = "script"
    config_model = ScriptedConfig
    capabilities = Capability.MULTI_NODE | Capability.IMAGES

    def __init__(self, config: ClusterConfig, *, data_dir: str) -> None:
        super().__init__(config, data_dir=data_dir)
        self.fail: dict[str, Exception] = {}
        self.hold: asyncio.Event | None = None
        self.log: list[tuple[str, str]] = []
        self.started: dict[str, Handle] = {}
        self.in_flight = self.most_in_flight = 0

    async def health(self) -> Health:
        assert isinstance(self.config, ScriptedConfig)
        size = Resources(cpu=self.config.cpu, memory=1024 * GI)
        return Health(reachable=True, total=size, free=size)

    def addressing(self, uid: str) -> StaticAddressing:
        return StaticAddressing(lambda role, index: f"{role}-{index}", lambda: 7000)

    async def submit(self, plan: LaunchPlan) -> Handle:
        self.log.append((plan.name, plan.uid))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)  # let other submits and passes interleave
            if plan.name in self.fail:
                raise self.fail[plan.name]
            handle = self.started.setdefault(plan.uid, Handle(plan.uid))
            if self.hold is not None:
                await self.hold.wait()
            return handle
        finally:
            self.in_flight -= 1

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Observation]:
        return {h.uid: Observation(h.uid, Phase.PENDING) for h in handles}

    async def cancel(self, handle: Handle) -> None:
        self.started.pop(handle.uid, None)

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        return []


def spec(name: str, cpu: float = 1.0) -> dict[str, Any]:
    return {
        "meta": {"name": name, "framework": "python", "cmd": "python -c pass"},
        "spec": {"Worker": {"replicas": 1, "resources": f"cpu={cpu:g},memory=1Gi"}},
    }


def make(root: Path, clusters: dict[str, dict[str, Any]], **settings: Any) -> InProcessBroker:
    return InProcessBroker(
        root,
        clusters={name: {"kind": "script", **body} for name, body in clusters.items()},
        extra_kinds=KIND,
        **settings,
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[InProcessBroker]:
    made = make(tmp_path, {"small": {"cpu": 4}})
    yield made
    made.close()


def submit(broker: InProcessBroker, name: str, cpu: float = 1.0) -> str:
    answer = broker.post("/experiment", json=spec(name, cpu))
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]["experimentId"]


def shown(broker: InProcessBroker, exp_id: str) -> dict[str, Any]:
    return broker.get(f"/experiment/{exp_id}").json()["result"]


def reasons(broker: InProcessBroker, exp_id: str) -> list[str]:
    return [e["reason"] for e in broker.get(f"/experiment/{exp_id}/events").json()["result"]]


def dispatcher(broker: InProcessBroker) -> Dispatcher:
    return broker.context.loops.dispatcher


def adapter(broker: InProcessBroker, cluster: str) -> ScriptedAdapter:
    state = broker.context.registry.get(cluster)
    assert state is not None and isinstance(state.adapter, ScriptedAdapter)
    return state.adapter


def test_a_batch_larger_than_the_cluster_places_what_fits_oldest_first(broker: InProcessBroker) -> None:
    ids = [submit(broker, f"e{i}") for i in range(7)]

    assert broker.run(dispatcher(broker).run_once()) == 4

    states = [shown(broker, i) for i in ids]
    assert [s["status"] for s in states] == ["Created"] * 4 + ["Accepted"] * 3
    assert sorted(name for name, _ in adapter(broker, "small").log) == ["e0", "e1", "e2", "e3"]
    for waiting in states[4:]:
        assert waiting["cluster"] is None
        message = waiting["statusMessage"]
        assert message.startswith("no cluster fits now (small: needs cpu=1") and "free now: cpu=0" in message
        assert f"waiting: {message}" in reasons(broker, waiting["experimentId"])
    for placed in states[:4]:
        assert reasons(broker, placed["experimentId"])[-2:] == ["placed on small", "submitted to small"]

    # Another pass changes nothing for the waiting ones: no new event, nothing submitted.
    before = {i: reasons(broker, i) for i in ids[4:]}
    assert broker.run(dispatcher(broker).run_once()) == 0
    assert {i: reasons(broker, i) for i in ids[4:]} == before
    assert len(adapter(broker, "small").log) == 4


def test_a_batch_is_spread_over_clusters_without_overcommitting_any(tmp_path: Path) -> None:
    broker = make(tmp_path, {"one": {"cpu": 3}, "two": {"cpu": 2}})
    try:
        ids = [submit(broker, f"e{i}") for i in range(6)]
        assert broker.run(dispatcher(broker).run_once()) == 5
        states = [shown(broker, i) for i in ids]
        placed = [s["cluster"] for s in states if s["status"] == "Created"]
        assert sorted(placed) == ["one", "one", "one", "two", "two"]
        assert states[5]["status"] == "Accepted" and states[5]["statusMessage"].startswith(
            "no cluster fits now (one: needs cpu=1"
        )
    finally:
        broker.close()


def test_submits_to_one_cluster_run_together_up_to_the_bound(tmp_path: Path) -> None:
    broker = make(tmp_path, {"main": {"cpu": 64}})
    try:
        ids = [submit(broker, f"e{i}") for i in range(dispatch_module.SUBMITS_PER_CLUSTER * 2 + 3)]
        assert broker.run(dispatcher(broker).run_once()) == len(ids)
        cluster = adapter(broker, "main")
        assert cluster.most_in_flight == dispatch_module.SUBMITS_PER_CLUSTER
        assert sorted(name for name, _ in cluster.log) == sorted(f"e{i}" for i in range(len(ids)))
    finally:
        broker.close()


def test_a_failing_submit_in_a_batch_leaves_the_others_alone(tmp_path: Path) -> None:
    broker = make(tmp_path, {"main": {"cpu": 64}})
    try:
        cluster = adapter(broker, "main")
        cluster.fail["refused"] = SubmitRejected("quota exceeded in namespace default")
        cluster.fail["flaky"] = ClusterError("connection reset while submitting")
        cluster.fail["buggy"] = RuntimeError("adapter bug")
        ids = {name: submit(broker, name) for name in ("a", "refused", "b", "flaky", "buggy", "c")}

        assert broker.run(dispatcher(broker).run_once()) == 3

        state = {name: shown(broker, i) for name, i in ids.items()}
        assert [state[n]["status"] for n in ("a", "b", "c")] == ["Created"] * 3
        # Refused: free for another cluster (or this one again, after a back-off).
        refused = state["refused"]
        assert refused["status"] == "Accepted" and refused["cluster"] is None
        assert refused["statusMessage"] == (
            "submit to main failed, retrying in 2s: quota exceeded in namespace default"
        )
        assert "submit to main failed (try 1): quota exceeded in namespace default" in reasons(
            broker, ids["refused"]
        )
        # Failed otherwise: it may have reached the cluster, so it stays chosen for the same attempt.
        flaky = state["flaky"]
        assert flaky["status"] == "Accepted" and flaky["cluster"] == "main"
        assert flaky["statusMessage"].startswith("submit to main failed, retrying in 2s: connection reset")
        # An adapter bug: still claimed, tried again once the claim lapses.
        assert state["buggy"]["status"] == "Accepted" and state["buggy"]["cluster"] == "main"
    finally:
        broker.close()


def test_a_slow_cluster_does_not_hold_back_what_the_others_started(tmp_path: Path) -> None:
    broker = make(tmp_path, {"slow": {"cpu": 2}, "quick": {"cpu": 2}})
    try:
        adapter(broker, "slow").hold = hold = asyncio.Event()  # its submits answer when the test says
        ids = [submit(broker, f"e{i}") for i in range(4)]
        db = broker.context.db

        def statuses(session: Any) -> dict[str, tuple[str, str]]:
            rows = session.execute(text("SELECT id, status, cluster FROM experiment")).all()
            return {row[0]: (row[1], row[2] or "") for row in rows}

        async def quick_first() -> int:
            dispatching = asyncio.ensure_future(dispatcher(broker).run_once())
            seen: list[tuple[str, str]] = []
            for _ in range(5000):  # a bound on looks, not on time: the slow submits never answer
                seen = sorted((await db.run(statuses)).values())
                if seen.count(("Created", "quick")) == 2:
                    break
                await asyncio.sleep(0)
            assert seen == [("Accepted", "slow")] * 2 + [("Created", "quick")] * 2
            hold.set()
            return await dispatching

        assert broker.run(quick_first()) == 4
        assert [shown(broker, i)["status"] for i in ids] == ["Created"] * 4
    finally:
        broker.close()


def test_a_row_read_in_the_same_commit_as_its_claim_is_served_as_claimed(broker: InProcessBroker) -> None:
    """The SQLite writer runs queued units in one session: a GET that read the row just before the
    claim hands its copy to the API after the commit, which must show the claim (and be readable)."""
    exp = submit(broker, "e0")
    db = broker.context.db
    batch = dispatcher(broker)._prepare(db.call(dispatch_module._pending))

    def read_then_claim(session: Any) -> Any:
        row = session.get(Workload, exp)
        assert dispatch_module._claim(batch, 5)(session)[0]
        return row

    row = db.call(read_then_claim)  # the session is closed: what the API would serialize
    shown = experiment_json(row)
    assert (shown["status"], shown["cluster"], shown["statusMessage"]) == (
        "Accepted",
        "small",
        "placed on small",
    )


def test_a_backlog_larger_than_a_batch_drains_in_one_wake(broker: InProcessBroker, monkeypatch) -> None:
    monkeypatch.setattr(dispatch_module, "BATCH", 2)
    ids = [submit(broker, f"e{i}", cpu=0.5) for i in range(7)]
    loops = broker.context.loops
    loops.lease.leader = True

    broker.run(loops._dispatch())  # one timer tick

    assert [shown(broker, i)["status"] for i in ids] == ["Created"] * 7


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_dispatchers_on_one_database_submit_each_workload_once(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}" if database == "sqlite" else request.getfixturevalue("pg_url")
    a = make(tmp_path / "a", {"main": {"cpu": 64}}, database_url=url)
    b = make(tmp_path / "b", {"main": {"cpu": 64}}, database_url=url)
    try:
        log: list[tuple[str, str]] = []
        adapter(a, "main").log = adapter(b, "main").log = log  # one cluster, seen by both brokers
        # Two brokers share PostgreSQL; SQLite has one writer process, so there the two
        # dispatchers (each with its own clusters and placement) share its Database.
        context = b.context
        other = Dispatcher(
            a.context.db if database == "sqlite" else context.db,
            context.registry,
            context.planner,
            backoff_max=1,
            extra_env={},
        )
        ids = [submit(a if i % 2 else b, f"e{i}") for i in range(12)]

        async def race() -> None:
            for _ in range(3):
                await asyncio.gather(dispatcher(a).run_once(), other.run_once())

        a.run(race())
        assert [shown(a, i)["status"] for i in ids] == ["Created"] * 12
        assert sorted(name for name, _ in log) == sorted(f"e{i}" for i in range(12))

        # A submit in flight (claimed, not yet recorded) is not taken up by the other dispatcher.
        late = submit(a, "late")
        adapter(a, "main").hold = hold = asyncio.Event()

        async def in_flight() -> int:
            first = asyncio.ensure_future(dispatcher(a).run_once())
            while not any(name == "late" for name, _ in log):
                await asyncio.sleep(0)
            assert await other.run_once() == 0
            hold.set()
            return await first

        assert a.run(in_flight()) == 1
        assert shown(a, late)["status"] == "Created"
        assert [name for name, _ in log].count("late") == 1
    finally:
        a.close()
        b.close()


def test_an_attempt_submitted_but_not_recorded_is_submitted_again_once(tmp_path: Path) -> None:
    """A broker that dies between the submit and its record: the next dispatcher finds the claimed
    row, submits the same attempt to the same cluster (idempotent there) and records it."""
    broker = make(tmp_path, {"main": {"cpu": 64}})
    try:
        exp = submit(broker, "job")
        cluster = adapter(broker, "main")
        cluster.hold = asyncio.Event()  # the submit reaches the cluster, then the broker dies
        dying = Dispatcher(
            broker.context.db,
            broker.context.registry,
            broker.context.planner,
            backoff_max=1,
            extra_env={},
            claim_hold=0,  # its claim lapses at once: as if long ago
        )

        async def crash() -> None:
            task = asyncio.ensure_future(dying.run_once())
            while not cluster.started:
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        broker.run(crash())
        claimed = shown(broker, exp)
        assert (claimed["status"], claimed["cluster"]) == ("Accepted", "main")

        cluster.hold = None
        assert broker.run(dispatcher(broker).run_once()) == 1
        done = shown(broker, exp)
        assert (done["status"], done["cluster"], done["uid"], done["attempt"]) == (
            "Created",
            "main",
            claimed["uid"],
            1,
        )
        assert list(cluster.started) == [claimed["uid"]]  # one attempt on the cluster
        assert reasons(broker, exp).count("placed on main") == 1
    finally:
        broker.close()


# ------------------------------------------------------------------ the snapshot's equivalence
def random_spec(rng: random.Random, index: int, clusters: list[str]) -> ExperimentSpec:
    roles = {
        role: {
            "replicas": rng.randint(1, 3),
            "resources": f"cpu={rng.choice([0.1, 0.25, 0.5, 1, 2, 3])},memory={rng.choice([256, 1024, 3000])}Mi"
            + (",gpu=1" if rng.random() < 0.15 else ""),
        }
        for role in rng.sample(["Worker", "Ps", "Evaluator"], rng.randint(1, 2))
    }
    placement: dict[str, Any] = {}
    if rng.random() < 0.2:
        placement["preferredClusters"] = rng.sample(clusters, 2)
    if rng.random() < 0.15:
        placement["clusterSelector"] = {"site": rng.choice(["east", "west"])}
    if rng.random() < 0.05:
        placement["cluster"] = rng.choice(clusters)
    return ExperimentSpec.model_validate(
        {
            "meta": {
                "name": f"r{index}",
                "framework": "tensorflow",
                "cmd": "python t.py",
                "placement": placement,
            },
            "spec": roles,
        }
    )


@pytest.mark.parametrize("seed", range(5))
def test_a_snapshot_places_a_batch_as_one_decision_after_another_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """What a pass decides against one snapshot equals what the broker decided one workload at a
    time, each submit reserving its resources on the chosen cluster (the dispatch before batches)."""
    rng = random.Random(seed)
    monkeypatch.setattr(registry_module, "adapter_class", lambda kind: ScriptedAdapter)
    registry = ClusterRegistry(str(tmp_path))
    for i in range(5):
        name = f"c{i}"
        state = registry.add(
            ScriptedConfig(
                name=name, labels={"site": "east" if i % 2 else "west"}, weight=rng.choice([0.5, 1, 2])
            )
        )
        total = Resources(
            cpu=rng.choice([4, 8, 16]), memory=rng.choice([8, 32]) * GI, gpu=rng.choice([0, 0, 2])
        )
        free = Resources(cpu=total.cpu * rng.random(), memory=int(total.memory * rng.random()), gpu=total.gpu)
        registry.record(state, Health(reachable=i != 3, total=total, free=free, running=rng.randint(0, 5)))
    lines = parse_csv((REPO / "broker" / "defaults" / "policy.csv").read_text())
    lines += parse_lines(
        ["g, bob, member, vision", "p2, vision, cluster/c2, 3", "p, bob, vision, cluster/c4/*, place, deny"]
    )
    planner = Planner(registry, SimpleNamespace(authorizer=Authorizer(lines, 7)), default_engine())  # type: ignore[arg-type]
    names = [c.name for c in registry.all()]
    work = [
        (random_spec(rng, i, names), rng.choice(["vision", "default"]), rng.choice(["bob", "admin"]))
        for i in range(60)
    ]
    refused = [frozenset(rng.sample(names, 1)) if rng.random() < 0.1 else frozenset() for _ in work]

    one_by_one = []
    for (spec_, namespace, user), refused_by in zip(work, refused, strict=True):
        decision = planner.decide(spec_, namespace, user, refused_by)
        one_by_one.append(decision.to_json())
        if decision.chosen:
            chosen = registry.get(decision.chosen)
            assert chosen is not None
            chosen.reserved = chosen.reserved + placement_request(spec_, namespace, user).total
    for state in registry.all():
        state.reserved = ZERO

    snapshot = planner.snapshot()
    batch = []
    for (spec_, namespace, user), refused_by in zip(work, refused, strict=True):
        decision = snapshot.decide(spec_, namespace, user, refused_by)
        batch.append(decision.to_json())
        if decision.chosen:
            snapshot.take(decision.chosen, placement_request(spec_, namespace, user).total)

    assert batch == one_by_one
    assert sum(1 for d in batch if d["chosen"]) >= 5 and sum(1 for d in batch if not d["chosen"]) >= 5
    assert all(state.reserved == ZERO for state in registry.all())  # a snapshot promises nothing itself
