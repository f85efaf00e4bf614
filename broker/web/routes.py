"""The workbench's routes: ``/`` leads to ``/ui/``, the static files, and each page module's routes.

A page handler is wrapped by :func:`html_page`: an :class:`~broker.errors.ApiError` the services
raise (404 for what the caller may not see, 403, 400) becomes the same status as an HTML page, not
the REST API's JSON envelope.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from broker.api.access import public
from broker.errors import ApiError
from broker.web.render import page

PREFIX = "/ui"
Handler = Callable[[Request], Awaitable[Response]]


def html_page(handler: Handler) -> Handler:
    """Answer the services' errors as HTML pages with their status."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return page(request, "error.html", status=exc.code, code=exc.code, message=exc.message)

    return wrapped


@public
async def root(request: Request) -> Response:
    """``/``: the workbench (the REST API lives under ``/api/``)."""
    return RedirectResponse(f"{PREFIX}/", status_code=303)


async def home(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/experiments", status_code=303)


def routes(pages: list[BaseRoute]) -> list[BaseRoute]:
    """The workbench's routes, ``pages`` (the page modules' routes, paths under ``/ui/``) among them."""
    return [
        Route("/", root, methods=["GET"]),
        Route(f"{PREFIX}", home, methods=["GET"]),
        Route(f"{PREFIX}/", home, methods=["GET"]),
        Mount(f"{PREFIX}/static", app=StaticFiles(packages=[("broker.web", "static")]), name="static"),
        *pages,
    ]
