"""Registered environments as users see them: Submarine's create, list, get, update (a new
revision when the content changes) and delete, the revision a submission pins, and prepare
(build ahead of time on one cluster).

Environments are global: the policy is asked about ``environment/<name>`` in the domain ``*``
(``read`` to see one, ``edit`` to create, change or prepare it, ``delete`` to delete it). One the
caller may not read is not found, at submit too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.environments import builds
from broker.environments.checks import environment_spec
from broker.environments.model import BUILT, FAILED, Environment, EnvironmentBuild, EnvironmentRevision
from broker.errors import ApiError, BadRequest, Conflict, NotFound
from broker.guard import GLOBAL, Guard
from broker.ids import IdGenerator
from broker.registry import ClusterRegistry
from broker.state import TERMINAL, now
from broker.store.database import Database
from broker.workloads.model import Workload
from clusters.base import Capability
from clusters.errors import ClusterError, EnvironmentBuildFailed
from runtimes.environment import EnvironmentPlan
from runtimes.environment_spec import plan_of

NOT_FOUND = "Environment not found."
#: The spec field that names a registered environment.
NAME_FIELD = "environment.name"


def environment_object(name: str) -> str:
    """The policy object of an environment."""
    return f"environment/{name}"


@dataclass(frozen=True)
class EnvironmentView:
    """One environment at its current revision (and, when asked, its builds)."""

    id: str
    name: str
    revision: int
    spec: dict[str, Any]
    hash: str
    owner: str
    builds: Sequence[EnvironmentBuild] = field(default_factory=tuple)

    @property
    def plan(self) -> EnvironmentPlan:
        """What this revision installs, as a workload pins it."""
        return plan_of(self.name, self.spec, self.revision)

    def to_json(self, *, with_builds: bool = False) -> dict[str, Any]:
        """Submarine's Environment ``{environmentId, environmentSpec}`` plus the broker's
        ``revision`` and ``hash`` (and ``builds`` on a single environment)."""
        body: dict[str, Any] = {
            "environmentId": self.id,
            "environmentSpec": self.spec,
            "revision": self.revision,
            "hash": self.hash,
        }
        if with_builds:
            body["builds"] = [build_json(b) for b in self.builds]
        return body


def build_json(build: EnvironmentBuild) -> dict[str, Any]:
    """A build record as the API shows it."""
    return {
        "cluster": build.cluster,
        "hash": build.hash,
        "environment": build.name,
        "state": build.state,
        "message": build.message,
        "builtAt": build.built_at.isoformat(),
        "lastUsedAt": build.last_used_at.isoformat(),
    }


def _current(session: Session, row: Environment) -> EnvironmentRevision:
    found = session.get(EnvironmentRevision, (row.id, row.revision))
    if found is None:  # a revision is written with the row that names it
        raise RuntimeError(f"environment {row.name} has no revision {row.revision}")
    return found


def _view(session: Session, row: Environment, *, with_builds: bool = False) -> EnvironmentView:
    revision = _current(session, row)
    made = builds.builds_of(session, [revision.hash]) if with_builds else ()
    return EnvironmentView(
        row.id, row.name, row.revision, dict(revision.spec), revision.hash, row.owner, tuple(made)
    )


def _by_name(session: Session, name: str, *, lock: bool = False) -> Environment | None:
    query = select(Environment).where(Environment.name == name)
    return session.scalar(query.with_for_update() if lock else query)


class EnvironmentService:
    """Environments, their revisions and their builds."""

    def __init__(self, db: Database, registry: ClusterRegistry, ids: IdGenerator) -> None:
        self.db = db
        self.registry = registry
        self.ids = ids

    def _readable(self, guard: Guard, name: str) -> None:
        guard.require(GLOBAL, environment_object(name), "read", hidden=True, what=NOT_FOUND)

    async def create(self, document: Any, guard: Guard) -> EnvironmentView:
        """Register a new environment at revision 1; 409 when the name is taken."""
        spec = environment_spec(document)
        name = spec["name"]
        guard.require_explained(GLOBAL, environment_object(name), "edit")
        plan = plan_of(name, spec, 1)
        env_id = self.ids.next()

        def insert(session: Session) -> EnvironmentView:
            if _by_name(session, name) is not None:
                raise Conflict(f"environment '{name}' already exists")
            stamp = now()
            row = Environment(
                id=env_id, name=name, revision=1, owner=guard.user, created_at=stamp, updated_at=stamp
            )
            session.add(row)
            session.flush()  # the environment row before its revision
            session.add(
                EnvironmentRevision(
                    environment_id=env_id,
                    revision=1,
                    spec=spec,
                    hash=plan.hash,
                    author=guard.user,
                    created_at=stamp,
                )
            )
            return EnvironmentView(env_id, name, 1, spec, plan.hash, guard.user)

        try:
            return await self.db.run(insert)
        except IntegrityError:
            raise Conflict(f"environment '{name}' already exists") from None

    async def list(self, guard: Guard) -> list[EnvironmentView]:
        """Every environment the caller may read, by name."""

        def read(session: Session) -> list[EnvironmentView]:
            rows = session.scalars(select(Environment).order_by(Environment.name)).all()
            return [_view(session, row) for row in rows]

        return [v for v in await self.db.run(read) if guard.may(GLOBAL, environment_object(v.name), "read")]

    async def get(self, name: str, guard: Guard) -> EnvironmentView:
        """One environment at its current revision, with its builds; 404 when not there."""
        self._readable(guard, name)

        def read(session: Session) -> EnvironmentView:
            row = _by_name(session, name)
            if row is None:
                raise NotFound(NOT_FOUND)
            return _view(session, row, with_builds=True)

        return await self.db.run(read)

    async def update(self, name: str, document: Any, guard: Guard) -> EnvironmentView:
        """Replace the spec (Submarine's PATCH sends it whole). A change makes a new revision;
        work already submitted keeps the revision it pinned. The same content changes nothing."""
        self._readable(guard, name)
        spec = environment_spec(document, name=name)
        guard.require_explained(GLOBAL, environment_object(name), "edit")

        def write(session: Session) -> EnvironmentView:
            row = _by_name(session, name, lock=True)
            if row is None:
                raise NotFound(NOT_FOUND)
            if _current(session, row).spec == spec:
                return _view(session, row)
            stamp = now()
            row.revision += 1
            row.updated_at = stamp
            plan = plan_of(name, spec, row.revision)
            session.add(
                EnvironmentRevision(
                    environment_id=row.id,
                    revision=row.revision,
                    spec=spec,
                    hash=plan.hash,
                    author=guard.user,
                    created_at=stamp,
                )
            )
            return EnvironmentView(row.id, name, row.revision, spec, plan.hash, row.owner)

        return await self.db.run(write)

    async def delete(self, name: str, guard: Guard) -> EnvironmentView:
        """Delete it with its revisions; 409 while work that has not ended pinned it (its builds
        stay: they are keyed by content, and housekeeping frees them)."""
        self._readable(guard, name)
        guard.require_explained(GLOBAL, environment_object(name), "delete")

        def remove(session: Session) -> EnvironmentView:
            row = _by_name(session, name, lock=True)
            if row is None:
                raise NotFound(NOT_FOUND)
            users = _users(session, row)
            if users:
                shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
                raise Conflict(
                    f"environment '{name}' is used by work that has not ended ({shown}); "
                    "delete it once they end"
                )
            view = _view(session, row)
            session.delete(row)
            return view

        return await self.db.run(remove)

    async def pinned(self, name: str, guard: Guard) -> EnvironmentPlan:
        """The plan of ``name``'s current revision, as a submission pins it; 400 naming
        ``environment.name`` when there is no such environment the caller may read."""
        unknown = BadRequest(f"{NAME_FIELD}: no environment named '{name}'", field=NAME_FIELD)
        if not guard.may(GLOBAL, environment_object(name), "read"):
            raise unknown

        def read(session: Session) -> EnvironmentView | None:
            row = _by_name(session, name)
            return _view(session, row) if row is not None else None

        found = await self.db.run(read)
        if found is None:
            raise unknown
        return found.plan

    async def prepare(self, name: str, cluster_name: str, guard: Guard) -> dict[str, Any]:
        """Build ``name``'s current revision on a cluster now; answers the build record.

        404 for an unknown environment or cluster, 400 when the cluster's kind keeps no
        environment cache or cannot apply this environment (the reason), 422 when the build
        fails (the installer's line), 503 when the cluster cannot be asked."""
        view = await self.get(name, guard)
        guard.require_explained(GLOBAL, environment_object(name), "edit")
        missing = f"cluster '{cluster_name}' is not registered"
        guard.require(GLOBAL, f"cluster/{cluster_name}", "read", hidden=True, what=missing)
        cluster = self.registry.get(cluster_name)
        if cluster is None:
            raise NotFound(missing)
        adapter = cluster.adapter
        if Capability.ENVIRONMENT_CACHE not in adapter.capabilities:
            raise BadRequest(
                f"cluster: '{cluster_name}' is a {adapter.kind} cluster, which keeps no environment "
                "cache: it applies an environment when work starts",
                field="cluster",
            )
        plan = view.plan
        problem = adapter.environment_problem(plan)
        if problem:
            raise BadRequest(
                f"cluster: '{cluster_name}' cannot apply environment {name}: {problem}", field="cluster"
            )
        try:
            await adapter.prepare_environment(plan)
        except EnvironmentBuildFailed as exc:
            message = cluster.config.mask(str(exc))
            await self.db.run(lambda s: builds.record_build(s, cluster_name, plan, FAILED, message))
            raise ApiError(422, f"environment {name} failed to build on {cluster_name}: {message}") from None
        except ClusterError as exc:
            raise ApiError(
                503, f"cannot prepare on cluster {cluster_name}: {cluster.config.mask(str(exc))}"
            ) from None

        def done(session: Session) -> dict[str, Any]:
            return build_json(builds.record_build(session, cluster_name, plan, BUILT))

        return await self.db.run(done)


def _users(session: Session, row: Environment) -> list[str]:
    """The workloads that have not ended and pinned a revision of ``row``."""
    hashes = session.scalars(
        select(EnvironmentRevision.hash).where(EnvironmentRevision.environment_id == row.id)
    ).all()
    if not hashes:
        return []
    query = select(Workload.id, Workload.environment).where(
        Workload.environment_hash.in_(sorted(set(hashes))),
        Workload.status.not_in([s.value for s in TERMINAL]),
    )
    return sorted(
        workload_id
        for workload_id, pinned in session.execute(query)
        if isinstance(pinned, dict) and pinned.get("name") == row.name
    )
