"""A cluster kind that runs nothing: it answers the adapter verbs from a script the test writes.

Registered through broker.yaml ``extra_kinds`` (:data:`EXTRA_KINDS`); a cluster file needs only
``kind: scripted`` (``capacity`` sets its size, default 16 CPUs and 64 GiB). What the cluster
holds is a :class:`ScriptedCluster`, found with :func:`scripted` by the broker's data directory
and the cluster's name; it outlives the adapter, as a real cluster outlives a broker, so a broker
built again on the same directory finds its work there.

A submitted attempt is pending until the test moves it (:meth:`ScriptedCluster.run`,
:meth:`~ScriptedCluster.succeed`, :meth:`~ScriptedCluster.fail`, :meth:`~ScriptedCluster.lose`);
``poll`` reports what the script says, ``cancel`` ends it killed, ``logs`` returns the lines the
test gave (:meth:`~ScriptedCluster.say`). ``reachable = False`` makes health say so and every other
verb raise :class:`ClusterUnreachable`; ``refuse`` makes submit raise :class:`SubmitRejected`;
``on_submit`` runs what happens while a submit is in flight.

Notebooks: a running attempt's endpoint is ``http://<host>:<port>`` of its replica, and
:func:`jupyter_transport` answers Jupyter's ``api/status`` there (with the attempt's token) while
the attempt runs and ``answers`` is True, with its ``last_activity``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import httpx

from clusters.base import Capability, ClusterAdapter, Handle, Health, Observation, Phase, ReplicaLog
from clusters.config import ClusterConfig
from clusters.errors import ClusterUnreachable, SubmitRejected
from runtimes.plan import LaunchPlan, Resources, StaticAddressing

EXTRA_KINDS = {"scripted": "tests.scripted_cluster:ScriptedAdapter"}
DEFAULT_TOTAL = Resources(cpu=16.0, memory=64 * 2**30, gpu=0)


class ScriptedClusterConfig(ClusterConfig):
    kind: Literal["scripted"] = "scripted"  # type: ignore[assignment]


@dataclass
class Attempt:
    """One attempt the broker submitted, and what the script says about it."""

    plan: LaunchPlan
    phase: Phase = Phase.PENDING
    message: str = ""
    category: str | None = None
    cancelled: bool = False
    #: Log lines per replica name.
    lines: dict[str, list[str]] = field(default_factory=dict)
    #: Whether its Jupyter server answers (notebooks), once the attempt runs.
    answers: bool = True
    last_activity: str | None = None

    @property
    def uid(self) -> str:
        return self.plan.uid

    @property
    def holds(self) -> bool:
        """It takes capacity: submitted and not ended."""
        return self.phase in (Phase.PENDING, Phase.RUNNING)


@dataclass
class ScriptedCluster:
    """What one scripted cluster holds, and the faults the test switches on."""

    name: str
    total: Resources = DEFAULT_TOTAL
    reachable: bool = True
    #: When set, submit refuses every plan with this reason.
    refuse: str | None = None
    attempts: dict[str, Attempt] = field(default_factory=dict)
    #: Working-directory keys the broker asked to free (a deleted notebook's files).
    released: list[str] = field(default_factory=list)
    #: How many times submit was called (retries of one uid included).
    submits: int = 0
    #: Called with each plan the cluster took, before submit answers: what happens meanwhile
    #: (a user's delete, the broker dying).
    on_submit: Callable[[LaunchPlan], Awaitable[None]] | None = None

    def of(self, workload_id: str) -> Attempt:
        """The workload's latest attempt here."""
        found = [a for a in self.attempts.values() if a.plan.workload_id == workload_id]
        if not found:
            raise KeyError(f"cluster {self.name} holds no attempt of {workload_id}")
        return found[-1]

    def _set(self, workload_id: str, phase: Phase, message: str = "", category: str | None = None) -> Attempt:
        attempt = self.of(workload_id)
        attempt.phase, attempt.message, attempt.category = phase, message, category
        return attempt

    def run(self, workload_id: str) -> Attempt:
        """Every replica of the workload's latest attempt runs."""
        return self._set(workload_id, Phase.RUNNING)

    def succeed(self, workload_id: str) -> Attempt:
        return self._set(workload_id, Phase.SUCCEEDED, "all replicas finished")

    def fail(self, workload_id: str, exit_code: int = 1) -> Attempt:
        replica = self.of(workload_id).plan.primary.name
        return self._set(
            workload_id, Phase.FAILED, f"replica {replica} exited with code {exit_code}", "exit_code"
        )

    def pending(self, workload_id: str, why: str) -> Attempt:
        """The cluster holds the attempt back, saying why (a queue, an image pull)."""
        return self._set(workload_id, Phase.PENDING, why)

    def lose(self, workload_id: str) -> Attempt:
        """The cluster forgets the attempt (poll says NOT_FOUND)."""
        return self.attempts.pop(self.of(workload_id).uid)

    def say(self, workload_id: str, replica: str, *lines: str) -> None:
        """Append ``lines`` to a replica's log of the workload's latest attempt."""
        self.of(workload_id).lines.setdefault(replica, []).extend(lines)

    def free(self) -> Resources:
        used = Resources(cpu=0.0, memory=0, gpu=0)
        for attempt in self.attempts.values():
            if attempt.holds:
                used = used + attempt.plan.total_resources
        return Resources(
            cpu=max(0.0, self.total.cpu - used.cpu),
            memory=max(0, self.total.memory - used.memory),
            gpu=max(0, self.total.gpu - used.gpu),
        )


