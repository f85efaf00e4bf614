"""What the Ray adapter asks the dashboard about served models, over HTTP: Serve's status answer,
the replicas' log files, and which applications are this broker's (:mod:`clusters.ray.serving`
holds the reading of the answers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from clusters.base import ReplicaLog
from clusters.errors import ClusterUnreachable
from clusters.ray.serving import LOG_PATH, STATUS_PATH, delete_submission_id, replica_logs
from clusters.ray.states import TERMINAL


def job_status(job: Any) -> str:
    """A Ray job's status as its name (the SDK gives an enum, its REST API a string)."""
    return str(getattr(job.status, "value", job.status))


def still_served(sid: str, job: Any, jobs: dict[str, Any], apps: dict[str, Any]) -> bool:
    """Whether a serve's deploy job ``sid`` stands for work on the cluster: its application exists
    and is not being deleted (Serve says DELETING, or its delete job has not ended), or the deploy
    job itself still runs."""
    meta = job.metadata or {}
    uid = meta.get("uid") or sid.removeprefix("sb-")
    deleting = jobs.get(delete_submission_id(uid))
    if deleting is not None and job_status(deleting) not in TERMINAL:
        return False
    app = apps.get(str(meta.get("serve_app")))
    alive = isinstance(app, dict) and str(app.get("status")) != "DELETING"
    return alive or job_status(job) not in TERMINAL


class ServeDashboard:
    """Serve's status and the replicas' logs from a Ray cluster's dashboard.

    ``client`` makes an HTTP client of the dashboard (the adapter's address, headers, timeout and
    transport); ``unreachable`` words a failed call without the configured headers."""

    def __init__(
        self, client: Callable[[], httpx.AsyncClient], unreachable: Callable[[BaseException], str]
    ) -> None:
        self._client = client
        self._unreachable = unreachable

    def _refused(self) -> ClusterUnreachable:
        return ClusterUnreachable(self._unreachable(RuntimeError("status code 401")))

    async def details(self) -> dict[str, Any]:
        """Serve's status answer (``GET /api/serve/applications/``); ClusterUnreachable when the
        dashboard does not give one."""
        try:
            async with self._client() as http:
                answer = await http.get(STATUS_PATH)
                if answer.status_code in (401, 403):
                    raise self._refused()
                answer.raise_for_status()
                details = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ClusterUnreachable(self._unreachable(exc)) from None
        return details if isinstance(details, dict) else {}

    async def logs(
        self, app: dict[str, Any], every: list[str], names: list[str], tail: int | None
    ) -> list[ReplicaLog]:
        """The Serve log files of ``app``'s replicas ``names`` (of the plan's ``every``), through
        the dashboard's log API; a replica Serve has not placed yet, or whose file cannot be read
        (its node left), has no lines."""
        where = replica_logs(app, every)
        out = []
        try:
            async with self._client() as http:
                for name in names:
                    if name not in where or tail == 0:
                        out.append(ReplicaLog(name, []))
                        continue
                    node, path = where[name]
                    params: dict[str, str | int] = {"node_id": node, "filename": path, "lines": tail or -1}
                    answer = await http.get(LOG_PATH, params=params)
                    if answer.status_code in (401, 403):
                        raise self._refused()
                    lines = answer.text.splitlines() if answer.status_code == 200 else []
                    out.append(ReplicaLog(name, lines))
        except httpx.HTTPError as exc:
            raise ClusterUnreachable(self._unreachable(exc)) from None
        return out
