"""``submarine-broker user add`` and ``token create``: straight to the broker's database (no REST).

Each test writes a broker.yaml in tmp_path whose default policy is the repository's
broker/defaults/policy.csv (the packaged default), runs the commands with CliRunner, then reads the database back to check them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.accounts import user_for_token
from broker.cli.main import main
from broker.policy_store import snapshot
from broker.store.database import Database
from broker.store.models import PolicyRevision, User
from tests.support import REPO, Broker, python_spec, wait_for

T = TypeVar("T")
DEFAULT_POLICY = REPO / "broker" / "defaults" / "policy.csv"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "conf" / "broker.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"data_dir": "../data", "default_policy": str(DEFAULT_POLICY)}))
    return path


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def in_db(config: Path, fn: Callable[[Session], T], data_dir: Path | None = None) -> T:
    db_file = (data_dir or config.parent.parent / "data") / "broker.db"
    assert db_file.exists(), f"no database at {db_file}"
    db = Database(f"sqlite:///{db_file}")
    try:
        return db.call(fn)
    finally:
        db.dispose()


def live_lines(session: Session) -> list[str]:
    return [line.csv() for line in snapshot(session).lines]


def default_lines() -> list[str]:
    rows = (row.strip() for row in DEFAULT_POLICY.read_text().splitlines())
    return [row for row in rows if row and not row.startswith("#")]


def assert_clean_failure(result: Result, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def test_user_add_then_token_create_resolves_to_the_user(config: Path) -> None:
    added = run("user", "add", "alice", "--team", "vision", "--team", "nlp", "--config", str(config))
    assert added.exit_code == 0, added.output
    assert "user alice added" in added.stdout
    assert "policy + g, alice, member, vision" in added.stdout
    assert "policy + g, alice, member, nlp" in added.stdout

    made = run("token", "create", "alice", "--config", str(config))
    assert made.exit_code == 0, made.output
    token = made.stdout.splitlines()[-1]
    assert token.startswith("sbk_") and made.stdout == token + "\n"  # the token alone on stdout
    assert "shown only once" in made.stderr and token not in made.stderr

    def check(session: Session) -> dict[str, Any]:
        return {
            "user": user_for_token(session, token),
            "lines": live_lines(session),
            "users": sorted(session.scalars(select(User.name)).all()),
            "wrong": user_for_token(session, token[:-2] + "xx"),
        }

    found = in_db(config, check)
    assert found["user"] == "alice"
    assert found["wrong"] is None
    assert "g, alice, member, vision" in found["lines"] and "g, alice, member, nlp" in found["lines"]
    # The new database got the default policy (and its built-in admin) before alice's lines.
    assert set(default_lines()) <= set(found["lines"])
    assert found["users"] == ["admin", "alice"]

    second = run("token", "create", "alice", "--config", str(config))
    other = second.stdout.splitlines()[-1]
    assert other != token
    assert in_db(config, lambda s: (user_for_token(s, token), user_for_token(s, other))) == ("alice", "alice")


def test_admin_flag_and_revisions_record_the_cli(config: Path) -> None:
    result = run("user", "add", "carol", "--team", "ops", "--admin", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert "policy + g, carol, admin, *" in result.stdout
    assert run("user", "add", "dave", "--team", "ops", "--config", str(config)).exit_code == 0

    def check(session: Session) -> tuple[list[str], list[tuple[int, str, list[str]]]]:
        revisions = session.scalars(select(PolicyRevision).order_by(PolicyRevision.revision)).all()
        return live_lines(session), [(r.revision, r.author, r.added) for r in revisions]

    lines, revisions = in_db(config, check)
    assert {"g, carol, member, ops", "g, carol, admin, *", "g, dave, member, ops"} <= set(lines)
    # Seeded once (revision 1 by the broker), then one revision per user added by the CLI.
    assert [(number, author) for number, author, _ in revisions] == [(1, "broker"), (2, "cli"), (3, "cli")]
    assert sorted(revisions[2][2]) == ["g, dave, member, ops"]


def test_duplicate_user_is_refused(config: Path) -> None:
    assert run("user", "add", "alice", "--team", "vision", "--config", str(config)).exit_code == 0
    again = run("user", "add", "alice", "--team", "nlp", "--config", str(config))
    assert_clean_failure(again)
    assert "Error: user 'alice' exists already" in again.output
    builtin = run("user", "add", "admin", "--team", "ops", "--config", str(config))
    assert_clean_failure(builtin)
    assert "Error: user 'admin' exists already" in builtin.output
    lines = in_db(config, live_lines)
    assert "g, alice, member, nlp" not in lines and "g, admin, member, ops" not in lines


def test_token_for_an_unknown_user_is_refused(config: Path) -> None:
    result = run("token", "create", "bob", "--config", str(config))
    assert_clean_failure(result)
    assert "Error: no user 'bob'" in result.output
    assert "sbk_" not in result.stdout


def test_invalid_names_and_missing_team(config: Path) -> None:
    bad_user = run("user", "add", "Alice!", "--team", "vision", "--config", str(config))
    assert_clean_failure(bad_user)
    assert "Error: 'Alice!' is not a valid user name" in bad_user.output
    bad_team = run("user", "add", "alice", "--team", "Vision_Team", "--config", str(config))
    assert_clean_failure(bad_team)
    assert "'Vision_Team' is not a valid team name" in bad_team.output
    no_team = run("user", "add", "alice", "--config", str(config))
    assert_clean_failure(no_team, code=2)
    assert "give at least one --team" in no_team.output
    # A refused add leaves no user behind.
    assert in_db(config, lambda s: sorted(s.scalars(select(User.name)).all())) == ["admin"]


def test_config_from_environment_and_data_dir_override(config: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    env = {"SUBMARINE_BROKER_CONFIG": str(config)}
    added = run("user", "add", "erin", "--team", "vision", "--data-dir", str(elsewhere), env=env)
    assert added.exit_code == 0, added.output
    made = run("token", "create", "erin", "--data-dir", str(elsewhere), env=env)
    assert made.exit_code == 0, made.output
    token = made.stdout.splitlines()[-1]
    assert in_db(config, lambda s: user_for_token(s, token), data_dir=elsewhere) == "erin"
    assert not (tmp_path / "data").exists()


def test_missing_config_or_default_policy_is_a_clean_error(tmp_path: Path) -> None:
    missing = run("user", "add", "alice", "--team", "vision", "--config", str(tmp_path / "nope.yaml"))
    assert_clean_failure(missing)
    assert "nope.yaml" in missing.output

    config = tmp_path / "broker.yaml"
    config.write_text(yaml.safe_dump({"data_dir": "data", "default_policy": str(tmp_path / "gone.csv")}))
    result = run("user", "add", "alice", "--team", "vision", "--config", str(config))
    assert_clean_failure(result)
    assert "gone.csv" in result.output and "default policy" in result.output


def test_a_relative_default_policy_is_found_beside_broker_yaml(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "broker.yaml"
    config.parent.mkdir()
    (config.parent / "policy.csv").write_text(DEFAULT_POLICY.read_text())
    config.write_text(yaml.safe_dump({"data_dir": "data", "default_policy": "policy.csv"}))
    result = run("user", "add", "alice", "--team", "vision", "--config", str(config))
    assert result.exit_code == 0, result.output
    lines = in_db(config, live_lines, data_dir=config.parent / "data")
    assert set(default_lines()) | {"g, alice, member, vision"} == set(lines)


def test_end_to_end_with_a_token_broker(broker_factory: Callable[..., Broker], tmp_path: Path) -> None:
    """Accounts made by the CLI before the first start work against a real ``auth: token`` broker,
    and the policy and placement commands speak its REST contract."""
    import httpx

    broker = broker_factory(start=False, auth="token")
    conf = ["--config", str(broker.config_path)]
    assert run("user", "add", "root", "--team", "ops", "--admin", *conf).exit_code == 0
    assert run("user", "add", "alice", "--team", "vision", *conf).exit_code == 0
    root = run("token", "create", "root", *conf).stdout.splitlines()[-1]
    alice = run("token", "create", "alice", *conf).stdout.splitlines()[-1]
    broker.start(wait=False)

    def up() -> bool:  # every /api answer is a 401 without a token: any answer means it is up
        try:
            return httpx.get(f"{broker.url}/api/v1/experiment/ping").status_code in (200, 401)
        except httpx.TransportError:
            return False

    wait_for(up, timeout=60, what=f"the broker on {broker.url}")

    def cli(token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
        auth = ["--token", token] if token else []
        return subprocess.run(
            [sys.executable, "-m", "broker", "--url", broker.url, *auth, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        )

    me = cli(alice, "user", "whoami", "--json")
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout) == {"name": "alice", "teams": ["vision"], "admin": False}
    anonymous = cli(None, "user", "whoami")
    assert anonymous.returncode == 1 and "Error: missing or unknown API token" in anonymous.stderr
    listed = cli(root, "user", "list", "--json")
    assert {u["name"] for u in json.loads(listed.stdout)} == {"admin", "alice", "root"}
    assert cli(alice, "user", "list").returncode == 1

    deny = "p, alice, vision, cluster/local*, place, deny"
    added = cli(root, "policy", "add", deny, "-m", "no local for alice")
    assert added.returncode == 0, added.stderr
    policy = json.loads(cli(root, "policy", "list", "--json").stdout)
    assert deny in policy["lines"] and "g, alice, member, vision" in policy["lines"]
    tested = cli(root, "policy", "test", "alice", "vision", "cluster/local/experiment", "place")
    assert tested.returncode == 0 and tested.stdout.startswith("DENY") and deny in tested.stdout
    bad = cli(root, "policy", "add", "q, x")
    assert bad.returncode == 1 and "the policy was not changed" in bad.stderr

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(python_spec("print(1)", namespace="vision")))
    explained = cli(alice, "placement", "explain", "-f", str(spec), "--json")
    assert explained.returncode == 0, explained.stderr
    result = json.loads(explained.stdout)
    assert result["chosen"] is None and result["verdicts"][0]["cluster"] == "local"
    assert result["verdicts"][0]["eligible"] is False

    removed = cli(root, "policy", "remove", deny)
    assert removed.returncode == 0, removed.stderr
    table = cli(alice, "placement", "explain", "-f", str(spec))
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[-1] == "would be placed on local"
    revisions = json.loads(cli(root, "policy", "revisions", "--json").stdout)
    assert [r["author"] for r in revisions[-2:]] == ["root", "root"]
    assert revisions[-2]["message"] == "no local for alice"


def test_policy_reset_restores_the_default_policy_even_from_a_broken_one(config: Path) -> None:
    from sqlalchemy import text

    assert run("user", "add", "root", "--team", "ops", "--admin", "--config", str(config)).exit_code == 0

    def break_it(session: Session) -> None:  # what hand-written SQL leaves behind
        session.execute(text("DELETE FROM policy_line WHERE text = 'p, admin, *, *, *, allow'"))
        session.execute(text("INSERT INTO policy_line (text, ptype) VALUES ('p, broken', 'p')"))

    in_db(config, break_it)
    before = in_db(config, lambda s: len(s.scalars(select(PolicyRevision)).all()))

    result = run("policy", "reset", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"policy reset to {DEFAULT_POLICY}: revision {before + 1} by recovery")
    for shown in (
        "  + p, admin, *, *, *, allow",
        "  - p, broken",
        "  - g, root, admin, *",
        "  - g, root, member, ops",
    ):
        assert shown in result.stdout.splitlines(), shown

    def check(session: Session) -> tuple[list[str], PolicyRevision]:
        last = session.scalars(select(PolicyRevision).order_by(PolicyRevision.revision.desc())).first()
        return live_lines(session), last

    lines, last = in_db(config, check)
    assert sorted(lines) == sorted(default_lines())
    assert (last.revision, last.author, last.message) == (
        before + 1,
        "recovery",
        "policy reset to policy.csv",
    )
    assert last.added == ["p, admin, *, *, *, allow"] and "p, broken" in last.removed

    again = run("policy", "reset", "--config", str(config))
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith(
        f"no change: the policy is {DEFAULT_POLICY} already (revision {before + 1}"
    )
    assert in_db(config, lambda s: len(s.scalars(select(PolicyRevision)).all())) == before + 1


def test_policy_reset_without_a_default_policy_file_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "broker.yaml"
    config.write_text(yaml.safe_dump({"data_dir": "data", "default_policy": str(tmp_path / "gone.csv")}))
    result = run("policy", "reset", "--config", str(config))
    assert_clean_failure(result)
    assert "gone.csv" in result.output and "cannot read the default policy" in result.output
    empty = tmp_path / "empty.csv"
    empty.write_text("# nothing\n")
    config.write_text(yaml.safe_dump({"data_dir": "data", "default_policy": str(empty)}))
    nothing = run("policy", "reset", "--config", str(config))
    assert_clean_failure(nothing)
    assert "has no policy lines; refusing to reset the policy to nothing" in nothing.output
    assert not (tmp_path / "data").exists()