_CLUSTERS: dict[tuple[str, str], ScriptedCluster] = {}


def scripted(data_dir: str | Path, name: str) -> ScriptedCluster:
    """The scripted cluster ``name`` of the broker whose data directory is ``data_dir``."""
    key = (str(Path(data_dir).resolve()), name)
    return _CLUSTERS.setdefault(key, ScriptedCluster(name))


def forget(data_dir: str | Path) -> None:
    """Drop every scripted cluster of the broker whose data directory is ``data_dir``."""
    root = str(Path(data_dir).resolve())
    for key in [k for k in _CLUSTERS if k[0] == root]:
        del _CLUSTERS[key]


class ScriptedAdapter(ClusterAdapter):
    """The adapter verbs, answered from the :class:`ScriptedCluster` of its name."""

    kind = "scripted"
    config_model = ScriptedClusterConfig
    capabilities = (
        Capability.GPU
        | Capability.MULTI_NODE
        | Capability.ENDPOINTS
        | Capability.IMAGES
        | Capability.LISTS_WORK
        | Capability.RELEASES_WORKDIRS
    )
    _ports: ClassVar[itertools.count[int]] = itertools.count(20000)

    def __init__(self, config: ClusterConfig, *, data_dir: str) -> None:
        super().__init__(config, data_dir=data_dir)
        self.cluster = scripted(data_dir, config.name)
        override = config.capacity
        self.cluster.total = Resources(
            cpu=override.cpu or DEFAULT_TOTAL.cpu,
            memory=override.memory or DEFAULT_TOTAL.memory,
            gpu=override.gpu if override.gpu is not None else DEFAULT_TOTAL.gpu,
        )

    def _reachable(self) -> ScriptedCluster:
        if not self.cluster.reachable:
            raise ClusterUnreachable(f"cluster {self.name}: connection refused (scripted)")
        return self.cluster

    async def health(self) -> Health:
        cluster = self.cluster
        if not cluster.reachable:
            return Health(reachable=False, message="connection refused (scripted)")
        running = sum(1 for a in cluster.attempts.values() if a.holds)
        return Health(reachable=True, total=cluster.total, free=cluster.free(), running=running)

    def addressing(self, uid: str) -> StaticAddressing:
        return StaticAddressing(
            lambda role, index: f"{uid}-{role.lower()}-{index}.scripted", self._ports.__next__
        )

    async def submit(self, plan: LaunchPlan) -> Handle:
        cluster = self._reachable()
        cluster.submits += 1
        if cluster.refuse:
            raise SubmitRejected(cluster.refuse)
        cluster.attempts.setdefault(plan.uid, Attempt(plan))  # idempotent on the uid
        if cluster.on_submit is not None:
            await cluster.on_submit(plan)
        return Handle(plan.uid, {"cluster": self.name})

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Observation]:
        cluster = self._reachable()
        seen = {}
        for handle in handles:
            attempt = cluster.attempts.get(handle.uid)
            if attempt is None:
                seen[handle.uid] = Observation(handle.uid, Phase.NOT_FOUND)
            else:
                seen[handle.uid] = Observation(handle.uid, attempt.phase, attempt.message, attempt.category)
        return seen

    async def cancel(self, handle: Handle) -> None:
        attempt = self._reachable().attempts.get(handle.uid)
        if attempt is None or attempt.cancelled:
            return
        attempt.cancelled = True
        if attempt.holds:
            attempt.phase, attempt.message, attempt.category = Phase.FAILED, "cancelled", "killed"

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        attempt = self._reachable().attempts.get(handle.uid)
        if attempt is None:
            return []
        names = [r.name for r in attempt.plan.replicas if replica in (None, r.name)]
        logs = []
        for name in names:
            lines = attempt.lines.get(name, [])
            logs.append(ReplicaLog(name, lines[-tail:] if tail else list(lines)))
        return logs

    async def endpoint(self, handle: Handle) -> str | None:
        attempt = self._reachable().attempts.get(handle.uid)
        if attempt is None or attempt.phase is not Phase.RUNNING:
            return None
        serving = next((r for r in attempt.plan.replicas if r.port), None)
        return f"http://{serving.host}:{serving.port}" if serving else None

    async def owned(self) -> list[Handle]:
        return [
            Handle(uid, {"cluster": self.name}) for uid, a in self._reachable().attempts.items() if a.holds
        ]

    async def release(self, workdir: str) -> bool:
        self._reachable().released.append(workdir)
        return True


def jupyter_transport(data_dir: str | Path) -> httpx.MockTransport:
    """Answers Jupyter's ``api/status`` for the running notebook attempts of the broker's scripted
    clusters, to a caller presenting the attempt's token; anything else cannot connect."""
    root = str(Path(data_dir).resolve())

    def answer(request: httpx.Request) -> httpx.Response:
        for (owner, _name), cluster in _CLUSTERS.items():
            for attempt in cluster.attempts.values() if owner == root else ():
                serving = next((r for r in attempt.plan.replicas if r.port), None)
                if serving is None or (serving.host, serving.port) != (request.url.host, request.url.port):
                    continue
                if attempt.phase is not Phase.RUNNING or not attempt.answers:
                    break
                if request.headers.get("authorization") != f"token {serving.env.get('JUPYTER_TOKEN')}":
                    return httpx.Response(403, json={"message": "Forbidden"})
                return httpx.Response(200, content=json.dumps({"last_activity": attempt.last_activity}))
        raise httpx.ConnectError("connection refused (scripted)", request=request)

    return httpx.MockTransport(answer)
