"""``/api/v1/cluster``: the registered clusters, their state and capacity (never their secrets)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from broker.api.access import GLOBAL, Guard
from broker.api.envelope import EnvelopeResponse, ok
from broker.errors import NotFound
from broker.experiments.views import fmt_time
from broker.registry import ClusterState
from runtimes.plan import Resources


def _resources(value: Resources) -> dict[str, Any]:
    return {"cpu": value.cpu, "memory": value.memory, "gpu": value.gpu}


def cluster_json(cluster: ClusterState) -> dict[str, Any]:
    """A cluster as the API shows it; secret config fields are masked."""
    return {
        "name": cluster.name,
        "kind": cluster.config.kind,
        "labels": dict(cluster.config.labels),
        "weight": cluster.config.weight,
        "state": cluster.state,
        "message": cluster.message,
        "capacity": {"total": _resources(cluster.total), "free": _resources(cluster.free)},
        "running": cluster.health.running if cluster.health else 0,
        "capabilities": sorted(
            flag.name.lower()
            for flag in type(cluster.adapter.capabilities)
            if flag.name and flag in cluster.adapter.capabilities
        ),
        "lastCheck": fmt_time(cluster.last_check),
        "config": cluster.config.public_view(),
    }


async def list_clusters(request: Request) -> EnvelopeResponse:
    guard = Guard.of(request)
    registry = request.app.state.broker.registry
    return ok([cluster_json(c) for c in registry.all() if guard.may(GLOBAL, f"cluster/{c.name}", "read")])


async def get_cluster(request: Request) -> EnvelopeResponse:
    name = request.path_params["name"]
    cluster = request.app.state.broker.registry.get(name)
    missing = f"Not found cluster: {name}"
    if cluster is None:
        raise NotFound(missing)
    Guard.of(request).require(GLOBAL, f"cluster/{name}", "read", hidden=True, what=missing)
    return ok(cluster_json(cluster))


routes = [
    Route("/api/v1/cluster", list_clusters, methods=["GET"]),
    Route("/api/v1/cluster/{name}", get_cluster, methods=["GET"]),
]
