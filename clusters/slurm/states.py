"""Every Slurm job state, and what the broker makes of it.

``squeue -o %T`` and slurmrestd's ``job_state`` give one word: the base state (PENDING, RUNNING,
COMPLETED, ...) or, while one is set, a flag that says more (COMPLETING, REQUEUED, STOPPED, ...).
tests/test_slurm_states.py checks that this table covers every word the installed Slurm lists
(``squeue --states=<bad word>`` prints them) and the issue's list.

Readings that need a word:

* SUSPENDED and STOPPED keep their allocation (paused by an admin or by gang/suspend
  preemption): still RUNNING for the broker, they resume where they stopped.
* COMPLETING, SIGNALING, STAGE_OUT: the job's processes are ending or its burst buffer is being
  written back; the end is not known yet, so RUNNING until the final word arrives (the adapter
  reads a COMPLETING job's end from the exit code its script recorded, when it is there).
* REQUEUED, REQUEUE_FED, REQUEUE_HOLD, RESV_DEL_HOLD, CONFIGURING, POWER_UP_NODE: the job will
  (re)start; PENDING. A held job waits for an admin's ``scontrol release``.
* REVOKED is a federation sibling withdrawn because another cluster of the federation started
  the job: that cluster's record tells the outcome, so the broker waits (UNKNOWN) instead of
  failing the run.
* PREEMPTED (preemption mode cancel) is ``killed``; NODE_FAIL and BOOT_FAIL are ``cluster_lost``;
  TIMEOUT and DEADLINE are ``timeout``; SPECIAL_EXIT (a job requeued and held after a failure)
  and OUT_OF_MEMORY are ``exit_code``.
"""

from __future__ import annotations

from clusters.base import Phase
from clusters.batch.base import NativeState, read_state

#: Slurm job state word → broker reading. The completeness test keeps it whole.
SLURM_JOB_STATES: dict[str, NativeState] = {
    "PENDING": NativeState(Phase.PENDING, None, "waiting for resources"),
    "CONFIGURING": NativeState(Phase.PENDING, None, "its nodes are being configured"),
    "POWER_UP_NODE": NativeState(Phase.PENDING, None, "its nodes are powering up"),
    "REQUEUED": NativeState(Phase.PENDING, None, "requeued; it will start again"),
    "REQUEUE_FED": NativeState(Phase.PENDING, None, "requeued by the federation"),
    "REQUEUE_HOLD": NativeState(Phase.PENDING, None, "requeued and held until released"),
    "RESV_DEL_HOLD": NativeState(Phase.PENDING, None, "held: its reservation was deleted"),
    "RUNNING": NativeState(Phase.RUNNING, None, "running"),
    "RESIZING": NativeState(Phase.RUNNING, None, "its allocation is being resized"),
    "SUSPENDED": NativeState(Phase.RUNNING, None, "suspended; it resumes where it stopped"),
    "STOPPED": NativeState(Phase.RUNNING, None, "stopped (SIGSTOP); it keeps its allocation"),
    "COMPLETING": NativeState(Phase.RUNNING, None, "ending; its processes are being cleaned up"),
    "SIGNALING": NativeState(Phase.RUNNING, None, "being signalled"),
    "STAGE_OUT": NativeState(Phase.RUNNING, None, "staging out its burst buffer"),
    "COMPLETED": NativeState(Phase.SUCCEEDED, None, "completed"),
    "CANCELLED": NativeState(Phase.FAILED, "killed", "was cancelled"),
    "FAILED": NativeState(Phase.FAILED, "exit_code", "failed"),
    "TIMEOUT": NativeState(Phase.FAILED, "timeout", "reached its time limit"),
    "DEADLINE": NativeState(Phase.FAILED, "timeout", "reached its deadline"),
    "NODE_FAIL": NativeState(Phase.FAILED, "cluster_lost", "lost a node"),
    "BOOT_FAIL": NativeState(Phase.FAILED, "cluster_lost", "could not boot its nodes"),
    "PREEMPTED": NativeState(Phase.FAILED, "killed", "was preempted"),
    "OUT_OF_MEMORY": NativeState(Phase.FAILED, "exit_code", "ran out of memory"),
    "SPECIAL_EXIT": NativeState(Phase.FAILED, "exit_code", "failed and was held (special exit)"),
    "REVOKED": NativeState(Phase.UNKNOWN, None, "revoked here: another cluster of the federation runs it"),
}

#: States after which nothing of the job runs any more.
TERMINAL = frozenset(word for word, state in SLURM_JOB_STATES.items() if state.phase.is_terminal)


def slurm_state(word: object) -> NativeState:
    """The broker's reading of one Slurm state word; an unknown word is UNKNOWN."""
    return read_state(SLURM_JOB_STATES, word)
