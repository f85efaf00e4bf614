"""Editing the policy through the API: revisions, revert, validation, concurrency, two replicas."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import Broker, wait_for

LINE = "p, alice, vision, cluster/gpu-*, place, allow"


def _policy(broker: Broker) -> dict:
    return broker.client.get("/policy").json()["result"]


def test_add_remove_replace_and_revisions(broker: Broker) -> None:
    start = _policy(broker)
    assert start["revision"] >= 1 and "p, admin, *, *, *, allow" in start["lines"]

    added = broker.client.post(
        "/policy", json={"lines": [LINE, "g, alice, member, vision"], "message": "alice"}
    )
    assert added.status_code == 200, added.text
    assert added.json()["result"]["revision"] == start["revision"] + 1
    assert LINE in _policy(broker)["lines"]

    removed = broker.client.request("DELETE", "/policy", json={"lines": [LINE]})
    assert removed.status_code == 200 and LINE not in removed.json()["result"]["lines"]

    history = broker.client.get("/policy/revisions").json()["result"]
    assert [r["revision"] for r in history] == list(range(1, start["revision"] + 3))
    assert (
        history[-2]["added"] == sorted([LINE, "g, alice, member, vision"])
        and history[-2]["message"] == "alice"
    )
    assert history[-1]["removed"] == [LINE] and history[-1]["author"] == "admin"

    reverted = broker.client.post(f"/policy/revert/{start['revision'] + 1}")
    assert reverted.status_code == 200 and LINE in reverted.json()["result"]["lines"]
    original = broker.client.post(f"/policy/revert/{start['revision']}").json()["result"]
    assert sorted(original["lines"]) == sorted(start["lines"])
    assert broker.client.post("/policy/revert/999").status_code == 404

    replaced = broker.client.put("/policy", json={"lines": start["lines"] + [LINE]}).json()["result"]
    assert sorted(replaced["lines"]) == sorted(start["lines"] + [LINE])


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        (["q, alice, vision, cluster/*, place, allow"], "q"),
        (["p, alice, vision, cluster/*, place"], "field"),
        (["p, alice, vision, cluster/*, fly, allow"], "fly"),
        (["p, alice, vision, rocket/*, place, allow"], "rocket"),
        (["p, alice, vision, cluster/*, place, maybe"], "maybe"),
        (["p2, vision, cluster/*, heavy"], "heavy"),
        ([LINE, "g, alice"], "g, alice"),
        ("not a list", "lines"),
        ([1, 2], "lines"),
    ],
)
def test_an_invalid_edit_is_refused_whole(broker: Broker, lines, needle: str) -> None:
    before = _policy(broker)
    answer = broker.client.post("/policy", json={"lines": lines})
    assert answer.status_code == 400, answer.text
    assert needle in answer.json()["message"]
    assert _policy(broker) == before


def test_policy_test_explains_with_matching_lines(broker: Broker) -> None:
    broker.client.post("/policy", json={"lines": ["g, alice, member, vision"]})
    answer = broker.client.post(
        "/policy/test",
        json={"user": "alice", "namespace": "vision", "object": "experiment/x", "action": "read"},
    ).json()["result"]
    assert answer["allowed"] is True and "p, member, *, experiment/*, read, allow" in answer["matched"]
    denied = broker.client.post(
        "/policy/test", json={"user": "alice", "namespace": "nlp", "object": "experiment/x", "action": "read"}
    ).json()["result"]
    assert denied["allowed"] is False and denied["matched"] == []
    bad = broker.client.post("/policy/test", json={"user": "alice"})
    assert bad.status_code == 400 and "namespace" in bad.json()["message"]


def test_concurrent_edits_are_all_kept(broker: Broker) -> None:
    before = _policy(broker)["revision"]
    lines = [f"p, user{i}, vision, cluster/c{i}/*, place, allow" for i in range(12)]
    with ThreadPoolExecutor(6) as pool:
        codes = list(
            pool.map(lambda line: broker.client.post("/policy", json={"lines": [line]}).status_code, lines)
        )
    assert codes == [200] * 12
    after = _policy(broker)
    assert set(lines) <= set(after["lines"]) and after["revision"] == before + 12


@pytest.mark.postgres
def test_two_brokers_see_each_others_edits_within_a_second(broker_factory, pg_url) -> None:
    a = broker_factory(name="a", database_url=pg_url)
    b = broker_factory(name="b", database_url=pg_url)
    request = {"user": "zed", "namespace": "vision", "object": "cluster/local/experiment", "action": "place"}
    assert b.client.post("/policy/test", json=request).json()["result"]["allowed"] is True
    a.client.post("/policy", json={"lines": ["p, zed, vision, cluster/local*, place, deny"]})
    started = time.monotonic()
    wait_for(
        lambda: not b.client.post("/policy/test", json=request).json()["result"]["allowed"],
        timeout=5,
        interval=0.05,
        what="broker b to enforce a's edit",
    )
    assert time.monotonic() - started < 1.5


# ---------------------------------------------------------------------------- no lockout, no change
ADMIN_ALLOW = "p, admin, *, *, *, allow"
ROOT_ADMIN = "g, root, admin, *"


def _revisions(broker: Broker) -> list[dict]:
    return broker.client.get("/policy/revisions").json()["result"]


def test_an_edit_that_locks_everyone_out_is_refused_naming_the_lines(broker_factory) -> None:
    from tests.test_permissions import make_users

    broker = broker_factory(start=False)
    make_users(broker)  # root is an admin (g, root, admin, *) beside the built-in admin
    broker.start()
    before, history = _policy(broker), _revisions(broker)

    # The edit from the issue: it would leave nobody, admins included, able to edit the policy.
    refused = broker.client.request("DELETE", "/policy", json={"lines": [ROOT_ADMIN, ADMIN_ALLOW]})
    assert refused.status_code == 409, refused.text
    message = refused.json()["message"]
    assert "no user able to edit the policy" in message and f"removing '{ADMIN_ALLOW}'" in message
    assert "now: admin, root" in message and "The policy was not changed" in message

    deny = "p, *, *, policy, *, deny"
    added = broker.client.post("/policy", json={"lines": [deny]})
    assert added.status_code == 409 and f"adding '{deny}'" in added.json()["message"]

    replaced = broker.client.put("/policy", json={"lines": ["p, *, *, cluster/*, read, allow"]})
    assert replaced.status_code == 409 and f"removing '{ADMIN_ALLOW}'" in replaced.json()["message"]
    assert _policy(broker) == before and _revisions(broker) == history

    # Taking the right from one of two editors is fine.
    fine = broker.client.request("DELETE", "/policy", json={"lines": [ROOT_ADMIN]})
    assert fine.status_code == 200 and fine.json()["result"]["removed"] == [ROOT_ADMIN]


def test_an_edit_that_changes_nothing_says_so_and_makes_no_revision(broker: Broker) -> None:
    start, history = _policy(broker), _revisions(broker)
    for method, lines in (("POST", [ADMIN_ALLOW]), ("DELETE", [LINE]), ("PUT", start["lines"])):
        answer = broker.client.request(method, "/policy", json={"lines": lines})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (
            body["message"].startswith("no change: ") and f"revision {start['revision']}" in body["message"]
        )
        assert body["result"]["changed"] is False and body["result"]["revision"] == start["revision"]
        assert body["result"]["added"] == [] and body["result"]["removed"] == []
    reverted = broker.client.post(f"/policy/revert/{start['revision']}").json()
    assert reverted["result"]["changed"] is False and reverted["message"].startswith("no change: ")
    assert _revisions(broker) == history

    # Half a no-op: only the new line makes the revision.
    mixed = broker.client.post("/policy", json={"lines": [ADMIN_ALLOW, LINE]}).json()
    assert mixed["message"] is None and mixed["result"]["changed"] is True
    assert mixed["result"]["revision"] == start["revision"] + 1 and mixed["result"]["added"] == [LINE]
    assert _revisions(broker)[-1]["added"] == [LINE]


def test_the_builtin_admin_of_auth_none_keeps_its_rights(broker_factory, tmp_path) -> None:
    """A policy that grants the admin nothing (as after the issue's edit) does not stop it under
    auth: none; and since nobody could edit before, its repairs are not refused, while a revert
    back to nothing is."""
    broken = tmp_path / "broken.csv"
    broken.write_text("p, *, *, cluster/*, read, allow\np, *, *, cluster/*, place, allow\n")
    broker = broker_factory(default_policy=str(broken))
    test = {"user": "admin", "namespace": "*", "object": "policy", "action": "edit"}
    assert broker.client.post("/policy/test", json=test).json()["result"]["allowed"] is False
    assert broker.client.get("/policy").status_code == 200
    assert broker.client.get("/user/me").json()["result"]["admin"] is True
    assert broker.client.get("/user").status_code == 200

    repaired = broker.client.post("/policy", json={"lines": [ADMIN_ALLOW]})
    assert repaired.status_code == 200, repaired.text
    assert broker.client.post("/policy/test", json=test).json()["result"]["allowed"] is True
    back = broker.client.post("/policy/revert/1")
    assert back.status_code == 409 and f"removing '{ADMIN_ALLOW}'" in back.json()["message"]


def _concurrent_removals(first: Broker, second: Broker) -> None:
    """admin may edit through the admin line, root through its own; each removal alone is fine,
    both together would lock everyone out: exactly one of two concurrent removals wins."""
    own = "p, root, *, policy, edit, allow"
    assert first.client.post("/policy", json={"lines": [own]}).status_code == 200
    assert first.client.request("DELETE", "/policy", json={"lines": [ROOT_ADMIN]}).status_code == 200
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda job: job[0].client.request("DELETE", "/policy", json={"lines": [job[1]]}),
                [(first, ADMIN_ALLOW), (second, own)],
            )
        )
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    lines = _policy(first)["lines"]
    assert (ADMIN_ALLOW in lines) != (own in lines)


def test_two_concurrent_edits_cannot_lock_everyone_out_together(broker_factory) -> None:
    from tests.test_permissions import make_users

    broker = broker_factory(start=False)
    make_users(broker)
    broker.start()
    _concurrent_removals(broker, broker)


@pytest.mark.postgres
def test_two_brokers_cannot_lock_everyone_out_together(broker_factory, pg_url) -> None:
    from tests.test_permissions import make_users

    a = broker_factory(name="a", database_url=pg_url, start=False)
    make_users(a)
    a.start()
    b = broker_factory(name="b", database_url=pg_url)
    _concurrent_removals(a, b)


def test_under_token_auth_only_users_with_a_token_count_and_reset_is_the_way_back(broker_factory) -> None:
    from click.testing import CliRunner
    from sqlalchemy import text

    from broker.cli.main import main
    from broker.store.database import Database
    from tests.test_permissions import make_users

    broker = broker_factory(start=False, auth="token")
    tokens = make_users(broker)  # root is the only admin with a token; the built-in admin has none
    broker.start()
    broker.client.headers["Authorization"] = f"Bearer {tokens['root']}"
    refused = broker.client.request("DELETE", "/policy", json={"lines": [ROOT_ADMIN]})
    assert refused.status_code == 409, refused.text
    message = refused.json()["message"]
    assert "no user with an API token able to edit the policy" in message
    assert f"removing '{ROOT_ADMIN}'" in message and "now: root)" in message

    # Break it the way the user had to repair it: by hand, in the database, then restart.
    broker.stop()
    db = Database(f"sqlite:///{broker.data_dir / 'broker.db'}")
    db.call(
        lambda s: s.execute(
            text("DELETE FROM policy_line WHERE text IN (:a, :b)"), {"a": ROOT_ADMIN, "b": ADMIN_ALLOW}
        )
    )
    db.dispose()
    broker.start()
    assert broker.client.get("/policy").status_code == 403

    cli = CliRunner()
    reset = cli.invoke(main, ["policy", "reset", "--config", str(broker.config_path)])
    assert reset.exit_code == 0, reset.output
    assert f"  + {ADMIN_ALLOW}" in reset.stdout and "by recovery" in reset.stdout
    assert "  - g, alice, member, vision" in reset.stdout and "token create" in reset.stdout
    made = cli.invoke(main, ["token", "create", "admin", "--config", str(broker.config_path)])
    assert made.exit_code == 0, made.output
    broker.client.headers["Authorization"] = f"Bearer {made.stdout.splitlines()[-1]}"
    wait_for(lambda: broker.client.get("/policy").status_code == 200, timeout=5, what="the reset policy")
    last = _revisions(broker)[-1]
    assert last["author"] == "recovery" and last["added"] == [ADMIN_ALLOW]
