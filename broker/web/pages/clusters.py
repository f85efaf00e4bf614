"""``/ui/clusters``: the federation at a glance, and an admin's cordon, uncordon and drain.

The page lists what ``GET /api/v1/cluster`` lists (the same functions: the clusters the caller may
read, the refused files of clusters.d they may hear of); the table refreshes itself (``data-live``).
Actions show only on clusters the caller may ``admin``, and post to
``/ui/clusters/<name>/<action>``, which calls what the REST API calls
(:func:`broker.api.clusters.administer`): anyone else is refused there too (403 page).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from broker.api.access import guard_of
from broker.api.clusters import ACTIONS, administer, visible_clusters, visible_errors
from broker.errors import NotFound
from broker.guard import GLOBAL
from broker.web.pages.form_body import checked_form
from broker.web.render import page
from broker.web.routes import PREFIX, html_page

_GIB = 1024**3


def _amount(kind: str, value: float) -> str:
    if kind == "memory":
        return f"{value / _GIB:.1f} GiB" if value >= _GIB / 10 or not value else f"{value / 1024**2:.0f} MiB"
    return f"{value:g}"


def capacity_bars(capacity: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Per resource: total, free, the used share (0..100 for the bar) and a sentence for readers."""
    bars = []
    for kind, label in (("cpu", "CPU"), ("memory", "Memory"), ("gpu", "GPU")):
        total, free = capacity["total"][kind], capacity["free"][kind]
        used = min(100.0, max(0.0, 100 * (total - free) / total)) if total else 0.0
        bars.append(
            {
                "kind": kind,
                "label": label,
                "total": _amount(kind, total),
                "free": _amount(kind, free),
                "used": round(used, 1),
                "none": not total,
                "text": f"{label}: {_amount(kind, free)} free of {_amount(kind, total)}",
            }
        )
    return bars


@html_page
async def clusters_page(request: Request) -> Response:
    guard = guard_of(request)
    clusters = await visible_clusters(request, guard)
    for cluster in clusters:
        cluster["bars"] = capacity_bars(cluster["capacity"])
        cluster["mayAdmin"] = guard.may(GLOBAL, f"cluster/{cluster['name']}", "admin")
    done = request.query_params.get("done", "")
    action, _, name = done.partition(":")
    known = action in ACTIONS and any(c["name"] == name for c in clusters)
    return page(
        request,
        "clusters/list.html",
        clusters=clusters,
        errors=visible_errors(request, guard),
        admin=any(c["mayAdmin"] for c in clusters),
        done=(action, name) if known else None,
    )


@html_page
async def cluster_action(request: Request) -> Response:
    """An admin's cordon, uncordon or drain from the page, then back to the list."""
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise NotFound(f"Not found: {request.url.path}")
    await checked_form(request)
    cluster = await administer(request, request.path_params["name"], action)
    return RedirectResponse(f"{PREFIX}/clusters?done={action}:{cluster.name}", status_code=303)


routes = [
    Route(f"{PREFIX}/clusters", clusters_page, methods=["GET"]),
    Route(f"{PREFIX}/clusters/{{name}}/{{action}}", cluster_action, methods=["POST"]),
]
