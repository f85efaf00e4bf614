"""``/ui/experiments``: the experiments the caller may read, newest first, 50 a page, filtered by
status, namespace, owner, cluster and a part of the name or id (a GET form: the filters stay in the
URL); each row's stop and delete are POST forms to the same path.

The rows come from :meth:`ExperimentService.browse
<broker.workloads.service.WorkloadService.browse>`: the REST API's list (same rows, order and
permission answers), chosen by the database a page at a time, so the page costs the same at
100,000 experiments as at 1,000. ``static/experiment_list.js`` re-renders the table from this URL
every 2 s (live statuses) unless the keyboard is in it, and asks before a delete.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from broker.api.access import guard_of
from broker.errors import BadRequest
from broker.experiments.service import ExperimentService
from broker.state import TERMINAL, Status
from broker.web.pages.posted import posted_fields
from broker.web.render import page
from broker.web.routes import PREFIX, html_page
from broker.workloads.listing import MAX_TEXT, Cursor, Filters, Listed

PATH = f"{PREFIX}/experiments"
PAGE_SIZE = 50
#: The query parameters of the filter form, in the form's order.
FILTERS = ("status", "namespace", "owner", "cluster", "q")
_TERMINAL = frozenset(s.value for s in TERMINAL)
#: A row's form is a few short fields.


def _service(request: Request) -> ExperimentService:
    return request.app.state.broker.experiments


def _text(query: QueryParams, name: str, limit: int = MAX_TEXT) -> str | None:
    value = (query.get(name) or "").strip()
    if len(value) > limit:
        raise BadRequest(f"{name}: at most {limit} characters", field=name)
    return value or None


def filters_of(query: QueryParams) -> Filters:
    """The filters a query string asks for; a 400 naming the field for a bad one."""
    status = None
    if raw := _text(query, "status"):
        try:
            status = Status.parse(raw)
        except ValueError as exc:
            raise BadRequest(f"status: {exc}", field="status") from None
    return Filters(
        status=status,
        namespace=_text(query, "namespace"),
        owner=_text(query, "owner"),
        cluster=_text(query, "cluster"),
        text=_text(query, "q"),
    )


def utc_iso(value: datetime | None) -> str:
    """A stored time as ISO 8601 with its zone (the database keeps UTC, some without the zone)."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def duration(row: Listed, now: datetime) -> str:
    """How long it has run (so far, or in all): ``1h 02m``, ``3m 05s``, ``12s``; empty if it never ran."""
    if row.running_at is None:
        return ""
    start = row.running_at if row.running_at.tzinfo else row.running_at.replace(tzinfo=UTC)
    end = row.finished_at or now
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    seconds = max(0, int((end - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours >= 24:
        return f"{hours // 24}d {hours % 24:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def _view(row: Listed, now: datetime) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "owner": row.owner,
        "namespace": row.namespace,
        "cluster": row.cluster,
        "failure": row.failure_category,
        "accepted": utc_iso(row.accepted_at),
        "duration": duration(row, now),
        "running": row.running_at is not None and row.finished_at is None,
        "stoppable": row.status not in _TERMINAL,
        "deletable": row.status != Status.DELETED.value,
    }


def _url(kept: dict[str, str], **extra: str) -> str:
    query = urlencode({**kept, **extra})
    return f"{PATH}?{query}" if query else PATH


@html_page
async def list_page(request: Request) -> Response:
    """The list: filters, one page of rows, links to the older and newer pages."""
    query = request.query_params
    filters = filters_of(query)
    before = Cursor.parse(query["before"], "before") if query.get("before") else None
    after = Cursor.parse(query["after"], "after") if query.get("after") and before is None else None
    result = await _service(request).browse(
        guard_of(request), filters, size=PAGE_SIZE, before=before, after=after
    )
    kept = {name: value for name in FILTERS if (value := (query.get(name) or "").strip())}
    now = datetime.now(UTC)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    clusters = sorted(c.name for c in request.app.state.broker.registry.all())
    return page(
        request,
        "experiments/list.html",
        rows=[_view(row, now) for row in result.rows],
        chosen=kept,
        filtered=bool(kept),
        statuses=[s.value for s in Status],
        namespaces=sorted({*result.namespaces, *([filters.namespace] if filters.namespace else [])}),
        clusters=sorted({*clusters, *([filters.cluster] if filters.cluster else [])}),
        older=_url(kept, before=result.older.encode()) if result.older else None,
        newer=_url(kept, after=result.newer.encode()) if result.newer else None,
        first=_url(kept) if (before or after) else None,
        here=here,
        page_size=PAGE_SIZE,
    )


def _back(text: str) -> str:
    """Where to go after an action: the list the form was on (only ever a list URL)."""
    if text == PATH or text.startswith(PATH + "?"):
        return text
    return PATH


@html_page
async def act(request: Request) -> Response:
    """A row's action (``action`` = stop or delete, ``id``), through the same service calls as
    the REST API (404 for another team's, 403 when not allowed), then back to the list."""
    form = await posted_fields(request)
    guard = guard_of(request)
    request.app.state.broker.csrf.require(request, guard.user, form.get("csrf"))
    workload_id = form.get("id", "").strip()
    if not workload_id:
        raise BadRequest("id: the experiment to act on is missing", field="id")
    action = form.get("action")
    if action == "stop":
        await _service(request).stop(workload_id, guard)
    elif action == "delete":
        await _service(request).delete(workload_id, guard)
    else:
        raise BadRequest("action: must be stop or delete", field="action")
    return RedirectResponse(_back(form.get("back", "")), status_code=303)


routes: list[BaseRoute] = [
    Route(PATH, list_page, methods=["GET"]),
    Route(PATH, act, methods=["POST"]),
]
