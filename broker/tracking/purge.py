"""Purging an experiment's tracking record: its runs (with their params, tags and points) and
their artifacts. Deleting an experiment keeps all of it for audit; ``?purge=true`` asks for this."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from broker.tracking.model import TrackingMetric, TrackingRun


async def purge_runs(db: Any, artifacts: Any, workload_id: str) -> int:
    """Remove every run of ``workload_id`` and its artifacts; returns how many runs went."""

    def runs(session: Session) -> list[tuple[str, str]]:
        query = select(TrackingRun.run_id, TrackingRun.artifact_uri).where(
            TrackingRun.workload_id == workload_id
        )
        return [(r.run_id, r.artifact_uri) for r in session.execute(query)]

    found = await db.run(runs)
    for _, uri in found:
        # The run's folder (``<exp>/<run>``), artifacts and TensorBoard files alike.
        folder = uri.removeprefix("mlflow-artifacts:/").strip("/").removesuffix("/artifacts")
        await artifacts.delete(folder)
    ids = [run_id for run_id, _ in found]
    if ids:

        def remove(session: Session) -> None:
            # Points first: they have no foreign key to cascade from (see TrackingMetric).
            session.execute(delete(TrackingMetric).where(TrackingMetric.run_id.in_(ids)))
            session.execute(delete(TrackingRun).where(TrackingRun.run_id.in_(ids)))

        await db.run(remove)
    return len(found)
