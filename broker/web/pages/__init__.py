"""The workbench's pages, one module each; :data:`PAGES` lists their routes (paths under ``/ui/``)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from broker.web.pages import environments, models, notebooks, serving, templates

PAGES: list[BaseRoute] = [
    *notebooks.routes,
    *models.routes,
    *serving.routes,
    *environments.routes,
    *templates.routes,
]
