"""Permissions through a real broker with token auth: who may do what, 404 for others' work."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from broker.accounts import add_user, create_token
from broker.config import load_broker_config
from broker.policy_store import seed_default_policy
from broker.store.database import Database
from broker.store.migrate import upgrade
from tests.support import Broker, python_spec

USERS = {"alice": (["vision"], False), "bob": (["nlp"], False), "root": ([], True), "carol": ([], False)}


def make_users(broker: Broker) -> dict[str, str]:
    """Create the users above in the broker's database (as the CLI does); their tokens by name."""
    config = load_broker_config(broker.config_path)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.effective_database_url)
    upgrade(db.engine)
    seed_default_policy(db, config.default_policy)
    tokens = {}
    for name, (teams, admin) in USERS.items():
        db.call(lambda s, n=name, t=teams, a=admin: add_user(s, n, teams=t, admin=a, author="test"))
        tokens[name] = db.call(lambda s, n=name: create_token(s, n)).token
    db.dispose()
    return tokens


class Clients(dict[str, httpx.Client]):
    def close(self) -> None:
        for client in self.values():
            client.close()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Clients]]:
    broker = Broker(tmp_path_factory.mktemp("secured"), auth="token")
    tokens = make_users(broker)
    broker.start()
    clients = Clients(
        {
            name: httpx.Client(
                base_url=broker.url + "/api/v1", headers={"Authorization": f"Bearer {tok}"}, timeout=30
            )
            for name, tok in tokens.items()
        }
    )
    broker.client.headers["Authorization"] = f"Bearer {tokens['root']}"
    yield broker, clients
    clients.close()
    broker.close()


def _submit(client: httpx.Client, **meta) -> httpx.Response:
    return client.post("/experiment", json=python_spec("print('hi')", **meta))


def test_requests_without_a_valid_token_get_401(secured) -> None:
    broker, _ = secured
    for headers in (
        {},
        {"Authorization": "Bearer sbk_000000000000_nope-nope-nope-nope-nope"},
        {"Authorization": "Basic x"},
    ):
        answer = httpx.get(broker.url + "/api/v1/experiment", headers=headers)
        assert answer.status_code == 401, answer.text
        assert "API token" in answer.json()["message"] and answer.json()["code"] == 401
    assert httpx.get(broker.url + "/api/v1/experiment/ping").status_code == 200  # liveness stays open
    assert httpx.get(broker.url + "/api/v1/openapi.json").status_code == 200


def test_members_work_in_their_team_and_nobody_else_sees_it(secured) -> None:
    broker, c = secured
    mine = _submit(c["alice"], name="alice-job")
    assert mine.status_code == 200, mine.text
    exp = mine.json()["result"]
    assert exp["namespace"] == "vision" and exp["owner"] == "alice"
    exp_id = exp["experimentId"]

    assert c["alice"].get(f"/experiment/{exp_id}").status_code == 200
    assert c["alice"].get(f"/experiment/logs/{exp_id}").status_code == 200
    for outsider in ("bob", "carol"):
        for method, path in (
            ("GET", f"/experiment/{exp_id}"),
            ("GET", f"/experiment/logs/{exp_id}"),
            ("GET", f"/experiment/{exp_id}/events"),
            ("DELETE", f"/experiment/{exp_id}"),
        ):
            answer = c[outsider].request(method, path)
            assert answer.status_code == 404, (outsider, method, path, answer.text)
            assert answer.json()["message"] == f"Not found experiment: {exp_id}"
        listed = [e["experimentId"] for e in c[outsider].get("/experiment").json()["result"]]
        assert exp_id not in listed
    assert exp_id in [e["experimentId"] for e in c["root"].get("/experiment").json()["result"]]

    other_team = _submit(c["alice"], namespace="nlp")
    assert other_team.status_code == 403 and "alice may not submit" in other_team.json()["message"]
    no_team = _submit(c["carol"])
    assert no_team.status_code == 403, no_team.text
    assert c["root"].delete(f"/experiment/{exp_id}").status_code == 200


def test_only_admins_read_and_edit_the_policy(secured) -> None:
    _, c = secured
    for user in ("alice", "bob", "carol"):
        assert c[user].get("/policy").status_code == 403
        assert c[user].post("/policy", json={"lines": ["p, carol, *, *, *, allow"]}).status_code == 403
        assert c[user].get("/user").status_code == 403
    assert c["root"].get("/policy").status_code == 200
    me = c["alice"].get("/user/me").json()["result"]
    assert me == {"name": "alice", "teams": ["vision"], "admin": False}


def test_deny_overrides_allow_and_no_permission_anywhere_is_rejected_at_submit(secured) -> None:
    _, c = secured
    line = "p, bob, nlp, cluster/*, place, deny"
    assert c["root"].post("/policy", json={"lines": [line]}).status_code == 200
    try:
        answer = _submit(c["bob"])
        assert answer.status_code == 422, answer.text
        message = answer.json()["message"]
        assert "no registered cluster can ever take this experiment" in message and "local" in message
        tested = (
            c["root"]
            .post(
                "/policy/test",
                json={
                    "user": "bob",
                    "namespace": "nlp",
                    "object": "cluster/local/experiment",
                    "action": "place",
                },
            )
            .json()["result"]
        )
        assert tested["allowed"] is False and tested["matched"] == [line]
    finally:
        c["root"].request("DELETE", "/policy", json={"lines": [line]})
    assert _submit(c["bob"]).status_code == 200


def test_work_no_cluster_could_ever_take_is_rejected(secured) -> None:
    _, c = secured
    spec = python_spec("pass")
    spec["spec"]["Worker"]["resources"] = "cpu=1,nvidia.com/gpu=4"
    answer = c["alice"].post("/experiment", json=spec)
    assert answer.status_code == 422 and "gpu" in answer.json()["message"], answer.text
    huge = python_spec("pass")
    huge["spec"]["Worker"]["replicas"] = 100
    huge["spec"]["Worker"]["resources"] = "cpu=64"
    answer = c["alice"].post("/experiment", json=huge)
    assert answer.status_code == 422 and "in all" in answer.json()["message"], answer.text


def test_explain_is_a_dry_run_with_every_filter(secured) -> None:
    _, c = secured
    before = c["root"].get("/experiment").json()["attributes"]["total"]
    answer = c["alice"].post("/placement/explain", json=python_spec("pass"))
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert result["chosen"] == "local" and result["namespace"] == "vision" and result["revision"] >= 1
    verdict = result["verdicts"][0]
    names = {f["name"] for f in verdict["filters"]}
    assert {"permission", "ready", "fits_free", "fits_total", "labels"} <= names
    assert all(f["passed"] for f in verdict["filters"]) and verdict["scores"]
    assert c["root"].get("/experiment").json()["attributes"]["total"] == before
    assert c["carol"].post("/placement/explain", json=python_spec("pass")).status_code == 403


def test_placement_decision_is_stored_with_the_revision(secured) -> None:
    broker, c = secured
    exp_id = _submit(c["alice"]).json()["result"]["experimentId"]
    broker.wait_status(exp_id, "Succeeded")
    placement = c["alice"].get(f"/experiment/{exp_id}/placement").json()["result"]
    decision = placement["decision"]
    assert placement["cluster"] == "local" and decision["chosen"] == "local"
    assert decision["revision"] == c["root"].get("/policy").json()["result"]["revision"]
    assert decision["verdicts"][0]["filters"]
