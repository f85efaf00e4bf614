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
