"""Experiment templates: store, read, change, delete, and submit experiments from them.

Permissions: a template belongs to a namespace (the ``namespace`` field, else the creator's
first team, else the broker's default); the object is ``template/<name>`` with ``read``,
``edit`` (create, replace) and ``delete``. A template marked ``shared`` (which takes ``admin`` on
it) is readable by everyone. What the caller may not read is 404 ``ExperimentTemplate not
found.``, as for a template that does not exist; what they may read but not change is 403 naming
the deny line when one decided. Submitting from a template needs read on it and then whatever a
submission of the filled spec needs (:meth:`ExperimentService.create`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.errors import BadRequest, Conflict, NotFound
from broker.experiments.service import ExperimentService
from broker.guard import Forbidden, Guard
from broker.templates.model import TemplateRow
from broker.templates.spec import (
    TemplateSpec,
    check_template,
    fill,
    given_params,
    parse_template,
    with_role_params,
)
from broker.workloads.model import Workload

READ, EDIT, DELETE, ADMIN = "read", "edit", "delete", "admin"
MISSING = "ExperimentTemplate not found."


def template_object(name: str) -> str:
    return f"template/{name}"


def spec_of(row: TemplateRow) -> TemplateSpec:
    """The stored template as the API shows it."""
    return replace(parse_template(row.spec), namespace=row.namespace, shared=row.shared)


def _now_ms() -> int:
    return int(time.time() * 1000)


class TemplateService:
    """Templates on the experiments' database; submissions go through ``experiments``."""

    def __init__(self, experiments: ExperimentService) -> None:
        self.experiments = experiments
        self.db = experiments.db

    def _may_read(self, guard: Guard, row: TemplateRow) -> bool:
        return row.shared or guard.may(row.namespace, template_object(row.name), READ)

    async def _row(self, name: str, guard: Guard) -> TemplateRow:
        row = await self.db.run(lambda s: s.scalar(select(TemplateRow).where(TemplateRow.name == name)))
        if row is None or not self._may_read(guard, row):
            raise NotFound(MISSING)
        return row

    def _home(self, guard: Guard) -> str:
        planner = self.experiments.planner
        return planner.home_namespace(guard.user) or self.experiments.default_namespace

    def _checked(self, document: dict[str, Any]) -> TemplateSpec:
        spec = with_role_params(parse_template(document))
        check_template(spec, self.experiments.limits)
        return spec

    @staticmethod
    def _may_share(guard: Guard, namespace: str, name: str, shared: bool | None, before: bool) -> None:
        if shared is not None and shared != before:
            try:
                guard.require_explained(namespace, template_object(name), ADMIN)
            except Forbidden as exc:
                raise Forbidden(f"{exc.message} (sharing a template with every team is an admin's)") from None

    @staticmethod
    def _stored(spec: TemplateSpec) -> dict[str, Any]:
        shown = spec.to_json()
        shown.pop("namespace")
        shown.pop("shared")
        return shown

    async def create(self, document: dict[str, Any], guard: Guard) -> tuple[TemplateRow, TemplateSpec]:
        """Store a new template (409 when the name is taken, whoever holds it)."""
        spec = self._checked(document)
        namespace = spec.namespace or self._home(guard)
        guard.require_explained(namespace, template_object(spec.name), EDIT)
        self._may_share(guard, namespace, spec.name, spec.shared, False)
        stamp = _now_ms()
        row = TemplateRow(
            name=spec.name,
            namespace=namespace,
            shared=bool(spec.shared),
            owner=guard.user,
            spec=self._stored(spec),
            created_ms=stamp,
            updated_ms=stamp,
        )

        def insert(session: Session) -> TemplateRow:
            session.add(row)
            session.flush()
            return row

        try:
            stored = await self.db.run(insert)
        except IntegrityError:
            raise Conflict(f"ExperimentTemplate {spec.name} already exists") from None
        return stored, spec_of(stored)

    async def list(self, guard: Guard) -> list[TemplateSpec]:
        """Every template the caller may read (their teams' and the shared ones), by name."""
        rows = await self.db.run(lambda s: list(s.scalars(select(TemplateRow).order_by(TemplateRow.name))))
        return [spec_of(r) for r in rows if self._may_read(guard, r)]

    async def get(self, name: str, guard: Guard) -> TemplateSpec:
        return spec_of(await self._row(name, guard))

    async def update(
        self, name: str, document: dict[str, Any], guard: Guard
    ) -> tuple[TemplateRow, TemplateSpec]:
        """Replace a template's spec (Submarine's PATCH sends the whole spec). The body's name, when
        given, must be the path's; ``namespace`` moves it (edit needed in both), ``shared`` is
        an admin's; either absent keeps what it was."""
        row = await self._row(name, guard)
        body_name = document.get("name")
        if body_name is not None and body_name != name:
            raise BadRequest(
                f"name: template {name} keeps its name (the body says {str(body_name)[:128]!r}); "
                "create a new template for a new name",
                field="name",
            )
        spec = self._checked({**document, "name": name})
        guard.require_explained(row.namespace, template_object(name), EDIT)
        namespace = spec.namespace or row.namespace
        if namespace != row.namespace:
            guard.require_explained(namespace, template_object(name), EDIT)
        self._may_share(guard, namespace, name, spec.shared, row.shared)
        shared = row.shared if spec.shared is None else spec.shared
        stored = self._stored(spec)
        stamp = _now_ms()

        def write(session: Session) -> TemplateRow | None:
            found = session.get(TemplateRow, row.id)
            if found is None:
                return None
            found.spec, found.namespace, found.shared, found.updated_ms = stored, namespace, shared, stamp
            session.flush()
            return found

        updated = await self.db.run(write)
        if updated is None:
            raise NotFound(MISSING)
        return updated, spec_of(updated)

    async def delete(self, name: str, guard: Guard) -> TemplateSpec:
        row = await self._row(name, guard)
        guard.require_explained(row.namespace, template_object(name), DELETE)

        def remove(session: Session) -> bool:
            found = session.get(TemplateRow, row.id)
            if found is None:
                return False
            session.delete(found)
            return True

        if not await self.db.run(remove):
            raise NotFound(MISSING)
        return spec_of(row)

    async def submit(
        self, name: str, body: dict[str, Any], guard: Guard, *, idempotency_key: str | None = None
    ) -> Workload:
        """An experiment from template ``name`` with the body's ``params``; it records the
        template's name and the params given (a value that lands in a secret field masked)."""
        spec = spec_of(await self._row(name, guard))
        filled = fill(spec, given_params(body.get("params")))
        origin = {"name": spec.name, "namespace": spec.namespace, "params": filled.params}
        return await self.experiments.create(
            filled.document, guard=guard, idempotency_key=idempotency_key, template=origin
        )
