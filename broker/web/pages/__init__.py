"""The workbench's pages, one module each; :data:`PAGES` lists their routes (paths under ``/ui/``)."""

from __future__ import annotations

from starlette.routing import BaseRoute

PAGES: list[BaseRoute] = []
