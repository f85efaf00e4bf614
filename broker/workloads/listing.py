"""One page of a kind's workloads a caller may read, asked of the database: the list the
workbench shows, fast however many workloads there are.

:meth:`WorkloadService.readable <broker.workloads.service.WorkloadService.readable>` reads every row
and asks the policy about each; this gives the same rows in the same order (newest first) but lets
the database do the choosing: the policy tells, per namespace, which ``<kind>/<id>`` objects the
caller may read (:meth:`policies.authorizer.Authorizer.scope`: everything, nothing, or some ids by
exact value or prefix, since keyMatch patterns are prefixes), and each namespace is one query
walking the ``(namespace, kind, accepted_at, id)`` index down from a keyset cursor, stopping after
a page. The namespaces are found by a loose index scan (one index probe per namespace), and a
caller who may read everything everywhere walks the ``(kind, accepted_at, id)`` index once.

No total is counted (counting 100,000 rows costs what reading them does): a page says whether
older and newer rows exist.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, false, func, not_, or_, select, text, true, tuple_
from sqlalchemy.orm import Session

from broker.errors import BadRequest
from broker.guard import Guard
from broker.state import Status
from broker.workloads.kind import Kind
from broker.workloads.model import Workload
from policies.authorizer import ObjectScope

#: The longest free-text filter (name or id).
MAX_TEXT = 128

#: What a list row carries: enough for a table, not the spec.
COLUMNS = (
    Workload.id,
    Workload.name,
    Workload.status,
    Workload.owner,
    Workload.namespace,
    Workload.cluster,
    Workload.accepted_at,
    Workload.running_at,
    Workload.finished_at,
    Workload.failure_category,
)


@dataclass(frozen=True)
class Listed:
    """One row of a list: the workload's columns a table shows."""

    id: str
    name: str
    status: str
    owner: str
    namespace: str
    cluster: str | None
    accepted_at: datetime
    running_at: datetime | None
    finished_at: datetime | None
    failure_category: str | None

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.accepted_at, self.id)


@dataclass(frozen=True, order=True)
class Cursor:
    """A place in the newest-first order: a row's ``(accepted_at, id)``."""

    accepted_at: datetime
    id: str

    def encode(self) -> str:
        """The cursor as text for a URL: ``<accepted_at ISO>_<id>``."""
        return f"{self.accepted_at.isoformat()}_{self.id}"

    @classmethod
    def parse(cls, raw: str, name: str) -> Cursor:
        """A cursor from :meth:`encode`, or a 400 naming the query parameter ``name``."""
        at, sep, workload_id = raw.partition("_")
        try:
            if not sep or not workload_id:
                raise ValueError(raw)
            when = datetime.fromisoformat(at)
        except ValueError:
            raise BadRequest(f"{name}: '{raw[:80]}' is not a place in the list", field=name) from None
        return cls(when if when.tzinfo else when.replace(tzinfo=UTC), workload_id)


@dataclass(frozen=True)
class Filters:
    """What narrows the list; every field optional. ``text`` is a case-insensitive part of the
    name or id; the others are exact."""

    status: Status | None = None
    namespace: str | None = None
    owner: str | None = None
    cluster: str | None = None
    text: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = [
            Workload.status == self.status.value if self.status else Workload.status != Status.DELETED.value
        ]
        if self.owner:
            where.append(Workload.owner == self.owner)
        if self.cluster:
            where.append(Workload.cluster == self.cluster)
        if self.text:
            needle = self.text.lower()
            where.append(
                or_(
                    Workload.name.contains(needle, autoescape=True),
                    func.lower(Workload.id).contains(needle, autoescape=True),
                )
            )
        return where


@dataclass(frozen=True)
class Page:
    """One page, newest first; ``older``/``newer`` are the cursors of the pages beside it (None
    where the list ends)."""

    rows: list[Listed]
    older: Cursor | None = None
    newer: Cursor | None = None
    namespaces: list[str] = field(default_factory=list)


