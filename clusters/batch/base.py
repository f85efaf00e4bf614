"""The family base of batch-queue kinds: one attempt is one job in a scheduler's queue.

Slurm and YARN (and any later queue: PBS, LSF, HTCondor) share the mechanics: look a job up by
the attempt's uid before submitting one, ask the scheduler about *every* job in one query per
tick, read its state through a table, cancel by id, read output per replica. A kind supplies only
the hooks below (see dask-gateway's jobqueue backends for the idea); the base turns them into the
six verbs of :class:`~clusters.base.ClusterAdapter`.

Hooks a kind implements:

``find_job(plan)``
    The scheduler's id of a job an earlier call already submitted for ``plan.uid`` (found by the
    job name or comment that carries the uid), else None. This is what makes ``submit``
    idempotent across retries and broker restarts.
``submit_job(plan)``
    Build the kind's job from the plan and submit it; return the scheduler's id. Refusals are
    :class:`SubmitRejected`, a silent scheduler :class:`ClusterUnreachable`.
``query_jobs(job_ids)``
    One round trip for every id: native records keyed by id. An id the scheduler does not know
    is simply absent (the base reports ``NOT_FOUND``). A scheduler that does not answer raises
    :class:`ClusterUnreachable`: never a failure on its own.
``parse_job(handle, record)``
    One native record → :class:`~clusters.base.Observation` (through the kind's state table;
    a state the table does not know is ``UNKNOWN``).
``cancel_job(handle)``
    Stop the job; a job that ended already or is unknown is fine.
``read_logs(handle, names)``
    The output of each named replica, oldest line first.
``forgotten_job(handle)`` (optional)
    Schedulers drop finished jobs after a while (Slurm's ``MinJobAge``, YARN's completed-apps
    limit). For a job ``query_jobs`` no longer returns, a kind may tell its end from what the job
    left behind (exit files on a shared folder, a history server) instead of ``NOT_FOUND``, which
    the broker reads as "lost". Default None: NOT_FOUND.

The handle the base stores holds ``job_id``, the plan's replica names (plan order, primary
first) and ``success_roles``, plus whatever :meth:`BatchAdapter.extra_state` adds.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from clusters.base import ClusterAdapter, Handle, Observation, Phase, ReplicaLog
from clusters.errors import WorkloadNotFound
from runtimes.plan import LaunchPlan


class NativeState(NamedTuple):
    """What the broker makes of one scheduler state word."""

    phase: Phase
    failure_category: str | None = None
    meaning: str = ""


def read_state(table: Mapping[str, NativeState], word: object) -> NativeState:
    """The table's entry for ``word`` (case-insensitive); an unknown word is ``UNKNOWN``.

    A newer scheduler may add states: reading one as UNKNOWN keeps the workload untouched
    until a known state comes back, instead of failing it.
    """
    key = str(getattr(word, "value", word) or "").strip().upper()
    found = table.get(key)
    if found is not None:
        return found
    return NativeState(Phase.UNKNOWN, None, f"state '{key or '?'}' is not known to the broker")


class BatchAdapter(ClusterAdapter, abstract=True):
    """Base of the batch-queue kinds: the six verbs from six hooks (each kind adds ``health`` and
    ``addressing``)."""

    # -- hooks ---------------------------------------------------------------------------------

    @abstractmethod
    async def find_job(self, plan: LaunchPlan) -> str | None:
        """The id of the job already submitted for ``plan.uid``, or None."""

    @abstractmethod
    async def submit_job(self, plan: LaunchPlan) -> str:
        """Submit the plan as one job; the scheduler's id of it."""

    @abstractmethod
    async def query_jobs(self, job_ids: Sequence[str]) -> dict[str, Any]:
        """Native records of every known id in one query; unknown ids are left out."""

    @abstractmethod
    def parse_job(self, handle: Handle, record: Any) -> Observation:
        """One native record read as an observation of ``handle``."""

    @abstractmethod
    async def cancel_job(self, handle: Handle) -> None:
        """Stop the handle's job; idempotent."""

    @abstractmethod
    async def read_logs(self, handle: Handle, names: Sequence[str]) -> dict[str, list[str]]:
        """Output lines per replica name (a replica without output yet maps to [])."""

    async def forgotten_job(self, handle: Handle) -> Observation | None:
        """How a job the scheduler no longer lists ended, if the kind can tell; else None.

        Called only for handles missing from ``query_jobs``' answer; it must not ask the
        scheduler once per handle.
        """
        return None

    def extra_state(self, plan: LaunchPlan, job_id: str) -> dict[str, Any]:
        """Kind-specific handle state beyond the job id and replica names (e.g. a work dir)."""
        return {}

    # -- verbs ---------------------------------------------------------------------------------

    async def submit(self, plan: LaunchPlan) -> Handle:
        """Find the uid's job or submit one: never two jobs for one attempt."""
        job_id = await self.find_job(plan)
        if job_id is None:
            job_id = await self.submit_job(plan)
        return self.handle_for(plan, job_id)

    def handle_for(self, plan: LaunchPlan, job_id: str) -> Handle:
        """The handle the broker stores for ``plan``'s job ``job_id``."""
        return Handle.for_plan(plan, job_id=str(job_id), **self.extra_state(plan, str(job_id)))

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Observation]:
        """One ``query_jobs`` for every handle; a job the scheduler does not know is NOT_FOUND
        unless ``forgotten_job`` can tell how it ended (a handle naming no job is NOT_FOUND)."""
        if not handles:
            return {}
        ids = [str(h.state.get("job_id") or "") for h in handles]
        known = [jid for jid in ids if jid]
        records = await self.query_jobs(known) if known else {}
        out: dict[str, Observation] = {}
        for handle, jid in zip(handles, ids, strict=True):
            record = records.get(jid) if jid else None
            if not jid:
                out[handle.uid] = Observation(
                    handle.uid, Phase.NOT_FOUND, f"attempt {handle.uid} has no job id in its handle"
                )
            elif record is None:
                out[handle.uid] = await self.forgotten_job(handle) or Observation(
                    handle.uid, Phase.NOT_FOUND, f"cluster '{self.name}' has no job {jid}"
                )
            else:
                out[handle.uid] = self.parse_job(handle, record)
        return out

    async def cancel(self, handle: Handle) -> None:
        """Stop the attempt's job (idempotent); a handle naming no job has nothing to stop."""
        if handle.state.get("job_id"):
            await self.cancel_job(handle)

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        """Output per replica in plan order (primary first); ``replica`` narrows, ``tail`` cuts."""
        names = replica_names(handle)
        if replica is not None:
            if names and replica not in names:
                raise WorkloadNotFound(
                    f"attempt {handle.uid} has no replica '{replica}'; its replicas are {', '.join(names)}"
                )
            names = [replica]
        found = await self.read_logs(handle, names)
        out = []
        for name in names:
            lines = list(found.get(name) or [])
            if tail is not None:
                lines = lines[-tail:] if tail > 0 else []
            out.append(ReplicaLog(name, lines))
        return out


def job_id(handle: Handle) -> str:
    """The scheduler's id stored in ``handle``."""
    value = handle.state.get("job_id")
    if not value:
        raise WorkloadNotFound(f"attempt {handle.uid} has no job id in its handle")
    return str(value)


def replica_names(handle: Handle) -> list[str]:
    """The attempt's replica names, plan order (primary first)."""
    return [str(n) for n in handle.state.get("replicas") or []]
