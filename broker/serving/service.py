"""What the REST handlers, the CLI and the proxy do with served models: create, read, list, stop,
start, delete.

A served model is a workload of kind ``serve`` (:mod:`runtimes.serving`): placement, dispatch,
monitoring, failover, events and the verbs of :class:`~broker.workloads.service.WorkloadService`
are every kind's. What is theirs: the registered version resolved at submission (by version or
alias, from the model registry, which must hold an MLflow model with a ``python_function``
flavour) and kept in the spec under ``model``; the unique live name per namespace (``slot``); the
per-attempt server token (encrypted, like a notebook's); readiness kept by the serve watch.
Policy objects are ``serve/<id>``; calling a model through the proxy takes ``invoke`` on it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.environments.builds import warm_clusters
from broker.environments.service import EnvironmentService
from broker.errors import ApiError, BadRequest, Conflict, NotFound
from broker.guard import Guard
from broker.ids import IdGenerator
from broker.images import ImageRegistries
from broker.model_registry.service import Caller, ModelRegistry
from broker.model_registry.views import VersionView
from broker.notebooks.tokens import NotebookTokens
from broker.planner import Planner
from broker.registry import ClusterRegistry
from broker.serving import rollout
from broker.serving.handout import spec_of
from broker.serving.model_environment import model_environment
from broker.serving.replicas import ServeTarget
from broker.serving.rollout import RETIRING
from broker.serving.views import MODEL_KEY, ROLLOUT, served_model, serving_replicas
from broker.state import Status
from broker.workloads.kind import Kind
from broker.workloads.model import Workload
from broker.workloads.rows import insert_accepted, new_attempt, new_row, pinned_columns
from broker.workloads.service import WorkloadService
from broker.workloads.validation import validate_document
from clusters.base import Handle
from clusters.errors import ClusterError
from policies.placement import Decision
from runtimes.environment import EnvironmentPlan
from runtimes.environment_spec import inline_plan
from runtimes.serving import ServeSpec, ServeUpdate

log = logging.getLogger(__name__)

NOT_FOUND = "Serve not found."
DUPLICATE = "Invalid. A serve with the same name already exists."
FLAVOR = "python_function"
_MLMODEL_LIMIT = 1 << 20
_VERSION_MISSING = re.compile(r"not found", re.IGNORECASE)


def slot_of(namespace: str, name: str) -> str:
    """The unique key of a live serve name in a namespace."""
    return f"serve:{namespace}/{name}"


def version_field(spec: ServeSpec) -> str:
    """The spec field that chose the version: ``modelVersion`` or ``alias``."""
    return "alias" if spec.alias is not None else "modelVersion"


def model_record(version: VersionView, flavor: str, alias: str | None) -> dict[str, Any]:
    """The ``model`` record a serve keeps in its spec: the version it runs and how it was named."""
    return {
        "name": version.model_name,
        "version": version.version,
        "modelKey": version.model_key,
        "alias": alias,
        "flavor": flavor,
    }


class ServeService(WorkloadService):
    """Served models as users see them."""

    kind = Kind.SERVE

    def __init__(
        self,
        db: Any,
        registry: ClusterRegistry,
        ids: IdGenerator,
        *,
        default_namespace: str,
        planner: Planner,
        tokens: NotebookTokens,
        models: ModelRegistry,
        on_submitted: Callable[[], None] = lambda: None,
        images: ImageRegistries | None = None,
        environments: EnvironmentService | None = None,
    ) -> None:
        super().__init__(
            db,
            registry,
            ids,
            default_namespace=default_namespace,
            planner=planner,
            on_submitted=on_submitted,
            images=images,
            environments=environments,
        )
        self.tokens = tokens
        self.models = models

    # submission -------------------------------------------------------------------------------
    def parse(self, document: dict[str, Any]) -> ServeSpec:
        """The document as a ServeSpec, or a 400 naming every bad field (an unknown
        ``placement.cluster`` too)."""
        spec = validate_document(ServeSpec, document, self.kind)
        wanted = spec.placement.cluster
        known = self.cluster_names()
        if wanted is not None and wanted not in known:
            names = ", ".join(sorted(known)) or "none"
            raise BadRequest(
                f"Invalid serve spec: placement.cluster: unknown cluster '{wanted}' (known: {names})",
                field="placement.cluster",
            )
        return spec

    async def resolve(self, spec: ServeSpec, caller: Caller) -> tuple[VersionView, str]:
        """The registered version the spec names (by number or alias) and its served flavour; a
        400 naming the field when the model, version or alias is unknown to the caller, or the
        version holds no MLflow model with a ``python_function`` flavour."""
        field = version_field(spec)
        try:
            if spec.alias is not None:
                found = await self.models.version_by_alias(caller, spec.modelName, spec.alias)
            else:
                assert spec.modelVersion is not None  # the spec's validator makes sure
                found = await self.models.get_version(caller, spec.modelName, spec.modelVersion)
        except NotFound as exc:
            named = "modelName" if "Registered Model" in exc.message and "alias" not in exc.message else field
            raise BadRequest(f"{named}: {exc.message}", field=named) from None
        flavor = await self._flavor(caller, found, field)
        return found, flavor

    async def _flavor(self, caller: Caller, version: VersionView, field: str) -> str:
        what = f"version {version.version} of model '{version.model_name}'"
        files = await self.models.list_files(caller, version.model_key, version.version, "")
        if not any(f.path == "MLmodel" and not f.is_dir for f in files):
            raise BadRequest(
                f"{field}: {what} has no MLmodel file: only MLflow models can be served", field=field
            )
        blob = await self.models.open_file(caller, version.model_key, version.version, "MLmodel")
        data = b""
        async for chunk in blob.chunks:
            data += chunk
            if len(data) > _MLMODEL_LIMIT:
                await blob.aclose()
                break
        try:
            document = yaml.safe_load(data.decode("utf-8", "replace"))
        except yaml.YAMLError:
            document = None
        flavors = document.get("flavors") if isinstance(document, dict) else None
        if not isinstance(flavors, dict) or FLAVOR not in flavors:
            found = ", ".join(sorted(flavors)) if isinstance(flavors, dict) else "none readable"
            raise BadRequest(
                f"{field}: {what} has no {FLAVOR} flavour in its MLmodel (flavours: {found})", field=field
            )
        return FLAVOR

    async def check_pinned(
        self,
        spec: ServeSpec,
        guard: Guard,
        version: VersionView | None = None,
        caller: Caller | None = None,
    ) -> tuple[str, Decision, EnvironmentPlan | None]:
        """The namespace, the placement now and the pinned environment of a serve (403 when the
        caller may not submit serves there; 400 for an unknown environment or refused image).

        A spec that names no environment gets the one ``version`` brings (its requirements, read
        as ``caller``: :func:`~broker.serving.model_environment.model_environment`), if any."""
        self.images.check_spec(spec, self.kind)
        namespace = spec.namespace or self.planner.home_namespace(guard.user) or self.default_namespace
        guard.require(namespace, f"{self.kind}/*", "submit")
        environment = await self.pinned_environment(spec, guard)
        if environment is None and version is not None and caller is not None:
            environment = await model_environment(self.models, caller, version, field=version_field(spec))
        warm: frozenset[str] = frozenset()
        if environment is not None:
            warm = (await self.db.run(warm_clusters([environment.hash]))).get(environment.hash, frozenset())
        decision = self.planner.decide(spec, namespace, guard.user, environment=environment, warm=warm)
        return namespace, decision, environment

    async def pinned_environment(self, spec: Any, guard: Guard) -> EnvironmentPlan | None:
        if not spec.environment.name:
            return inline_plan(spec.environment)
        return await super().pinned_environment(spec, guard)

    async def create(self, document: dict[str, Any], *, guard: Guard, caller: Caller) -> Workload:
        """Store a new serve as Accepted and wake the dispatcher: 400 for a bad spec or a version
        that cannot be served, 403 without ``submit`` on ``serve/*``, 409 on a name used by a live
        serve of the namespace, 422 when no registered cluster can ever serve it. Without an
        environment in the spec, the version's ``requirements.txt`` makes one (pinned like any)."""
        spec = self.parse(document)
        version, flavor = await self.resolve(spec, caller)
        namespace, decision, environment = await self.check_pinned(spec, guard, version, caller)
        if decision.never_fits:
            raise ApiError(422, f"no registered cluster can ever serve this model: {decision.rejection}")
        name = spec.serve_name
        model = model_record(version, flavor, spec.alias)
        values = new_row(
            self.ids.next(),
            name=name,
            namespace=namespace,
            owner=guard.user,
            framework=Kind.SERVE.value,
            kind=Kind.SERVE.value,
            slot=slot_of(namespace, name),
            access_token=self.tokens.new(),
            spec={**spec.model_dump(mode="json"), "name": name, "namespace": namespace, MODEL_KEY: model},
            **pinned_columns(environment),
        )
        try:
            created = await self.db.run(insert_accepted(values, f"created by {guard.user}"))
        except IntegrityError:
            raise Conflict(f"{DUPLICATE} ({name} in namespace {namespace})") from None
        self.on_submitted()
        return created

    # reading ----------------------------------------------------------------------------------
    def not_found(self, workload_id: str) -> str:
        return NOT_FOUND

    def has_ended(self, row: Workload) -> str:
        return f"serve {row.id} is not running ({row.status})"

    async def by_path(self, namespace: str, name: str, guard: Guard, action: str = "invoke") -> Workload:
        """The live serve ``namespace/name`` if the caller may read it (else 404) and ``action``
        it (else 403): what the proxy asks with ``invoke``."""
        row = await self.db.run(
            lambda s: s.scalar(select(Workload).where(Workload.slot == slot_of(namespace, name)))
        )
        return self.visible(row, guard, action)

    async def target(self, namespace: str, name: str) -> ServeTarget | None:
        """What the proxy forwards ``namespace/name`` to (its resolver): the live serve's id, token
        and ready replicas' URLs; None when there is no such serve. Permissions are the proxy's."""
        row = await self.db.run(
            lambda s: s.scalar(select(Workload).where(Workload.slot == slot_of(namespace, name)))
        )
        if row is None or row.kind != self.kind or row.status == Status.DELETED.value:
            return None
        ready = serving_replicas(row)
        return ServeTarget(
            serve_id=row.id,
            namespace=row.namespace,
            name=row.name,
            token=self.tokens.of(row) or "",
            endpoints=tuple(ready[name] for name in sorted(ready)),
        )

    async def of_model(self, guard: Guard, model_name: str, version: int | None) -> list[Workload]:
        """The live serves of ``model_name`` (of that ``version``, when given) the caller may read."""
        rows = await self.readable(guard)
        return [
            r
            for r in rows
            if served_model(r).get("name") == model_name
            and (version is None or served_model(r).get("version") == version)
        ]

    async def delete_model_serves(self, document: dict[str, Any], guard: Guard) -> list[Workload]:
        """Submarine's ``DELETE /api/v1/serve`` (the spec in the body): delete the live serves of
        ``modelName`` ``modelVersion`` (only the one called ``name``, when given); 404 when none."""
        spec = validate_document(ServeSpec, document, self.kind)
        rows = await self.of_model(guard, spec.modelName, spec.modelVersion)
        if spec.alias is not None:
            rows = [r for r in rows if served_model(r).get("alias") == spec.alias]
        if spec.name is not None:
            rows = [r for r in rows if r.name == spec.name]
        if not rows:
            which = f"version {spec.modelVersion}" if spec.modelVersion is not None else f"alias {spec.alias}"
            raise NotFound(f"{NOT_FOUND} (no serve of model '{spec.modelName}' {which})")
        return [await self.delete(r.id, guard) for r in rows]

    # starting again ---------------------------------------------------------------------------
    async def start(self, serve_id: str, guard: Guard) -> Workload:
        """Start a stopped or failed serve again: a new attempt, same id, URL and version."""
        row = await self.get(serve_id, guard, "submit")
        if not Status(row.status).is_terminal:
            raise Conflict(f"serve {serve_id} is already {row.status}")

        def again(session: Session) -> Workload:
            current = session.get(Workload, serve_id, with_for_update=True)
            if current is None or current.status == Status.DELETED.value:
                raise NotFound(NOT_FOUND)
            if not Status(current.status).is_terminal:
                raise Conflict(f"serve {serve_id} is already {current.status}")
            new_attempt(session, current, f"started again by {guard.user}", revive=True)
            current.access_token = self.tokens.new()  # new servers, a new token
            return current

        started = await self.db.run(again)
        self.on_submitted()
        return started

    # rollout -----------------------------------------------------------------------------------
    async def update(
        self, serve_id: str, document: dict[str, Any], *, guard: Guard, caller: Caller
    ) -> Workload:
        """Serve another version of the same model (``modelVersion``, or ``alias`` to follow it):
        a rollout (:mod:`broker.serving.rollout`) when the serve is active, the version it starts
        with when it is stopped. 400 for a bad document or a version that cannot be served, 403
        without ``submit`` on the serve, 409 when it already serves that version that way."""
        change = validate_document(ServeUpdate, document, self.kind)
        row = await self.get(serve_id, guard, "submit")
        current = served_model(row)
        wanted = ServeSpec(modelName=current["name"], modelVersion=change.modelVersion, alias=change.alias)
        version, flavor = await self.resolve(wanted, caller)
        model = model_record(version, flavor, change.alias)
        if current.get("version") == model["version"] and current.get("alias") == model["alias"]:
            raise Conflict(f"serve {serve_id} already serves {rollout.version_text(model)}")
        columns = await self.environment_columns(row, version, caller, version_field(wanted))
        return await self.roll_out(row.id, model, by=guard.user, environment=columns)

    async def environment_columns(
        self, row: Workload, version: VersionView, caller: Caller, field: str
    ) -> dict[str, Any] | None:
        """The environment columns serve ``row`` takes with ``version``: those of the environment
        the version brings when the serve's spec names none (its requirements may differ from the
        old version's), else None (the spec's environment stays)."""
        spec = spec_of(row.spec or {})
        if spec.environment.name or inline_plan(spec.environment) is not None:
            return None
        return pinned_columns(await model_environment(self.models, caller, version, field=field))

    async def roll_out(
        self, serve_id: str, model: dict[str, Any], *, by: str, environment: dict[str, Any] | None = None
    ) -> Workload:
        """Start serving ``model`` (a :func:`model_record`) in serve ``serve_id``, with the
        ``environment`` columns given (else the serve's own): the write of :meth:`update`, and of
        the alias watch when an alias a serve follows moves."""
        fields = {"modelVersion": None if model["alias"] else model["version"], "alias": model["alias"]}

        def apply(session: Session) -> tuple[Workload, dict[str, Any] | None]:
            current = session.get(Workload, serve_id, with_for_update=True)
            if current is None or current.status == Status.DELETED.value:
                raise NotFound(NOT_FOUND)
            superseded = rollout.begin(session, current, model, fields, by, environment=environment)
            return current, superseded

        row, superseded = await self.db.run(apply)
        if superseded is not None:
            await self.cancel_attempt(row.id, superseded, "superseded by another rollout")
        self.on_submitted()
        return row

    async def cancel_attempt(self, serve_id: str, kept: dict[str, Any], why: str) -> bool:
        """Cancel attempt ``kept`` (a rollout's record of it) on its cluster; when the cluster
        cannot be reached, leave it to the orphan sweep. Returns whether it was cancelled."""
        cluster = self.registry.get(kept["cluster"]) if kept.get("cluster") else None
        if cluster is None or kept.get("handle") is None:
            return True
        try:
            await cluster.adapter.cancel(Handle.from_json(kept["handle"]))
        except ClusterError as exc:
            log.warning(
                "serve %s: could not cancel attempt %s (%s) on %s: %s",
                serve_id,
                kept["attempt"],
                why,
                kept["cluster"],
                cluster.config.mask(str(exc)),
            )
            await self.db.run(lambda s: rollout.supersede(s, serve_id, kept))
            return False
        return True

    async def _drop_kept(self, row: Workload, why: str) -> str:
        """Cancel the attempts a rollout keeps besides the current one (the version serving until
        the switch, the one retiring after it) and forget them; a note for the event."""
        access = row.access or {}
        kept = [r["previous"] for r in [access.get(ROLLOUT)] if r] + [r for r in [access.get(RETIRING)] if r]
        if not kept:
            return ""
        for attempt in kept:
            await self.cancel_attempt(row.id, attempt, why)

        def forget(session: Session) -> None:
            current = session.get(Workload, row.id, with_for_update=True)
            if current is not None and current.access:
                current.access = {k: v for k, v in current.access.items() if k not in (ROLLOUT, RETIRING)}

        await self.db.run(forget)
        return f"; the replicas of attempt {', '.join(str(k['attempt']) for k in kept)} stopped too"

    async def _before_delete(self, row: Workload) -> str:
        return await self._drop_kept(row, "deleted")

    async def _end(self, row: Workload, reason: str) -> Workload:
        note = await self._drop_kept(row, "stopped")
        return await super()._end(row, reason + note)

    # Last in the class: below it, ``list`` in an annotation would name this method.
    async def list(self, guard: Guard, *, status: str | None = None) -> list[Workload]:
        """Live serves the caller may read, newest first; ``status`` filters (case-insensitive)."""
        rows = await self.readable(guard)
        if status:
            rows = [r for r in rows if r.status.lower() == status.strip().lower()]
        return rows
