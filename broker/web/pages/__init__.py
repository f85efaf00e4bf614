"""The workbench's pages, one module each; :data:`PAGES` lists their routes (paths under ``/ui/``)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from broker.web.pages import models, notebooks, serving

PAGES: list[BaseRoute] = [
    *notebooks.routes,
    *models.routes,
    *serving.routes,
]
