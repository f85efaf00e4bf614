"""The workbench's pages, one module each; :data:`PAGES` lists their routes (paths under ``/ui/``)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from broker.web.pages import clusters, experiment, experiment_list, policies, submit

PAGES: list[BaseRoute] = [
    *experiment_list.routes,
    *experiment.routes,
    *submit.routes,
    *clusters.routes,
    *policies.routes,
]
