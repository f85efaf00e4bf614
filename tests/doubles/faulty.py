"""A failure-injection cluster kind: the local adapter, with faults a test switches on and off.

Registered through broker.yaml ``extra_kinds: {faulty: tests.doubles.faulty:FaultyAdapter}``.
The test writes ``<work_dir>/faults.json``; every verb reads it first:

- ``unreachable: true`` — health says unreachable, every other verb raises ClusterUnreachable
- ``reject_submit: "why"`` — submit raises SubmitRejected (the cluster refuses the plan)
- ``fail_submit: "why"`` — submit raises ClusterError (it may or may not have reached the cluster)
- ``submit_delay: seconds`` — submit is slow to start
- ``poll_hangs: true`` — poll never answers
- ``pending: "why"`` — poll reports every attempt PENDING with that reason (a queue holding it)

A careless cluster: given ``endpoint`` (a URL, perhaps with ``user:password@``) and ``token`` (a
secret field) in its file, every injected message repeats both, as a client library quoting its
URL and credentials in its errors would; the broker must mask them wherever it shows a message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from clusters.base import Handle, Health, Observation, Phase, ReplicaLog
from clusters.errors import ClusterError, ClusterUnreachable, SubmitRejected
from clusters.local.adapter import LocalAdapter
from clusters.local.config import LocalClusterConfig
from runtimes.plan import LaunchPlan


class FaultyClusterConfig(LocalClusterConfig):
    secret_fields: ClassVar[frozenset[str]] = frozenset({"token"})

    kind: Literal["faulty"] = "faulty"  # type: ignore[assignment]
    endpoint: str | None = None
    token: str | None = None


def write_faults(work_dir: Path, **faults: Any) -> None:
    """Switch faults on (or off, with an empty call) for the faulty cluster using ``work_dir``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = work_dir / ".faults.json.tmp"
    tmp.write_text(json.dumps(faults))
    tmp.replace(work_dir / "faults.json")


class FaultyAdapter(LocalAdapter):
    kind = "faulty"
    config_model = FaultyClusterConfig

    def _faults(self) -> dict[str, Any]:
        try:
            return json.loads((self.work_dir / "faults.json").read_text())
        except (OSError, ValueError):
            return {}

    def _said(self, message: str) -> str:
        """``message``, with the endpoint and token when the file gives them (a careless client)."""
        config = self.config
        assert isinstance(config, FaultyClusterConfig)
        if config.endpoint or config.token:
            return f"{message} (at {config.endpoint}, token {config.token})"
        return message

    def _reachable(self) -> dict[str, Any]:
        faults = self._faults()
        if faults.get("unreachable"):
            raise ClusterUnreachable(self._said(f"cluster {self.name}: connection refused (injected)"))
        return faults

    async def health(self) -> Health:
        if self._faults().get("unreachable"):
            return Health(reachable=False, message=self._said("connection refused (injected)"))
        return await super().health()

    async def submit(self, plan: LaunchPlan) -> Handle:
        faults = self._reachable()
        if faults.get("submit_delay"):
            await asyncio.sleep(float(faults["submit_delay"]))
        if faults.get("reject_submit"):
            raise SubmitRejected(self._said(str(faults["reject_submit"])))
        if faults.get("fail_submit"):
            raise ClusterError(self._said(str(faults["fail_submit"])))
        return await super().submit(plan)

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Observation]:
        faults = self._reachable()
        if faults.get("poll_hangs"):
            await asyncio.sleep(3600)
        if faults.get("pending"):
            why = self._said(str(faults["pending"]))
            return {h.uid: Observation(h.uid, Phase.PENDING, why) for h in handles}
        return await super().poll(handles)

    async def cancel(self, handle: Handle) -> None:
        self._reachable()
        await super().cancel(handle)

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        self._reachable()
        return await super().logs(handle, replica, tail)

    async def owned(self) -> list[Handle]:
        self._reachable()
        return await super().owned()
