"""One-time sign-in codes: a link a browser opens once to be signed in, instead of pasting a token.

``submarine-broker notebook open --sign-in-link`` asks the broker (with its API token, as a bearer)
for a code and prints ``/login/once?code=...&next=<notebook path>``. Opening it sets the same
cookie the sign-in page sets, then goes to ``next``. The API token never appears in a URL: the code
is random, only its SHA-256 is stored, beside the token encrypted with the broker's secret key (the
cookie must carry the token itself). A code works once (redeeming deletes its row: of two browsers,
or two broker replicas, exactly one wins) and only for :data:`LIFETIME`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from broker.secret_key import SecretBox, SecretUnreadable
from broker.state import now
from broker.store.database import Database
from broker.store.models import SignInCode

#: How long a code may wait to be opened.
LIFETIME = timedelta(seconds=60)
#: Every code starts with this (tells it apart from an API token in a log or a bug report).
PREFIX = "sbo_"


@dataclass(frozen=True)
class Issued:
    """A fresh code, and until when it works."""

    code: str
    expires_at: datetime


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class SignInCodes:
    """Issues and redeems one-time sign-in codes, kept in the database (shared by every replica)."""

    def __init__(self, db: Database, box: SecretBox, lifetime: timedelta = LIFETIME) -> None:
        self._db = db
        self._box = box
        self.lifetime = lifetime

    async def issue(self, user: str, token: str) -> Issued:
        """A code that signs a browser in with ``token`` (``user``'s API token) once, for :attr:`lifetime`."""
        code = PREFIX + secrets.token_urlsafe(24)
        stamp = now()
        expires = stamp + self.lifetime
        row = SignInCode(
            digest=_digest(code),
            user=user,
            sealed_token=self._box.encrypt(token),
            created_at=stamp,
            expires_at=expires,
        )

        def add(session: Session) -> None:
            # Expired codes of anyone go with each new one: the table stays as small as its live codes.
            session.execute(delete(SignInCode).where(SignInCode.expires_at <= stamp))
            session.add(row)

        await self._db.run(add)
        return Issued(code, expires)

    async def redeem(self, code: str) -> str | None:
        """The API token of ``code`` when it is live and not yet used (it is then used up), else None."""
        if not code.startswith(PREFIX) or len(code) > 100:
            return None
        digest = _digest(code)

        def take(session: Session) -> tuple[str, datetime] | None:
            found = session.execute(
                select(SignInCode.sealed_token, SignInCode.expires_at).where(SignInCode.digest == digest)
            ).first()
            if found is None:
                return None
            gone = session.execute(delete(SignInCode).where(SignInCode.digest == digest))
            if gone.rowcount != 1:  # type: ignore[attr-defined]
                return None  # another request redeemed it meanwhile
            return found[0], found[1]

        taken = await self._db.run(take)
        if taken is None or taken[1] <= now():
            return None
        try:
            return self._box.decrypt(taken[0])
        except SecretUnreadable:
            return None
