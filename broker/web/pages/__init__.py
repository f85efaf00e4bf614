"""The workbench's pages, one module each; :data:`PAGES` lists their routes (paths under ``/ui/``)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from broker.web.pages import (
    clusters,
    environments,
    experiment,
    experiment_list,
    models,
    notebooks,
    policies,
    serving,
    submit,
    templates,
)

PAGES: list[BaseRoute] = [
    *experiment_list.routes,
    *experiment.routes,
    *submit.routes,
    *notebooks.routes,
    *models.routes,
    *serving.routes,
    *environments.routes,
    *templates.routes,
    *clusters.routes,
    *policies.routes,
]