def objects_in(scope: ObjectScope) -> ColumnElement[bool]:
    """``scope`` (ids allowed in one namespace) as a condition on ``Workload.id``.

    Prefixes are compared with ``substr`` rather than ``LIKE``: keyMatch is case-sensitive and
    knows no ``%`` or ``_``, and neither does an equality."""

    def matches(every: bool, exact: frozenset[str], prefixes: frozenset[str]) -> ColumnElement[bool]:
        if every:
            return true()
        found: list[ColumnElement[bool]] = []
        if exact:
            found.append(Workload.id.in_(sorted(exact)))
        found.extend(func.substr(Workload.id, 1, len(p)) == p for p in sorted(prefixes))
        return or_(*found) if found else false()

    allowed = matches(scope.allow_all, scope.allow_exact, scope.allow_prefixes)
    if scope.deny_exact or scope.deny_prefixes:
        return and_(allowed, not_(matches(False, scope.deny_exact, scope.deny_prefixes)))
    return allowed


def namespaces(session: Session) -> list[str]:
    """Every namespace any workload is in, by a loose index scan: one probe of the namespace
    index per namespace, not a pass over the rows (SQLite and PostgreSQL alike)."""
    table = Workload.__tablename__
    query = text(
        f"WITH RECURSIVE ns(name) AS ("
        f" SELECT MIN(namespace) FROM {table}"
        f" UNION ALL"
        f" SELECT (SELECT MIN(namespace) FROM {table} WHERE namespace > ns.name) FROM ns"
        f" WHERE ns.name IS NOT NULL"
        f") SELECT name FROM ns WHERE name IS NOT NULL"
    )
    return [row[0] for row in session.execute(query)]


def read_page(
    session: Session,
    guard: Guard,
    kind: Kind,
    filters: Filters,
    *,
    size: int,
    before: Cursor | None = None,
    after: Cursor | None = None,
) -> Page:
    """The ``size`` newest rows older than ``before`` (default: the newest), or with ``after`` the
    ``size`` rows just newer than it, that ``guard``'s caller may read; see the module's docstring."""
    known = namespaces(session)
    scopes = {ns: guard.scope(ns, str(kind)) for ns in known}
    shown = sorted(ns for ns, scope in scopes.items() if not scope.nothing)
    if filters.namespace is not None:
        scopes = {ns: s for ns, s in scopes.items() if ns == filters.namespace}
    readable = {ns: s for ns, s in scopes.items() if not s.nothing}
    base = [Workload.kind == kind.value, *filters.conditions()]
    newest_first = after is None
    if before is not None:
        base.append(tuple_(Workload.accepted_at, Workload.id) < (before.accepted_at, before.id))
    if after is not None:
        base.append(tuple_(Workload.accepted_at, Workload.id) > (after.accepted_at, after.id))
    wanted = size + 1  # one more than a page says whether there is more
    if newest_first:
        order = (Workload.accepted_at.desc(), Workload.id.desc())
    else:
        order = (Workload.accepted_at.asc(), Workload.id.asc())

    def fetch(where: Iterable[ColumnElement[bool]]) -> list[Listed]:
        query = select(*COLUMNS).where(*base, *where).order_by(*order).limit(wanted)
        return [Listed(**row._asdict()) for row in session.execute(query)]

    if (
        readable
        and len(readable) == len(scopes)
        and filters.namespace is None
        and all(s.everything for s in readable.values())
    ):
        found = fetch([])  # everything everywhere: one walk, no namespace condition
    else:
        # One ordered walk per namespace, merged: each stops after a page whatever its size.
        found = list(
            heapq.merge(
                *(fetch([Workload.namespace == ns, objects_in(s)]) for ns, s in sorted(readable.items())),
                key=lambda row: (row.accepted_at, row.id),
                reverse=newest_first,
            )
        )[:wanted]
    more = len(found) > size
    rows = found[:size]
    if after is not None:
        if not more:  # fewer than a page is newer: that is the first page
            return read_page(session, guard, kind, filters, size=size)
        rows.reverse()
        return Page(rows, older=rows[-1].cursor, newer=rows[0].cursor, namespaces=shown)
    older = rows[-1].cursor if more and rows else None
    newer = rows[0].cursor if before is not None and rows else None
    return Page(rows, older=older, newer=newer, namespaces=shown)
