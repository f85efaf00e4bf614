"""What the ``slurm`` adapter asks of Slurm, whichever way it talks to it (``cli`` or ``rest``).

Both backends answer with the same small records, so the adapter reads states, owners and
capacity one way. Every call that cannot reach the controller raises
:class:`~clusters.errors.ClusterUnreachable` (a timeout, a refused connection, Slurm's "Unable to
contact slurm controller", an authentication failure); a refused job is
:class:`~clusters.errors.SubmitRejected`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from clusters.slurm.script import JobRequest

#: Words in Slurm's messages that mean "the controller could not be asked", not "no".
UNREACHABLE_WORDS = (
    "unable to contact slurm controller",
    "unable to establish",
    "could not establish a configuration source",
    "socket timed out",
    "connection refused",
    "communication connection failure",
    "zero bytes were transmitted",
    "slurmctld not responding",
    "munge",
    "authentication",
    "credential",
)

#: Node states (sinfo's long form, slurmrestd's ``state``) whose resources cannot be used now.
UNUSABLE_NODE_STATES = ("down", "drain", "fail", "maint", "future", "inval", "unknown", "reboot")


def unreachable(message: str) -> bool:
    """Whether a Slurm error message says the controller could not be asked."""
    text = message.lower()
    return any(word in text for word in UNREACHABLE_WORDS)


@dataclass(frozen=True)
class JobRecord:
    """One job as the controller lists it."""

    job_id: str
    name: str
    state: str
    reason: str = ""
    comment: str = ""
    nodes: str = ""


@dataclass(frozen=True)
class NodeRecord:
    """One node's size and use (memory in MiB)."""

    name: str
    state: str
    cpus: int
    alloc_cpus: int
    memory_mb: int
    alloc_memory_mb: int
    gpus: int = 0
    gpus_used: int = 0

    @property
    def usable(self) -> bool:
        """Up and schedulable: not down, drained, failing, in maintenance or rebooting."""
        state = self.state.lower()
        return not state.endswith("*") and not any(word in state for word in UNUSABLE_NODE_STATES)


_GRES_SPLIT = re.compile(r",(?![^()]*\))")


def gpu_count(gres: str | None) -> int:
    """GPUs in a gres string: ``gpu:2``, ``gpu:a100:4(S:0-1),mps:400``, ``gpu:0(IDX:N/A)``."""
    total = 0
    for part in _GRES_SPLIT.split(gres or ""):
        fields = part.split("(")[0].strip().split(":")
        if fields[0] == "gpu" and len(fields) >= 2 and fields[-1].isdigit():
            total += int(fields[-1])
    return total


class SlurmBackend(ABC):
    """The five questions the adapter asks Slurm."""

    @abstractmethod
    async def submit(self, request: JobRequest) -> str:
        """Submit the job; its id."""

    @abstractmethod
    async def jobs(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        """The controller's record of each id it still knows, in one query."""

    @abstractmethod
    async def named(self, name: str) -> list[JobRecord]:
        """Every job the controller knows under ``name`` (finished ones too, while kept)."""

    @abstractmethod
    async def active(self) -> list[JobRecord]:
        """Every pending or running job of the broker's Slurm user."""

    @abstractmethod
    async def cancel(self, job_id: str) -> None:
        """Cancel the job; one that ended or is unknown is fine."""

    @abstractmethod
    async def nodes(self) -> list[NodeRecord]:
        """Every node of the configured partition (all nodes without one)."""

    async def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""
