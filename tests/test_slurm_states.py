"""The Slurm state table: complete against the issue's list and against the installed Slurm."""

from __future__ import annotations

import subprocess

from clusters.base import Phase
from clusters.slurm.states import SLURM_JOB_STATES, TERMINAL, slurm_state

#: Every job state issue 7 names.
ISSUE_STATES = {
    "PENDING",
    "RUNNING",
    "SUSPENDED",
    "COMPLETING",
    "COMPLETED",
    "CANCELLED",
    "FAILED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
    "REQUEUED",
    "RESIZING",
    "REVOKED",
    "SPECIAL_EXIT",
    "STOPPED",
}


def test_every_state_of_the_issue_is_in_the_table() -> None:
    missing = ISSUE_STATES - set(SLURM_JOB_STATES)
    assert not missing, f"Slurm job states missing from clusters/slurm/states.py: {sorted(missing)}"


def test_every_state_the_installed_slurm_knows_is_in_the_table(slurm) -> None:
    # squeue lists every job state word it knows when given one it does not.
    done = subprocess.run(
        ["squeue", "--states=NOT_A_STATE"], env=slurm.env(), capture_output=True, text=True, timeout=30
    )
    line = next(line for line in done.stderr.splitlines() if "Valid job states include:" in line)
    known = {word.strip() for word in line.split("include:", 1)[1].split(",") if word.strip()}
    assert len(known) >= 20 and "PENDING" in known and "OUT_OF_MEMORY" in known, known
    missing = known - set(SLURM_JOB_STATES)
    assert not missing, f"Slurm job states missing from clusters/slurm/states.py: {sorted(missing)}"


def test_readings() -> None:
    assert slurm_state("PENDING").phase is Phase.PENDING
    assert slurm_state("running").phase is Phase.RUNNING
    for paused in ("SUSPENDED", "STOPPED", "COMPLETING"):
        assert slurm_state(paused).phase is Phase.RUNNING, paused
    assert slurm_state("REQUEUED").phase is Phase.PENDING
    assert slurm_state("COMPLETED").phase is Phase.SUCCEEDED
    assert slurm_state("CANCELLED")[:2] == (Phase.FAILED, "killed")
    assert slurm_state("FAILED")[:2] == (Phase.FAILED, "exit_code")
    assert slurm_state("TIMEOUT")[:2] == (Phase.FAILED, "timeout")
    assert slurm_state("DEADLINE")[:2] == (Phase.FAILED, "timeout")
    assert slurm_state("NODE_FAIL")[:2] == (Phase.FAILED, "cluster_lost")
    assert slurm_state("BOOT_FAIL")[:2] == (Phase.FAILED, "cluster_lost")
    assert slurm_state("OUT_OF_MEMORY")[:2] == (Phase.FAILED, "exit_code")
    assert slurm_state("PREEMPTED")[:2] == (Phase.FAILED, "killed")
    # A federation sibling that another cluster runs is not a failure here.
    assert slurm_state("REVOKED").phase is Phase.UNKNOWN
    # A newer Slurm's word never fails a run.
    assert slurm_state("SOMETHING_NEW").phase is Phase.UNKNOWN
    assert slurm_state("").phase is Phase.UNKNOWN


def test_terminal_states_are_exactly_the_ended_ones() -> None:
    assert {
        "COMPLETED",
        "CANCELLED",
        "FAILED",
        "TIMEOUT",
        "DEADLINE",
        "NODE_FAIL",
        "BOOT_FAIL",
        "PREEMPTED",
        "OUT_OF_MEMORY",
        "SPECIAL_EXIT",
    } == TERMINAL
    for word, state in SLURM_JOB_STATES.items():
        assert state.meaning, word
        if state.phase is Phase.FAILED:
            assert state.failure_category in {"killed", "exit_code", "timeout", "cluster_lost"}, word
