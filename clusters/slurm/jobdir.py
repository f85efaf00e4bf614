"""The broker's reading of an attempt's folder on the shared ``work_dir``.

The job's tasks write there (see :mod:`runtimes.slurm_task`): ``<replica>.log`` (the replica's
output), ``<replica>.exit`` (``{"code": n}``, plus ``"stopped": why`` when the task stopped the
replica itself), ``job.exit`` (the step's exit code, written when the step ends), ``job_id`` and
``tasks.json``. Every reader here tolerates files that do not exist (yet): the job may not have
started, or the broker may not see ``work_dir`` (then logs are empty and failures are told from
Slurm's state alone).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ReplicaEnd:
    """How one replica ended: its exit code (negative: killed by that signal) and who stopped it."""

    code: int | None
    stopped: str | None = None

    @property
    def failed(self) -> bool:
        """Ended non-zero on its own (not stopped by its task)."""
        return self.stopped is None and self.code not in (0, None)

    def describe(self) -> str:
        if self.code is not None and self.code < 0:
            return f"was killed by signal {-self.code}"
        return f"exited with code {self.code}"


class JobDir:
    """``<work_dir>/<uid>`` of one attempt."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _json(self, name: str) -> Any:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return None

    def ends(self, names: list[str]) -> dict[str, ReplicaEnd]:
        """The end of each named replica that has one."""
        out = {}
        for name in names:
            data = self._json(f"{name}.exit")
            if isinstance(data, dict):
                code = data.get("code")
                out[name] = ReplicaEnd(int(code) if code is not None else None, data.get("stopped"))
        return out

    def job_exit(self) -> int | None:
        """The step's exit code once the batch script recorded it."""
        try:
            return int((self.path / "job.exit").read_text().strip())
        except (OSError, ValueError):
            return None

    def job_id(self) -> str | None:
        """The id of the job that ran in this folder (written when its script started)."""
        try:
            return (self.path / "job_id").read_text().strip() or None
        except OSError:
            return None

    def batch_tail(self) -> str:
        """The last line Slurm's batch step printed (``<work_dir>/sb-<uid>.out``), or ""."""
        try:
            text = (self.path.parent / f"sb-{self.path.name}.out").read_text(errors="replace")
        except OSError:
            return ""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1][:300] if lines else ""

    def replica_names(self) -> list[str]:
        """The replicas in ``tasks.json`` (plan order), or [] when it cannot be read."""
        data = self._json("tasks.json")
        if not isinstance(data, dict):
            return []
        return [str(r.get("name")) for r in data.get("replicas") or [] if isinstance(r, dict)]

    def log(self, name: str) -> list[str]:
        """The replica's output lines, oldest first ([] before it wrote any)."""
        try:
            return (self.path / f"{name}.log").read_text(errors="replace").splitlines()
        except OSError:
            return []
