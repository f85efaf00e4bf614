"""Every Ray job status, and what the broker makes of it.

Ray's job list says nothing per replica: a job-level status is all there is. ``STOPPED`` is a
``stop_job`` (by the broker's cancel, or by someone on the cluster), so it counts as a failure of
category ``killed``; the broker keeps its own cancelled state for what it stopped itself.

A FAILED job's message is also read for its cause (:func:`entrypoint_failure`,
:func:`last_error_line`): Ray puts its own header line first and the job's last log lines after
it, and the cause (a traceback's last line) is at the end.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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


#: The first line of a FAILED job's message when its entrypoint exited non-zero; the job's last
#: log lines follow it ("... exit code 1, last available logs (truncated to 20,000 chars):").
_ENTRYPOINT_FAILED = re.compile(r"^(Job entrypoint command failed with exit code -?\d+)\b.*$")
#: Lines Ray itself writes into a job's log (runtime_env progress, the entrypoint it runs).
_RAY_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+\s+(DEBUG|INFO|WARNING|ERROR)\s|Running entrypoint for job )"
)
#: The last line of a Python traceback: ``ModuleNotFoundError: No module named 'ray'``.
_EXCEPTION_LINE = re.compile(
    r"^\s*(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Fault|Warning)(?::\s.*)?\s*$"
)
#: At most this much of one log line goes into a reason.
LINE_LIMIT = 300


def last_error_line(lines: Sequence[str]) -> str:
    """The line that best says why a run failed: its last exception line, else its last line.

    Lines Ray writes itself and blank lines are skipped; empty when nothing is left.
    """
    kept = [line.strip() for line in lines if line.strip() and not _RAY_LINE.match(line)]
    for line in reversed(kept):
        if _EXCEPTION_LINE.match(line):
            return line[:LINE_LIMIT]
    return kept[-1][:LINE_LIMIT] if kept else ""


def entrypoint_failure(message: str) -> str | None:
    """``Job entrypoint command failed with exit code 1: ModuleNotFoundError: No module named 'ray'``.

    Ray's message for a failed entrypoint is a header line and then the job's last log lines,
    where the cause is; None when ``message`` is not of that form.
    """
    lines = message.strip().splitlines()
    header = _ENTRYPOINT_FAILED.match(lines[0]) if lines else None
    if header is None:
        return None
    cause = last_error_line(lines[1:])
    return f"{header.group(1)}: {cause}" if cause else header.group(1)
