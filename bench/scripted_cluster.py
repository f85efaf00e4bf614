"""A cluster kind for benchmarks: answers every verb at once from memory, starts nothing.

Registered through broker.yaml ``extra_kinds: {scripted: scripted_cluster:ScriptedAdapter}`` with
``bench/`` on ``sys.path`` (``python bench/<bench>.py`` puts it there). Its file may set:

- ``cpu`` / ``memory`` / ``gpu``: the capacity health reports, all of it free (default 100000
  cores, 100000 GiB, no GPUs), so placement never waits on it unless a bench wants it to;
- ``submit_latency``: seconds each submit takes (default 0: it answers at once), to see how
  dispatch copes with a slow cluster.

Submit is idempotent on the plan's uid, as the adapter contract asks; every submit call is counted
(``submit_calls``) so a bench can tell a repeated submit from a new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from clusters.base import Capability, ClusterAdapter, Handle, Health, Observation, Phase, ReplicaLog
from clusters.config import ClusterConfig
from runtimes.plan import LaunchPlan, Resources, StaticAddressing

GI = 2**30


class ScriptedClusterConfig(ClusterConfig):
    kind: Literal["scripted"] = "scripted"  # type: ignore[assignment]
    cpu: float = 100_000.0
    memory: int = 100_000 * GI
    gpu: int = 0
    submit_latency: float = 0.0


class ScriptedAdapter(ClusterAdapter):
    """Everything in memory: submitted attempts stay pending forever (nothing runs)."""

    kind = "scripted"
    config_model = ScriptedClusterConfig
    capabilities = Capability.MULTI_NODE | Capability.IMAGES | Capability.LISTS_WORK

    def __init__(self, config: ClusterConfig, *, data_dir: str) -> None:
        super().__init__(config, data_dir=data_dir)
        self.started: dict[str, Handle] = {}
        self.submit_calls = 0

    @property
    def _config(self) -> ScriptedClusterConfig:
        assert isinstance(self.config, ScriptedClusterConfig)
        return self.config

    async def health(self) -> Health:
        c = self._config
        size = Resources(cpu=c.cpu, memory=c.memory, gpu=c.gpu)
        return Health(reachable=True, total=size, free=size, message="scripted", running=0)

    def addressing(self, uid: str) -> StaticAddressing:
        return StaticAddressing(lambda role, index: f"{role}-{index}.{uid}", lambda: 7000)

    async def submit(self, plan: LaunchPlan) -> Handle:
        self.submit_calls += 1
        if self._config.submit_latency:
            await asyncio.sleep(self._config.submit_latency)
        return self.started.setdefault(plan.uid, Handle(plan.uid))

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Observation]:
        return {
            h.uid: Observation(h.uid, Phase.PENDING if h.uid in self.started else Phase.NOT_FOUND)
            for h in handles
        }

    async def cancel(self, handle: Handle) -> None:
        self.started.pop(handle.uid, None)

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        return []

    async def owned(self) -> list[Handle]:
        return list(self.started.values())
