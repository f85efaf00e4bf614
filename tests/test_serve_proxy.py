"""The ``/serve/<namespace>/<name>/...`` proxy against fake model servers on free loopback ports:
round robin, failed replicas taken out and back, permissions, credentials, streaming, a switch
to new replicas under load."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker.accounts import add_user, create_token
from broker.serving.replicas import ServeTarget
from tests.fake_model_server import FakeModelServer
from tests.inprocess import InProcessBroker
from tests.support import REPO, serve_in_thread

SERVE_LINES = """
p, carol, vision, serve/*, invoke, deny
"""
BODY = {"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[InProcessBroker, dict[str, str]]]:
    policy = tmp_path / "policy.csv"
    policy.write_text((REPO / "broker" / "defaults" / "policy.csv").read_text() + SERVE_LINES)
    broker = InProcessBroker(tmp_path / "b", auth="token", clusters={}, default_policy=str(policy))
    db = broker.context.db
    for name, team in (("alice", "vision"), ("bob", "nlp"), ("carol", "vision")):
        db.call(lambda s, n=name, t=team: add_user(s, n, teams=[t], admin=False, author="test"))
    tokens = {n: db.call(lambda s, n=n: create_token(s, n)).token for n in ("alice", "bob", "carol")}
    broker.run(broker.context.policy.refresh())
    yield broker, tokens
    broker.close()


@contextlib.contextmanager
def replicas(*names: str) -> Iterator[tuple[list[FakeModelServer], list[str]]]:
    """Fake model servers, each on its own free port; their base URLs."""
    servers = [FakeModelServer(n) for n in names]
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(serve_in_thread(s.app)) for s in servers]
        yield servers, urls


def publish(broker: InProcessBroker, urls: list[str], *, serve_id: str = "serve-1") -> None:
    target = ServeTarget(serve_id, "vision", "iris", "server-token", tuple(urls))
    broker.context.serve_proxy.table.publish(target)


def predict(
    broker: InProcessBroker, token: str, path: str = "/serve/vision/iris/invocations"
) -> httpx.Response:
    return broker.run(
        broker.client.post("http://broker" + path, json=BODY, headers={"Authorization": f"Bearer {token}"})
    )


def test_requests_go_round_robin_across_ready_replicas(secured) -> None:
    broker, tokens = secured
    with replicas("a", "b", "c") as (_, urls):
        publish(broker, urls)
        answers = [predict(broker, tokens["alice"]) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 6
    assert [a.json()["replica"] for a in answers] == ["a", "b", "c", "a", "b", "c"]


def test_the_callers_token_never_reaches_the_model_server(secured) -> None:
    broker, tokens = secured
    with replicas("a") as (servers, urls):
        publish(broker, urls)
        answer = broker.run(
            broker.client.post(
                "http://broker/serve/vision/iris/invocations?format=pandas-split",
                json=BODY,
                headers={"Authorization": f"Bearer {tokens['alice']}", "Cookie": "submarine_broker_token=x"},
            )
        )
    assert answer.status_code == 200, answer.text
    [seen] = servers[0].seen
    assert seen["headers"]["authorization"] == "Bearer server-token"
    assert "cookie" not in seen["headers"]
    assert tokens["alice"] not in repr(seen)
    assert (seen["path"], seen["query"]) == ("/invocations", "format=pandas-split")
    assert seen["body"] == answer.request.content


def test_a_failed_replica_is_taken_out_and_back_when_it_answers_ping_again(secured) -> None:
    broker, tokens = secured
    with replicas("a", "b") as (servers, urls):
        publish(broker, urls)
        servers[0].broken = True
        answers = [predict(broker, tokens["alice"]) for _ in range(4)]
        assert [a.status_code for a in answers] == [200] * 4
        assert {a.json()["replica"] for a in answers} == {"b"}  # a's 503 was retried on b
        assert len(servers[0].seen) == 1  # taken out after its first failure
        servers[0].broken = False
        replica = broker.context.serve_proxy.table.replica(urls[0])
        assert replica is not None

        async def back() -> None:
            while replica.down:
                await asyncio.sleep(0.05)

        broker.run(asyncio.wait_for(back(), 30))
        answers = [predict(broker, tokens["alice"]) for _ in range(4)]
    assert {a.json()["replica"] for a in answers} == {"a", "b"}


def test_a_replica_that_is_gone_costs_no_request(secured) -> None:
    broker, tokens = secured
    with replicas("b") as (_, [alive]):
        with replicas("a") as (_, [gone]):
            pass  # stopped: its port refuses connections now
        publish(broker, [gone, alive])
        answers = [predict(broker, tokens["alice"]) for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert {a.json()["replica"] for a in answers} == {"b"}


def test_no_replica_answering_is_a_503_naming_the_serve(secured) -> None:
    broker, tokens = secured
    with replicas("a") as (servers, urls):
        publish(broker, urls)
        servers[0].broken = True
        answer = predict(broker, tokens["alice"])
    assert answer.status_code == 503
    assert "serve vision/iris has no model server answering" in answer.json()["message"]


def test_another_teams_serve_is_404_and_without_invoke_403(secured) -> None:
    broker, tokens = secured
    with replicas("a") as (servers, urls):
        publish(broker, urls)
        other_team = predict(broker, tokens["bob"])
        no_invoke = predict(broker, tokens["carol"])
        unknown = predict(broker, tokens["alice"], "/serve/vision/nope/invocations")
        no_token = broker.run(broker.client.post("http://broker/serve/vision/iris/invocations", json=BODY))
    assert (other_team.status_code, other_team.json()["message"]) == (404, "no serve vision/iris")
    assert no_invoke.status_code == 403
    assert (
        no_invoke.json()["message"] == "carol may not invoke serve/serve-1 (serve iris) in namespace vision"
    )
    assert (unknown.status_code, no_token.status_code) == (404, 401)
    assert servers[0].seen == []


def test_the_model_servers_400_is_passed_through(secured) -> None:
    broker, tokens = secured
    with replicas("a") as (_, urls):
        publish(broker, urls)
        answer = broker.run(
            broker.client.post(
                "http://broker/serve/vision/iris/invocations",
                content=b"not json",
                headers={"Authorization": f"Bearer {tokens['alice']}", "Content-Type": "application/json"},
            )
        )
    assert answer.status_code == 400
    assert answer.json() == {"error_code": "BAD_REQUEST", "message": "not JSON"}


def test_streaming_answers_pass_through_as_they_come(secured) -> None:
    broker, tokens = secured
    with replicas("a") as (servers, urls), serve_in_thread(broker.app) as base:
        publish(broker, urls)
        headers = {"Authorization": f"Bearer {tokens['alice']}"}
        with httpx.stream("GET", base + "/serve/vision/iris/stream", headers=headers, timeout=30) as answer:
            lines = answer.iter_lines()
            first = next(lines)  # arrives while the server still holds the second chunk back
            servers[0].release.set()
            rest = list(lines)
    assert answer.status_code == 200
    assert (first, rest) == ("first", ["second"])


def test_a_rollout_under_load_fails_no_request(secured) -> None:
    broker, tokens = secured
    proxy = broker.context.serve_proxy
    old_stack = contextlib.ExitStack()
    old_servers, old = old_stack.enter_context(replicas("v1-a", "v1-b"))
    with old_stack, replicas("v2-a", "v2-b") as (new_servers, new):
        publish(broker, old)
        for server in new_servers:
            server.broken = True  # still loading its model: not ready

        async def one_client(stop: asyncio.Event) -> list[httpx.Response]:
            got = []
            while not stop.is_set():
                got.append(
                    await broker.client.post(
                        "http://broker/serve/vision/iris/invocations",
                        json=BODY,
                        headers={"Authorization": f"Bearer {tokens['alice']}"},
                    )
                )
            return got

        async def roll() -> tuple[list[httpx.Response], int]:
            stop = asyncio.Event()
            load = asyncio.gather(*(one_client(stop) for _ in range(8)))
            await asyncio.sleep(0.3)
            for server in new_servers:
                server.broken = False
            leaving = [proxy.table.replica(url) for url in old]
            proxy.table.publish(ServeTarget("serve-1", "vision", "iris", "server-token", tuple(new)))
            # What the rollout does before it stops the old replicas: wait for their requests.
            assert await proxy.table.drained([r for r in leaving if r is not None], timeout=30)
            on_old = sum(len(s.seen) for s in old_servers)
            await asyncio.to_thread(old_stack.close)  # the service stops the old replicas now
            await asyncio.sleep(0.3)
            stop.set()
            return [r for rs in await load for r in rs], on_old

        answers, on_old = broker.run(roll())
    assert [a.status_code for a in answers if a.status_code != 200] == []
    seen = [a.json()["replica"] for a in answers]
    assert {"v1-a", "v1-b", "v2-a", "v2-b"} <= set(seen)
    assert sum(r.startswith("v1") for r in seen) == on_old  # none reached an old one after the switch


def test_a_withdrawn_serve_is_404(secured) -> None:
    broker, tokens = secured
    with replicas("a") as (_, urls):
        publish(broker, urls)
        assert predict(broker, tokens["alice"]).status_code == 200
        broker.context.serve_proxy.table.withdraw("vision", "iris")
        assert predict(broker, tokens["alice"]).status_code == 404
