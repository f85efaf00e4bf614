"""One-row reads for every request (:meth:`Database.first`): on a SQLite file they run on the
calling thread through :mod:`sqlite3`, and must answer exactly what SQLAlchemy would, see every
commit at once, and fall back to the usual read when SQLite cannot answer there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import update

from broker.accounts import _LOOKUP, add_user, create_token, lookup_token
from broker.store.database import Database
from broker.store.migrate import upgrade
from broker.store.models import ApiToken
from broker.store.quick_read import UNAVAILABLE


@pytest.fixture
def db(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'broker.db'}")
    upgrade(database.engine)
    database.call(lambda s: add_user(s, "alice", teams=["vision"], admin=False, author="test"))
    yield database
    database.dispose()


def test_a_quick_read_answers_what_sqlalchemy_answers(db: Database) -> None:
    token = db.call(lambda s: create_token(s, "alice"))
    db.call(lambda s: s.execute(update(ApiToken).values(last_used_at=ApiToken.created_at)))
    params = {"token_id": token.token_id}
    assert db._quick.first(_LOOKUP, params) is not UNAVAILABLE  # this is the quick path
    quick = asyncio.run(db.first(_LOOKUP, params))
    through_sqlalchemy = db.call(lambda s: tuple(s.execute(_LOOKUP, params).one()))
    assert quick == through_sqlalchemy
    assert quick[0] == "alice" and quick[3].tzinfo is not None  # aware UTC, as the model returns
    assert asyncio.run(db.first(_LOOKUP, {"token_id": "000000000000"})) is None


def test_a_commit_is_seen_by_the_next_quick_read(db: Database) -> None:
    token = db.call(lambda s: create_token(s, "alice"))

    async def revoke_between_reads() -> tuple[object, object]:
        before = await lookup_token(db, token.token)
        await db.run(lambda s: s.execute(update(ApiToken).values(revoked_at=ApiToken.created_at)))
        return before, await lookup_token(db, token.token)

    before, after = asyncio.run(revoke_between_reads())
    assert before is not None and before.user == "alice"
    assert after is None


def test_without_the_quick_path_the_read_goes_through_sqlalchemy(db: Database, monkeypatch) -> None:
    token = db.call(lambda s: create_token(s, "alice"))
    expected = asyncio.run(db.first(_LOOKUP, {"token_id": token.token_id}))
    monkeypatch.setattr(db._quick, "first", lambda statement, params: UNAVAILABLE)  # busy, or not SQLite
    assert asyncio.run(db.first(_LOOKUP, {"token_id": token.token_id})) == expected
    assert asyncio.run(lookup_token(db, token.token)).user == "alice"  # type: ignore[union-attr]


def test_an_in_memory_database_has_no_quick_path() -> None:
    database = Database("sqlite://")
    try:
        assert database._quick.first(_LOOKUP, {"token_id": "x"}) is UNAVAILABLE
    finally:
        database.dispose()
