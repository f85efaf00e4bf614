"""Every Ray job status, and what the broker makes of it.

Ray's job list says nothing per replica: a job-level status is all there is. ``STOPPED`` is a
``stop_job`` (by the broker's cancel, or by someone on the cluster), so it counts as a failure of
category ``killed``; the broker keeps its own cancelled state for what it stopped itself.
"""

from __future__ import annotations

from typing import NamedTuple

from clusters.base import Phase


class RayState(NamedTuple):
    phase: Phase
    failure_category: str | None = None


#: Ray ``JobStatus`` value → broker phase. tests/test_ray_states.py checks no status is missing.
RAY_JOB_STATES: dict[str, RayState] = {
    "PENDING": RayState(Phase.PENDING),
    "RUNNING": RayState(Phase.RUNNING),
    "SUCCEEDED": RayState(Phase.SUCCEEDED),
    "FAILED": RayState(Phase.FAILED, "exit_code"),
    "STOPPED": RayState(Phase.FAILED, "killed"),
}

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


def ray_state(status: object) -> RayState:
    """The broker's reading of a Ray job status (a ``JobStatus`` or its string value).

    A status this table does not know (a newer Ray) is ``UNKNOWN``: never a reason to fail a run.
    """
    key = str(getattr(status, "value", status)).upper()
    return RAY_JOB_STATES.get(key, RayState(Phase.UNKNOWN))
