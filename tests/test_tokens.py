"""API tokens listed and revoked (REST and CLI), revocation binding every broker at once, and
``last_used_at`` written at most once a minute.

Reproduced before: a revoked token kept working for 10 s (a per-broker cache), and
``last_used_at`` was never written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import event, update

from broker.accounts import add_user, authenticate, create_token
from broker.cli.main import main
from broker.state import now
from broker.store.database import Database
from broker.store.models import ApiToken
from tests.inprocess import InProcessBroker
from tests.run_as import remove_tree, scratch_dir
from tests.support import REPO, Broker
from tests.test_auth_routes import local_cluster_for_tokens

Tokens = dict[str, str]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessBroker, Tokens]]:
    scratch = scratch_dir()
    broker = InProcessBroker(
        tmp_path_factory.mktemp("tokens"), auth="token", clusters={"local": local_cluster_for_tokens(scratch)}
    )
    db = broker.context.db
    db.call(lambda s: add_user(s, "root", teams=["ops"], admin=True, author="test"))
    db.call(lambda s: add_user(s, "alice", teams=["vision"], admin=False, author="test"))
    db.call(lambda s: add_user(s, "bob", teams=["nlp"], admin=False, author="test"))
    tokens = {name: db.call(lambda s, n=name: create_token(s, n)).token for name in ("root", "alice", "bob")}
    broker.run(broker.context.policy.refresh())  # no loop runs in-process: load the new members now
    yield broker, tokens
    broker.close()
    remove_tree(scratch)


def token_id(token: str) -> str:
    return token.split("_")[1]


def secret_of(token: str) -> str:
    """The secret part of ``sbk_<id>_<secret>`` (it may hold '_' itself)."""
    return token.split("_", 2)[2]


def as_user(broker: InProcessBroker, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return broker.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)


def listed(broker: InProcessBroker, token: str, query: str = "") -> list[dict[str, Any]]:
    answer = as_user(broker, token, "GET", "/token" + query)
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def new_token(broker: InProcessBroker, user: str) -> str:
    return broker.context.db.call(lambda s: create_token(s, user)).token


def test_a_caller_lists_their_own_tokens_and_never_a_secret(secured) -> None:
    broker, tokens = secured
    second = new_token(broker, "alice")
    mine = listed(broker, tokens["alice"])
    assert [t["id"] for t in mine] == [token_id(tokens["alice"]), token_id(second)]
    assert {t["user"] for t in mine} == {"alice"}
    first = mine[0]
    assert set(first) == {"id", "prefix", "user", "createdTime", "lastUsedTime", "revokedTime"}
    assert first["prefix"] == f"sbk_{first['id']}_" and tokens["alice"].startswith(first["prefix"])
    assert first["lastUsedTime"] is not None and first["revokedTime"] is None
    assert mine[1]["lastUsedTime"] is None  # never sent yet
    hashes = broker.context.db.call(lambda s: [row.secret_hash for row in s.query(ApiToken).all()])
    text = as_user(broker, tokens["alice"], "GET", "/token").text
    for secret in (*map(secret_of, (*tokens.values(), second)), *hashes):
        assert secret not in text


def test_admins_list_anyones_tokens_and_members_only_their_own(secured) -> None:
    broker, tokens = secured
    everyone = {t["user"] for t in listed(broker, tokens["root"], "?all=true")}
    assert {"root", "alice", "bob"} <= everyone
    assert {t["user"] for t in listed(broker, tokens["root"], "?user=bob")} == {"bob"}
    assert {t["user"] for t in listed(broker, tokens["root"])} == {"root"}  # an admin's own by default
    assert {t["user"] for t in listed(broker, tokens["bob"], "?user=bob")} == {"bob"}
    for query in ("?all=true", "?user=alice"):
        refused = as_user(broker, tokens["bob"], "GET", "/token" + query)
        assert refused.status_code == 403 and "only their own tokens" in refused.json()["message"]
    bad = as_user(broker, tokens["root"], "GET", "/token?all=yes")
    assert bad.status_code == 400 and bad.json()["attributes"]["errors"][0]["field"] == "all"


def test_revocation_is_immediate_own_tokens_only_admins_any(secured) -> None:
    broker, tokens = secured
    spare = new_token(broker, "bob")
    assert as_user(broker, spare, "GET", "/user/me").status_code == 200
    # Someone else's token is not found for a member, and keeps working.
    other = as_user(broker, tokens["alice"], "DELETE", f"/token/{token_id(spare)}")
    assert other.status_code == 404 and other.json()["message"] == f"no token {token_id(spare)}"
    assert as_user(broker, spare, "GET", "/user/me").status_code == 200
    # Its owner revokes it: the very next request with it is refused.
    revoked = as_user(broker, tokens["bob"], "DELETE", f"/token/{token_id(spare)}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["message"] == f"token {token_id(spare)} revoked"
    assert revoked.json()["result"]["revokedTime"] is not None
    gone = as_user(broker, spare, "GET", "/user/me")
    assert gone.status_code == 401 and "unknown or revoked" in gone.json()["message"]
    assert token_id(spare) not in [t["id"] for t in listed(broker, tokens["bob"])]
    with_revoked = {t["id"]: t for t in listed(broker, tokens["bob"], "?revoked=true")}
    assert with_revoked[token_id(spare)]["revokedTime"] == revoked.json()["result"]["revokedTime"]
    again = as_user(broker, tokens["bob"], "DELETE", f"/token/{token_id(spare)}")
    assert again.status_code == 200 and "revoked already" in again.json()["message"]
    # An admin revokes anyone's.
    alices = new_token(broker, "alice")
    assert as_user(broker, tokens["root"], "DELETE", f"/token/{token_id(alices)}").status_code == 200
    assert as_user(broker, alices, "GET", "/user/me").status_code == 401
    for unknown in ("000000000000", "not-an-id"):
        assert as_user(broker, tokens["root"], "DELETE", f"/token/{unknown}").status_code == 404
    # A caller may revoke the token they call with.
    own = new_token(broker, "alice")
    assert as_user(broker, own, "DELETE", f"/token/{token_id(own)}").status_code == 200
    assert as_user(broker, own, "GET", "/token").status_code == 401


def test_last_used_at_is_written_at_most_once_a_minute(secured) -> None:
    broker, _ = secured
    db = broker.context.db
    token = new_token(broker, "alice")

    def stored() -> Any:
        return db.call(lambda s: s.get(ApiToken, token_id(token)).last_used_at)

    def set_stored(value: Any) -> None:
        db.call(
            lambda s: s.execute(
                update(ApiToken).where(ApiToken.id == token_id(token)).values(last_used_at=value)
            )
        )

    assert stored() is None
    before = now().replace(microsecond=0)
    assert as_user(broker, token, "GET", "/user/me").status_code == 200
    first = stored()
    assert first is not None and first >= before

    # Used again within the minute: the row is read (a revocation would show), never written.
    writes: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "api_token" in statement and not statement.lstrip().upper().startswith("SELECT"):
            writes.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        for _ in range(3):
            assert as_user(broker, token, "GET", "/user/me").status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert writes == []
    assert stored() == first

    recent = now().replace(microsecond=0) - timedelta(seconds=30)
    set_stored(recent)
    assert as_user(broker, token, "GET", "/user/me").status_code == 200
    assert stored() == recent
    stale = now().replace(microsecond=0) - timedelta(seconds=61)
    set_stored(stale)
    assert as_user(broker, token, "GET", "/user/me").status_code == 200
    assert stored() > stale + timedelta(seconds=60)
    assert listed(broker, token)[-1]["lastUsedTime"] == stored().strftime("%Y-%m-%dT%H:%M:%SZ")


def test_authenticate_writes_last_used_at_when_a_minute_has_passed(secured) -> None:
    broker, _ = secured
    db = broker.context.db
    token = new_token(broker, "alice")
    start = now().replace(microsecond=0)

    def use(at: Any) -> Any:
        assert db.call(lambda s: authenticate(s, token, at=at)) == "alice"
        return db.call(lambda s: s.get(ApiToken, token_id(token)).last_used_at)

    assert use(start) == start
    assert use(start + timedelta(seconds=59)) == start
    assert use(start + timedelta(seconds=60)) == start + timedelta(seconds=60)
    assert db.call(lambda s: authenticate(s, token[:-1] + "x")) is None


# The CLI ----------------------------------------------------------------------------------------
@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "conf" / "broker.yaml"
    path.parent.mkdir()
    policy = REPO / "broker" / "defaults" / "policy.csv"
    path.write_text(yaml.safe_dump({"data_dir": "../data", "default_policy": str(policy)}))
    return path


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_cli_lists_and_revokes_tokens_offline(config: Path) -> None:
    conf = ["--config", str(config)]
    assert cli("user", "add", "alice", "--team", "vision", *conf).exit_code == 0
    assert cli("user", "add", "root", "--admin", *conf).exit_code == 0
    alice = cli("token", "create", "alice", *conf).stdout.splitlines()[-1]
    root = cli("token", "create", "root", *conf).stdout.splitlines()[-1]

    table = cli("token", "list", "--offline", *conf)
    assert table.exit_code == 0, table.output
    for column in ("ID", "STARTS WITH", "USER", "CREATED", "LAST USED"):
        assert column in table.stdout.splitlines()[0]
    assert "REVOKED" not in table.stdout
    assert token_id(alice) in table.stdout and token_id(root) in table.stdout
    assert secret_of(alice) not in table.stdout
    only = json.loads(cli("token", "list", "--offline", "--user", "alice", "--json", *conf).stdout)
    assert [t["id"] for t in only] == [token_id(alice)] and only[0]["lastUsedTime"] is None

    revoked = cli("token", "revoke", token_id(alice), "--offline", *conf)
    assert revoked.exit_code == 0, revoked.output
    assert revoked.stdout == f"token {token_id(alice)} of user alice revoked\n"
    again = cli("token", "revoke", alice, "--offline", *conf)  # the whole token names it too
    assert again.stdout == f"token {token_id(alice)} of user alice was revoked already\n"
    unknown = cli("token", "revoke", "000000000000", "--offline", *conf)
    assert unknown.exit_code == 1 and "Error: no token 000000000000" in unknown.output
    assert "Traceback" not in unknown.output
    live = json.loads(cli("token", "list", "--offline", "--json", *conf).stdout)
    assert [t["id"] for t in live] == [token_id(root)]
    every = cli("token", "list", "--offline", "--revoked", *conf)
    assert "REVOKED" in every.stdout and token_id(alice) in every.stdout

    db = Database(f"sqlite:///{config.parent.parent / 'data' / 'broker.db'}")
    try:
        assert db.call(lambda s: authenticate(s, alice)) is None
        assert db.call(lambda s: authenticate(s, root)) == "root"
    finally:
        db.dispose()


# Two brokers, one database ------------------------------------------------------------------------
@pytest.mark.postgres
def test_a_revocation_on_one_broker_binds_the_other_at_once(
    broker_factory: Callable[..., Broker], pg_url: str
) -> None:
    a = broker_factory(name="a", database_url=pg_url, auth="token")
    b = broker_factory(name="b", database_url=pg_url, auth="token")
    db = Database(pg_url)
    try:
        db.call(lambda s: add_user(s, "alice", teams=["vision"], admin=False, author="test"))
        first, second = (db.call(lambda s: create_token(s, "alice")).token for _ in range(2))
    finally:
        db.dispose()

    def whoami(broker: Broker, token: str) -> int:
        return httpx.get(
            f"{broker.url}/api/v1/user/me", headers={"Authorization": f"Bearer {token}"}
        ).status_code

    for _ in range(3):  # used on both: what a cache would have kept
        assert whoami(a, first) == 200 and whoami(b, first) == 200

    def run(broker: Broker, token: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "broker", "--url", broker.url, "--token", token, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
            cwd=REPO,
        )

    revoked = run(a, second, "token", "revoke", token_id(first))
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == f"token {token_id(first)} of user alice revoked\n"
    assert whoami(b, first) == 401 and whoami(a, first) == 401
    assert whoami(b, second) == 200

    table = run(b, second, "token", "list", "--revoked")
    assert table.returncode == 0, table.stderr
    assert "REVOKED" in table.stdout.splitlines()[0]
    rows = {
        tid: [line for line in table.stdout.splitlines() if tid in line]
        for tid in map(token_id, (first, second))
    }
    assert (
        rows[token_id(first)][0].count("Z ") + rows[token_id(first)][0].endswith("Z") == 3
    )  # created, used, revoked
    assert rows[token_id(second)][0].rstrip().endswith("-")  # not revoked
    mine = json.loads(run(b, second, "token", "list", "--json").stdout)
    assert [t["id"] for t in mine] == [token_id(second)]
    denied = run(b, second, "token", "list", "--all")
    assert denied.returncode == 1 and "only their own tokens" in denied.stderr
