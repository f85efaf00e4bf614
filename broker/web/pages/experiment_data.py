"""What the experiment page shows beside the record: the tracking data of its attempts as charts
(with other experiments' runs overlaid), params and tags, and one folder of its artifacts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.errors import ApiError
from broker.guard import Guard
from broker.tracking.experiment_view import AttemptTracking, experiment_tracking
from broker.web.charts import Chart, Line, all_charts
from broker.workloads.model import Workload

#: The most experiments one page overlays on its own.
MAX_COMPARED = 8


async def tracking_of(broker: Any, workload_id: str) -> list[AttemptTracking]:
    """Every attempt's run of a workload the caller was allowed to read."""
    found: list[AttemptTracking] = await broker.db.read(lambda conn: experiment_tracking(conn, workload_id))
    return found


def compare_ids(raw: str | None, own: str) -> list[str]:
    """The ``?compare=<id>,<id>`` experiment ids (own id, blanks and repeats dropped)."""
    ids = [part.strip() for part in (raw or "").split(",")]
    return list(dict.fromkeys(i for i in ids if i and i != own))[:MAX_COMPARED]


async def compared(
    broker: Any, ids: list[str], guard: Guard
) -> tuple[dict[str, list[AttemptTracking]], list[str]]:
    """The tracking data of each compared experiment the caller may read, and a note for each one
    it may not (told apart from a missing one no better than the API tells them)."""
    found: dict[str, list[AttemptTracking]] = {}
    notes: list[str] = []
    for experiment_id in ids:
        try:
            await broker.experiments.get(experiment_id, guard, deleted=True)
        except ApiError as exc:
            notes.append(exc.message)
            continue
        found[experiment_id] = await tracking_of(broker, experiment_id)
    return found, notes


def _lines(experiment_id: str, runs: list[AttemptTracking], *, compared: bool) -> dict[str, list[Line]]:
    by_key: dict[str, list[Line]] = {}
    for run in runs:
        starts = [p.timestamp for points in run.series.values() for p in points]
        origin = min(starts) if starts else 0
        for (key, replica), points in sorted(run.series.items()):
            by_key.setdefault(key, []).append(
                Line(experiment_id, run.attempt, replica, points, compared=compared, origin=origin)
            )
    return by_key


def metric_charts(
    row: Workload, runs: list[AttemptTracking], others: dict[str, list[AttemptTracking]], *, by_time: bool
) -> list[Chart]:
    """One chart per metric key of this experiment, with the same keys of the compared ones."""
    by_key = _lines(row.id, runs, compared=False)
    for experiment_id, their_runs in others.items():
        for key, lines in _lines(experiment_id, their_runs, compared=True).items():
            if key in by_key:
                by_key[key].extend(lines)
    return all_charts(by_key, by_time=by_time)


@dataclass(frozen=True)
class ArtifactEntry:
    name: str
    path: str  # relative to the run's artifact root
    is_dir: bool
    size: int | None


def artifact_root(run: AttemptTracking) -> str:
    """The run's artifact root as the store names it."""
    return run.artifact_uri.removeprefix("mlflow-artifacts:/").strip("/")


async def artifact_folder(broker: Any, run: AttemptTracking, folder: str) -> list[ArtifactEntry]:
    """The entries of ``folder`` (relative to the run's root, "" for the root), folders first."""
    root = artifact_root(run)
    listed = await broker.artifacts.list(f"{root}/{folder}".rstrip("/"))
    entries = [ArtifactEntry(e.path, f"{folder}/{e.path}".lstrip("/"), e.is_dir, e.file_size) for e in listed]
    return sorted(entries, key=lambda e: (not e.is_dir, e.name))


def breadcrumbs(folder: str) -> list[tuple[str, str]]:
    """``(label, path)`` of each folder from the root down to ``folder``."""
    crumbs = [("artifacts", "")]
    parts = [p for p in folder.split("/") if p]
    for index, part in enumerate(parts):
        crumbs.append((part, "/".join(parts[: index + 1])))
    return crumbs
