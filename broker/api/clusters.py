"""``/api/v1/cluster``: the registered clusters, their condition and capacity (never their secrets).

``GET /cluster`` lists the clusters the caller may read, with ``attributes.configErrors``: the
refused files in clusters.d (file, line, key, reason; never a value from the file) of clusters the
caller may read, or all of them for a caller who may ``admin`` every cluster.
``GET /cluster/errors`` returns that list alone. ``POST /cluster/{name}/cordon|uncordon|drain``
need the ``admin`` action on ``cluster/<name>`` in the global domain. Cordon and drain flags are
stored in the database, so every broker replica honours them within a second. Neither evicts
anything: cordon pauses new work, drain empties the cluster for removal, and each cluster's
``workloads`` (this broker's experiments and notebooks there) and ``drained`` say when it is empty.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from broker.api.access import guard_of
from broker.api.envelope import EnvelopeResponse, ok
from broker.config.errors import ConfigError
from broker.errors import NotFound
from broker.guard import GLOBAL, Guard
from broker.registry import ClusterState
from broker.state import ON_CLUSTER
from broker.workloads.model import Workload
from broker.workloads.views import fmt_time
from runtimes.plan import Resources

log = logging.getLogger(__name__)


def _resources(value: Resources) -> dict[str, Any]:
    return {"cpu": value.cpu, "memory": value.memory, "gpu": value.gpu}


def _workloads_by_cluster(session: Session) -> dict[str, int]:
    """How many of this broker's workloads (experiments and notebooks) each cluster holds: placed
    there (a submit in flight), created or running."""
    counts = session.execute(
        select(Workload.cluster, func.count())
        .where(Workload.cluster.is_not(None), Workload.status.in_(ON_CLUSTER))
        .group_by(Workload.cluster)
    ).all()
    return {str(name): int(count) for name, count in counts}


async def workloads(request: Request) -> dict[str, int]:
    """:func:`_workloads_by_cluster` now."""
    return await request.app.state.broker.db.run(_workloads_by_cluster)


def cluster_json(
    cluster: ClusterState, errors: list[ConfigError] | None = None, workloads: dict[str, int] | None = None
) -> dict[str, Any]:
    """A cluster as the API shows it; its secrets are masked (config and message, see
    :mod:`clusters.secrets`).

    ``configError`` is the refusal of its file's current content, if any: the cluster then runs
    on the last good definition shown here. ``workloads`` counts this broker's work there (from
    ``workloads``); ``drained`` says a draining cluster holds none any more: safe to remove.
    """
    problem = next((e for e in errors or [] if cluster.source and e.file == cluster.source), None)
    held = (workloads or {}).get(cluster.name, 0)
    return {
        "name": cluster.name,
        "kind": cluster.config.kind,
        "labels": dict(cluster.config.labels),
        "weight": cluster.config.weight,
        "state": cluster.state,
        "message": cluster.config.mask(cluster.condition_message),
        "reachable": cluster.reachable,
        "unreachableSince": fmt_time(cluster.unreachable_since),
        "failedChecks": cluster.failed_checks,
        "nextCheck": fmt_time(cluster.next_check),
        "cordoned": cluster.cordoned,
        "draining": cluster.draining,
        "removed": cluster.removed,
        "capacity": {"total": _resources(cluster.total), "free": _resources(cluster.free)},
        "running": cluster.running,
        "workloads": held,
        "drained": (cluster.draining or cluster.removed) and held == 0,
        "capabilities": cluster.capability_names,
        "lastCheck": fmt_time(cluster.last_check),
        "source": cluster.source,
        "configError": problem.to_json() if problem else None,
        "config": cluster.config.public_view(),
    }


def _errors(request: Request) -> list[ConfigError]:
    return list(request.app.state.broker.config_errors)


def visible_errors(request: Request, guard: Guard) -> list[dict[str, Any]]:
    """The refused files the caller may hear of: those of clusters they may read; every one for a
    caller who may administer every cluster."""
    errors = _errors(request)
    if guard.may(GLOBAL, "cluster/*", "admin"):
        return [e.to_json() for e in errors]
    owners = {c.source: c.name for c in request.app.state.broker.registry.all() if c.source}
    return [
        e.to_json()
        for e in errors
        if e.file in owners and guard.may(GLOBAL, f"cluster/{owners[e.file]}", "read")
    ]


async def visible_clusters(request: Request, guard: Guard) -> list[dict[str, Any]]:
    """The clusters the caller may read, as :func:`cluster_json` shows them."""
    errors = _errors(request)
    registry = request.app.state.broker.registry
    visible = [c for c in registry.all() if guard.may(GLOBAL, f"cluster/{c.name}", "read")]
    held = await workloads(request)
    return [cluster_json(c, errors, held) for c in visible]


async def list_clusters(request: Request) -> EnvelopeResponse:
    guard = guard_of(request)
    return ok(
        await visible_clusters(request, guard),
        attributes={"configErrors": visible_errors(request, guard)},
    )


async def list_errors(request: Request) -> EnvelopeResponse:
    """Every refused file in clusters.d, as in ``attributes.configErrors`` of the list."""
    return ok(visible_errors(request, guard_of(request)))


async def get_cluster(request: Request) -> EnvelopeResponse:
    name = request.path_params["name"]
    cluster = request.app.state.broker.registry.get(name)
    missing = f"Not found cluster: {name}"
    if cluster is None:
        raise NotFound(missing)
    guard_of(request).require(GLOBAL, f"cluster/{name}", "read", hidden=True, what=missing)
    return ok(cluster_json(cluster, _errors(request), await workloads(request)))


def _admin(request: Request, name: str) -> tuple[ClusterState, Guard]:
    cluster = request.app.state.broker.registry.get(name)
    if cluster is None:
        raise NotFound(f"Not found cluster: {name}")
    guard = guard_of(request)
    guard.require(GLOBAL, f"cluster/{name}", "admin")
    return cluster, guard


#: The admin's actions: cordon pauses new work; uncordon clears a cordon and a manual drain (a
#: removed file still drains the cluster); drain empties the cluster for removal: what runs there
#: runs to its own end (nothing is evicted), ``drained`` turns true once none of this broker's work
#: is left. Each maps (cordoned, draining) now to the flags after.
ACTIONS: dict[str, Callable[[bool, bool], tuple[bool, bool]]] = {
    "cordon": lambda cordoned, draining: (True, draining),
    "uncordon": lambda cordoned, draining: (False, False),
    "drain": lambda cordoned, draining: (cordoned, True),
}


async def administer(request: Request, name: str, action: str) -> ClusterState:
    """Apply an admin's ``action`` (a key of :data:`ACTIONS`) to cluster ``name``: 404 when there
    is no such cluster, 403 unless the caller may ``admin`` it. The API and the workbench both call this."""
    cluster, guard = _admin(request, name)
    cordoned, draining = ACTIONS[action](cluster.cordoned, cluster.draining)
    await request.app.state.broker.cluster_flags.set(
        cluster.name, cordoned=cordoned, draining=draining, user=guard.user
    )
    log.info("cluster %s %sed by %s", cluster.name, action, guard.user)
    return cluster


async def _answer(request: Request, action: str) -> EnvelopeResponse:
    cluster = await administer(request, request.path_params["name"], action)
    return ok(cluster_json(cluster, _errors(request), await workloads(request)))


async def cordon(request: Request) -> EnvelopeResponse:
    """Pause the cluster: no new work there; what runs there continues (``uncordon`` lifts it)."""
    return await _answer(request, "cordon")


async def uncordon(request: Request) -> EnvelopeResponse:
    """Clear a cordon and a manual drain (a removed file still drains the cluster)."""
    return await _answer(request, "uncordon")


async def drain(request: Request) -> EnvelopeResponse:
    """Drain the cluster to remove it: no new work; what runs there runs to its own end (nothing is
    evicted) and ``drained`` turns true once none of this broker's work is left (``uncordon`` undoes it)."""
    return await _answer(request, "drain")


routes = [
    Route("/api/v1/cluster", list_clusters, methods=["GET"]),
    Route("/api/v1/cluster/errors", list_errors, methods=["GET"]),
    Route("/api/v1/cluster/{name}", get_cluster, methods=["GET"]),
    Route("/api/v1/cluster/{name}/cordon", cordon, methods=["POST"]),
    Route("/api/v1/cluster/{name}/uncordon", uncordon, methods=["POST"]),
    Route("/api/v1/cluster/{name}/drain", drain, methods=["POST"]),
]
