"""The policy in the database: the live lines, every revision, edits and reverts.

Lines are kept as their canonical CSV text. Each edit is validated whole (an invalid line refuses
the edit and the live policy does not change), applied in one transaction, and recorded as a
revision with its author, time and diff. Concurrent edits serialise on the revision number: the
loser of a race retries on top of the winner's result, so no edit is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.config.errors import ConfigError
from broker.errors import BadRequest, NotFound
from broker.state import now
from broker.store.database import Database
from broker.store.models import PolicyLineRow, PolicyRevision, User
from policies.lines import PolicyLine, PolicyLineError, parse_csv, parse_lines

MAX_RETRIES = 20
BUILTIN_ADMIN = "admin"


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


def _apply(
    session: Session, author: str, *, add: list[PolicyLine], remove: list[PolicyLine], message: str
) -> PolicySnapshot:
    live = set(session.scalars(select(PolicyLineRow.text)).all())
    added = sorted({line.csv() for line in add} - live)
    removed = sorted({line.csv() for line in remove} & live)
    revision = current_revision(session) + 1
    session.add(
        PolicyRevision(
            revision=revision, author=author, at=now(), added=added, removed=removed, message=message
        )
    )
    session.flush()  # the revision number is the lock: a concurrent edit fails here and retries
    if removed:
        session.execute(delete(PolicyLineRow).where(PolicyLineRow.text.in_(removed)))
    if added:
        by_text = {line.csv(): line for line in add}
        session.execute(insert(PolicyLineRow), [{"text": t, "ptype": by_text[t].ptype} for t in added])
    return snapshot(session)


class PolicyStore:
    """Edits and reads of the stored policy, for the API, the CLI and start-up."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _edit(
        self, author: str, add: list[PolicyLine], remove: list[PolicyLine], message: str
    ) -> PolicySnapshot:
        for _ in range(MAX_RETRIES):
            try:
                return await self.db.run(lambda s: _apply(s, author, add=add, remove=remove, message=message))
            except IntegrityError:
                continue
        raise BadRequest("the policy is being edited by others too often; try again")

    async def get(self) -> PolicySnapshot:
        return await self.db.run(snapshot)

    async def add(self, author: str, texts: list[str], message: str = "") -> PolicySnapshot:
        return await self._edit(author, _validated(texts), [], message)

    async def remove(self, author: str, texts: list[str], message: str = "") -> PolicySnapshot:
        return await self._edit(author, [], _validated(texts), message)

    async def replace(self, author: str, texts: list[str], message: str = "") -> PolicySnapshot:
        wanted = _validated(texts)
        live = (await self.get()).lines
        return await self._edit(author, wanted, [line for line in live if line not in wanted], message)

    async def revisions(self) -> list[PolicyRevision]:
        return await self.db.run(
            lambda s: list(s.scalars(select(PolicyRevision).order_by(PolicyRevision.revision)).all())
        )

    async def revert(self, author: str, revision: int) -> PolicySnapshot:
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


def seed_default_policy(db: Database, path: Path) -> bool:
    """Load the default policy when the database has never had one; True if it did so.

    Raises :class:`ConfigError` when the file is missing or has a bad line: a broker without any
    policy would refuse everyone, the admin included.
    """

    def seed(session: Session) -> bool:
        if current_revision(session) > 0:
            return False
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                str(path), f"the default policy is needed on the first start: {exc.strerror}"
            ) from None
        try:
            lines = parse_csv(text)
        except PolicyLineError as exc:
            raise ConfigError(str(path), str(exc)) from None
        _apply(session, "broker", add=lines, remove=[], message=f"default policy from {path.name}")
        if session.get(User, BUILTIN_ADMIN) is None:
            session.add(User(name=BUILTIN_ADMIN, created_at=now()))
        return True

    return db.call(seed)
