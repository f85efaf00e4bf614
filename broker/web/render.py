"""Rendering the workbench's pages: one Jinja2 environment over this package's templates, and the
context every page gets (the caller, the auth mode, the CSRF token, the navigation)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from broker.api.access import guard_of
from broker.guard import Guard

#: The pages of the navigation bar: (path under /ui/, label).
NAVIGATION = (
    ("experiments", "Experiments"),
    ("submit", "Submit"),
    ("notebooks", "Notebooks"),
    ("models", "Models"),
    ("serving", "Serving"),
    ("environments", "Environments"),
    ("templates", "Templates"),
    ("clusters", "Clusters"),
    ("policies", "Policies"),
)
#: Every page's headers: nothing from another origin, no framing, no sniffing, no referrer.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    # Not no-referrer: with it, a browser sends "Origin: null" on the page's own form posts.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

_environment = Environment(
    loader=PackageLoader("broker.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def iso(value: datetime | str | None) -> str:
    """A time as ISO 8601 in UTC (the page's script shows it in the viewer's time zone)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else value.isoformat()


_environment.filters["iso"] = iso


def page(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """``template`` rendered for ``request``'s caller, with the common context."""
    broker = request.app.state.broker
    guard: Guard = guard_of(request)
    common = {
        "request": request,
        "user": guard.user,
        "auth": broker.config.auth,
        "csrf": broker.csrf.issue(request, guard.user),
        "navigation": NAVIGATION,
        "active": template.split("/")[0].removesuffix(".html"),
    }
    html = _environment.get_template(template).render(**common, **context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)
