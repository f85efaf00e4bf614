"""What the ``/serve/...`` proxy needs of a serve, read from its workload record.

The serve watch keeps each running serve's ready replicas in its record (``access``); the proxy
asks this once per serve and keeps the answer briefly (:data:`broker.serving.replicas.RESOLVE_TTL`).
"""

from __future__ import annotations

from sqlalchemy import select

from broker.serving.replicas import Resolver, ServeTarget
from broker.serving.service import ServeService, slot_of
from broker.state import Status
from broker.workloads.kind import Kind
from broker.workloads.model import Workload


def serve_resolver(serves: ServeService) -> Resolver:
    """Looks a live serve up by namespace and name: its id, server token and ready replicas (none
    while it is not running or no replica answers); None when there is no such live serve."""

    async def resolve(namespace: str, name: str) -> ServeTarget | None:
        row = await serves.db.run(
            lambda s: s.scalar(select(Workload).where(Workload.slot == slot_of(namespace, name)))
        )
        if row is None or row.kind != Kind.SERVE.value or row.status == Status.DELETED.value:
            return None
        found = serves.upstreams_of(row)
        urls, token = found if found is not None else ({}, "")
        return ServeTarget(row.id, row.namespace, row.name, token, tuple(urls.values()))

    return resolve
