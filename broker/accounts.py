"""Users, teams and API tokens.

A user row is an identity; what a user may do lives in the policy (``g`` lines make a user a
member of a team or an admin, ``p`` lines grant or deny). Tokens look like
``sbk_<id>_<secret>``; only the SHA-256 of the secret is stored, so a database leak does not leak
working tokens, and the id lets a token be found without scanning.

A token is checked against its row on every request (:func:`lookup_token`), so a revocation binds
every broker sharing the database at once; its ``last_used_at`` is written at most once a minute
(:func:`record_use`).
Revoked tokens keep their row (who had access, and until when).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update
from sqlalchemy.orm import Session

from broker.policy_store import _apply
from broker.state import now
from broker.store.database import Database
from broker.store.models import ApiToken, Team, User
from policies.lines import parse_lines

_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$")
_TEAM = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TOKEN = re.compile(r"^sbk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")
_TOKEN_ID = re.compile(r"^[0-9a-f]{12}$")
#: ``last_used_at`` is written when it is at least this old (or unset): not on every request.
LAST_USED_PRECISION = timedelta(seconds=60)


class AccountError(ValueError):
    """A refused account operation; the message says why."""


@dataclass(frozen=True)
class NewToken:
    user: str
    token_id: str
    token: str  # shown once, never stored


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def add_user(session: Session, name: str, *, teams: list[str], admin: bool, author: str) -> list[str]:
    """Create a user, the teams it joins and the policy lines that make it a member (or admin).

    Returns the policy lines added. Refuses a name taken already or invalid names.
    """
    if not _NAME.match(name):
        raise AccountError(f"'{name}' is not a valid user name (lower-case letters, digits, '.', '_', '-')")
    for team in teams:
        if not _TEAM.match(team):
            raise AccountError(
                f"'{team}' is not a valid team name (a DNS label: lower-case letters, digits, '-')"
            )
    if session.get(User, name) is not None:
        raise AccountError(f"user '{name}' exists already")
    stamp = now()
    session.add(User(name=name, created_at=stamp))
    for team in teams:
        if session.get(Team, team) is None:
            session.add(Team(name=team, created_at=stamp))
    texts = [f"g, {name}, member, {team}" for team in teams]
    if admin:
        texts.append(f"g, {name}, admin, *")
    session.flush()
    if texts:
        _apply(session, author, add=parse_lines(texts), remove=[], message=f"user {name} added")
    return texts


def create_token(session: Session, user: str) -> NewToken:
    """A new API token for ``user``; the returned text is the only copy of it."""
    if session.get(User, user) is None:
        raise AccountError(
            f"no user '{user}'; add it first with: submarine-broker user add {user} --team TEAM"
        )
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    session.add(ApiToken(id=token_id, user=user, secret_hash=_hash(secret), created_at=now()))
    return NewToken(user, token_id, f"sbk_{token_id}_{secret}")


def user_for_token(session: Session, token: str) -> str | None:
    """The user a token belongs to, or None for an unknown, malformed or revoked token."""
    use = check_token(session, token)
    return use.user if use is not None else None


@dataclass(frozen=True)
class TokenUse:
    """A live token as a request presents it: whose it is, and when it was last recorded used."""

    user: str
    token_id: str
    last_used_at: datetime | None

    def due(self, at: datetime) -> bool:
        """Whether a use at ``at`` should be written (unset, or at least a minute old)."""
        return self.last_used_at is None or self.last_used_at <= at - LAST_USED_PRECISION


_LOOKUP = select(ApiToken.user, ApiToken.secret_hash, ApiToken.revoked_at, ApiToken.last_used_at).where(
    ApiToken.id == bindparam("token_id")
)


def check_token(conn: Connection | Session, token: str) -> TokenUse | None:
    """The live token ``token`` (one read by primary key, no write), None when unknown, malformed
    or revoked."""
    match = _TOKEN.match(token)
    if not match:
        return None
    row = conn.execute(_LOOKUP, {"token_id": match.group(1)}).first()
    return _verified(match, tuple(row) if row is not None else None)


async def lookup_token(db: Database, token: str) -> TokenUse | None:
    """:func:`check_token` for the server, on every request: a plain statement, no ORM object, read
    beside the writer (on SQLite without leaving the event loop: :meth:`Database.first`)."""
    match = _TOKEN.match(token)
    if not match:
        return None
    return _verified(match, await db.first(_LOOKUP, {"token_id": match.group(1)}))


def _verified(match: re.Match[str], row: tuple[Any, ...] | None) -> TokenUse | None:
    if row is None:
        return None
    user, secret_hash, revoked_at, last_used_at = row
    if revoked_at is not None or not hmac.compare_digest(secret_hash, _hash(match.group(2))):
        return None
    return TokenUse(user, match.group(1), last_used_at)


def record_use(session: Session, token_id: str, at: datetime) -> None:
    """Set ``last_used_at`` to ``at`` unless another request (on any broker) did within the minute."""
    cutoff = at - LAST_USED_PRECISION
    session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id)
        .where(or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= cutoff))
        .values(last_used_at=at)
        .execution_options(synchronize_session=False)
    )


def authenticate(session: Session, token: str, *, at: datetime | None = None) -> str | None:
    """:func:`user_for_token`, recording the use (:func:`record_use`) when it is due: a busy token
    costs one write a minute, not one a request."""
    use = check_token(session, token)
    if use is None:
        return None
    stamp = at or now()
    if use.due(stamp):
        record_use(session, use.token_id, stamp)
    return use.user


def token_id_of(text: str) -> str:
    """The token id in ``text``: an id (12 hex digits) or a whole token (``sbk_<id>_<secret>``)."""
    match = _TOKEN.match(text)
    return match.group(1) if match else text


def list_tokens(session: Session, *, user: str | None = None, revoked: bool = False) -> list[ApiToken]:
    """Tokens, oldest first: ``user``'s (None: everyone's), live ones only unless ``revoked``."""
    query = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
    if user is not None:
        query = query.where(ApiToken.user == user)
    if not revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return list(session.scalars(query).all())


def find_token(session: Session, token_id: str) -> ApiToken | None:
    """The token row with id ``token_id`` (revoked or not), None for an unknown or malformed id."""
    return session.get(ApiToken, token_id) if _TOKEN_ID.match(token_id) else None


def revoke_token(session: Session, row: ApiToken) -> bool:
    """Revoke ``row`` from now on; False when it was revoked already (its time is kept)."""
    if row.revoked_at is not None:
        return False
    row.revoked_at = now()
    return True


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.name)).all())
