"""The policy in the database: the live lines, every revision, edits and reverts.

Lines are kept as their canonical CSV text. Each edit is validated whole (an invalid line refuses
the edit and the live policy does not change), applied in one transaction, and recorded as a
revision with its author, time and diff. An edit that changes nothing makes no revision, and one
that would leave no user able to edit the policy is refused (409) naming the lines that would do
it. Concurrent edits serialise on the revision number: the loser of a race retries on top of the
winner's result (and is checked again), so no edit is lost and no two edits lock everyone out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.config.errors import ConfigError
from broker.errors import BadRequest, Conflict, NotFound
from broker.state import now
from broker.store.database import Database
from broker.store.models import ApiToken, PolicyLineRow, PolicyRevision, User
from policies.lines import PolicyLine, PolicyLineError, parse_csv, parse_lines
from policies.lockout import can_touch_edit, find_lockout

MAX_RETRIES = 20
BUILTIN_ADMIN = "admin"
#: The author of the revision ``submarine-broker policy reset`` makes.
RECOVERY_AUTHOR = "recovery"


@dataclass(frozen=True)
class PolicySnapshot:
    """The live policy at one revision."""

    revision: int
    lines: list[PolicyLine]

    def to_json(self) -> dict[str, object]:
        return {"revision": self.revision, "lines": [line.csv() for line in self.lines]}


def _validated(texts: list[str], field: str = "lines") -> list[PolicyLine]:
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise BadRequest(f"{field}: must be a list of policy lines (strings)", field=field)
    try:
        return parse_lines(texts)
    except PolicyLineError as exc:
        raise BadRequest(f"{field}: {exc}; the policy was not changed", field=field) from None


def current_revision(session: Session) -> int:
    return session.scalar(select(func.max(PolicyRevision.revision))) or 0


def snapshot(session: Session) -> PolicySnapshot:
    """The live lines (sorted by text, so listings are stable) and their revision."""
    texts = session.scalars(select(PolicyLineRow.text).order_by(PolicyLineRow.text)).all()
    return PolicySnapshot(current_revision(session), parse_lines(list(texts)))


def _changes(
    live: set[str], add: list[PolicyLine], remove: list[PolicyLine], *, replace: bool
) -> tuple[list[str], list[str]]:
    """The texts an edit really adds and removes; ``replace`` removes every live line not in ``add``."""
    wanted = {line.csv() for line in add}
    added = sorted(wanted - live)
    removed = sorted(live - wanted) if replace else sorted({line.csv() for line in remove} & live)
    return added, removed


def _write(
    session: Session,
    author: str,
    added: list[str],
    removed: list[str],
    ptypes: dict[str, str],
    message: str,
    *,
    based_on: int,
) -> None:
    """Record revision ``based_on + 1`` and change the live lines (texts, so a broken line can
    still be removed). ``based_on`` is the revision read *before* the live lines the change was
    decided on: an edit committed in between then holds that number, and this one fails and retries
    on what it changed (statements read what is committed when each runs, not at the transaction's
    start, so reading the revision last would miss it and decide on stale lines)."""
    revision = based_on + 1
    session.add(
        PolicyRevision(
            revision=revision, author=author, at=now(), added=added, removed=removed, message=message
        )
    )
    session.flush()  # the revision number is the lock: a concurrent edit fails here and retries
    if removed:
        session.execute(delete(PolicyLineRow).where(PolicyLineRow.text.in_(removed)))
    if added:
        session.execute(insert(PolicyLineRow), [{"text": t, "ptype": ptypes[t]} for t in added])


def _apply(
    session: Session, author: str, *, add: list[PolicyLine], remove: list[PolicyLine], message: str
) -> PolicySnapshot:
    """Add and remove lines as one revision (none when nothing would change); the live policy after."""
    based_on = current_revision(session)
    live = set(session.scalars(select(PolicyLineRow.text)).all())
    added, removed = _changes(live, add, remove, replace=False)
    if added or removed:
        ptypes = {line.csv(): line.ptype for line in add}
        _write(session, author, added, removed, ptypes, message, based_on=based_on)
    return snapshot(session)


@dataclass(frozen=True)
class PolicyEdit:
    """What an edit did: the live policy after it and the lines it really added and removed.

    An edit asking for what is there already (adding a present line, removing an absent one)
    changes nothing and makes no revision.
    """

    snapshot: PolicySnapshot
    added: list[str]
    removed: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def to_json(self) -> dict[str, object]:
        return {
            **self.snapshot.to_json(),
            "changed": self.changed,
            "added": self.added,
            "removed": self.removed,
        }


def callers(session: Session, auth: str) -> list[str]:
    """The users who can call the API: with ``auth: token`` those holding a live token, else every
    known user (``auth: none`` makes every request the built-in admin, but the stored policy should
    still work the day the broker moves to tokens)."""
    if auth == "token":
        query = select(ApiToken.user).where(ApiToken.revoked_at.is_(None)).distinct()
    else:
        query = select(User.name)
    return sorted(session.scalars(query).all())


def refuse_lockout(session: Session, auth: str, live: set[str], added: list[str], removed: list[str]) -> None:
    """Raise :class:`Conflict` naming the lines when the edit would leave nobody able to edit the policy."""
    if not any(can_touch_edit(line) for line in parse_lines([*added, *removed])):
        return  # skip the users query and the policy rebuilds for the everyday edits
    after = (live - set(removed)) | set(added)
    found = find_lockout(parse_lines(sorted(live)), parse_lines(sorted(after)), callers(session, auth))
    if found is not None:
        raise Conflict(found.message("user with an API token" if auth == "token" else "user"))


class PolicyStore:
    """Edits and reads of the stored policy, for the API, the CLI and start-up.

    ``auth`` is the broker's mode; it decides who counts as able to call the API when an edit is
    checked for a lockout (see :func:`callers`).
    """

    def __init__(self, db: Database, *, auth: str = "none") -> None:
        self.db = db
        self.auth = auth

    def _edit_in(
        self,
        session: Session,
        author: str,
        add: list[PolicyLine],
        remove: list[PolicyLine],
        message: str,
        replace: bool,
    ) -> PolicyEdit:
        based_on = current_revision(session)
        live = set(session.scalars(select(PolicyLineRow.text)).all())
        added, removed = _changes(live, add, remove, replace=replace)
        if not added and not removed:
            return PolicyEdit(snapshot(session), [], [])
        refuse_lockout(session, self.auth, live, added, removed)
        ptypes = {line.csv(): line.ptype for line in add}
        _write(session, author, added, removed, ptypes, message, based_on=based_on)
        return PolicyEdit(snapshot(session), added, removed)

    async def _edit(
        self,
        author: str,
        add: list[PolicyLine],
        remove: list[PolicyLine],
        message: str,
        *,
        replace: bool = False,
    ) -> PolicyEdit:
        for _ in range(MAX_RETRIES):
            try:
                return await self.db.run(lambda s: self._edit_in(s, author, add, remove, message, replace))
            except IntegrityError:
                continue
        raise BadRequest("the policy is being edited by others too often; try again")

    async def get(self) -> PolicySnapshot:
        return await self.db.run(snapshot)

    async def add(self, author: str, texts: list[str], message: str = "") -> PolicyEdit:
        return await self._edit(author, _validated(texts), [], message)

    async def remove(self, author: str, texts: list[str], message: str = "") -> PolicyEdit:
        return await self._edit(author, [], _validated(texts), message)

    async def replace(self, author: str, texts: list[str], message: str = "") -> PolicyEdit:
        """Make ``texts`` the whole policy: lines not among them are removed, in the same transaction."""
        return await self._edit(author, _validated(texts), [], message, replace=True)

    async def revisions(self) -> list[PolicyRevision]:
        return await self.db.run(
            lambda s: list(s.scalars(select(PolicyRevision).order_by(PolicyRevision.revision)).all())
        )

    async def revert(self, author: str, revision: int) -> PolicyEdit:
        """Make the live policy what it was right after ``revision`` (itself a new revision)."""
        history = await self.revisions()
        if not any(r.revision == revision for r in history):
            raise NotFound(f"Not found policy revision: {revision}")
        state: set[str] = set()
        for step in history:
            if step.revision > revision:
                break
            state = (state - set(step.removed)) | set(step.added)
        return await self.replace(author, sorted(state), f"revert to revision {revision}")


def reset_policy(session: Session, lines: list[PolicyLine], *, source: str) -> PolicyEdit:
    """Make ``lines`` (the default policy) the whole live policy, as a revision authored ``recovery``.

    The way back from a policy that locks everyone out, run offline on the database: it reads the
    live lines as plain text and never parses them, so it works whatever state they are in, and it
    is not checked for a lockout (the default policy is what the operator chose to trust).
    """
    based_on = current_revision(session)
    live = set(session.scalars(select(PolicyLineRow.text)).all())
    added, removed = _changes(live, lines, [], replace=True)
    if added or removed:
        ptypes = {line.csv(): line.ptype for line in lines}
        _write(
            session, RECOVERY_AUTHOR, added, removed, ptypes, f"policy reset to {source}", based_on=based_on
        )
    return PolicyEdit(snapshot(session), added, removed)


def read_policy_file(path: Path, why: str = "cannot read the default policy") -> list[PolicyLine]:
    """The lines of a policy file; :class:`ConfigError` naming the file when it is missing or bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"{why}: {exc.strerror}") from None
    try:
        return parse_csv(text)
    except PolicyLineError as exc:
        raise ConfigError(str(path), str(exc)) from None


def seed_default_policy(db: Database, path: Path) -> bool:
    """Load the default policy when the database has never had one; True if it did so.

    Raises :class:`ConfigError` when the file is missing or has a bad line: a broker without any
    policy would refuse everyone, the admin included.
    """

    def seed(session: Session) -> bool:
        if current_revision(session) > 0:
            return False
        lines = read_policy_file(path, "the default policy is needed on the first start")
        _apply(session, "broker", add=lines, remove=[], message=f"default policy from {path.name}")
        if session.get(User, BUILTIN_ADMIN) is None:
            session.add(User(name=BUILTIN_ADMIN, created_at=now()))
        return True

    return db.call(seed)
