"""Authentication is decided by the route a request reaches, not by how its path ends.

Every route of the app, with every method, its path parameters set to ``ping`` (so every path ends
in ``/ping``), plus paths that end in ``ping`` or name the OpenAPI document without being those
routes: without a token, only the real GET ping and OpenAPI routes (and the sign-in page) answer,
everything else is a 401; with a token nothing is a 500, unknown paths are 404 and other methods
405. Reproduced before: ``DELETE /api/v1/experiment/ping`` and similar ran their handlers without
a caller and answered 500 (``KeyError: 'caller'``), and so did a WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.routing import Route, WebSocketRoute

from broker.accounts import add_user, create_token
from tests.inprocess import InProcessBroker
from tests.run_as import ensure_users, is_root, remove_tree, scratch_dir

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: The only (method, path) pairs that answer without a caller.
PUBLIC = {
    *(
        (m, p)
        for m in ("GET", "HEAD")
        for p in (
            "/api/v1/experiment/ping",
            "/api/v1/notebook/ping",
            "/api/v1/serve/ping",
            "/api/v1/registered-model/ping",
            "/api/v1/model-version/ping",
        )
    ),
    ("GET", "/api/v1/openapi.json"),
    ("HEAD", "/api/v1/openapi.json"),
    ("GET", "/login"),
    ("HEAD", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/login/once"),
    ("HEAD", "/login/once"),
    ("GET", "/"),  # leads to the workbench (/ui/), which then wants a caller
    ("HEAD", "/"),
}
#: Paths that end like the open ones (or hold their text) without being their routes.
LOOKALIKES = [
    "/ping",
    "/api/v1/ping",
    "/api/v1/experiment/ping/ping",
    "/api/v1/experiment/logs/ping",
    "/api/v1/cluster/ping",
    "/api/v1/user/ping",
    "/api/v1/token/ping",
    "/api/v1/policy/ping",
    "/api/v1/policy/revert/ping",
    "/api/v1/placement/ping",
    "/api/v1/openapi.json/ping",
    "/x/api/v1/openapi.json",
    "/notebook/ping",
    "/notebook/team/ping",
    "/notebook/team/nb/ping",
    "/login/ping",
    "/api/v1/no-such-thing",
]


def local_cluster_for_tokens(scratch: Any) -> dict[str, Any]:
    """A local cluster an ``auth: token`` broker accepts: its work runs as a run-as user."""
    if not is_root():
        return {"kind": "local", "run_as": "broker"}
    first = ensure_users()[0]
    return {"kind": "local", "run_as": {"*": first}, "work_dir": str(scratch / "local")}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessBroker, dict[str, str]]]:
    scratch = scratch_dir()
    broker = InProcessBroker(
        tmp_path_factory.mktemp("routes"), auth="token", clusters={"local": local_cluster_for_tokens(scratch)}
    )
    db = broker.context.db
    db.call(lambda s: add_user(s, "root", teams=["ops"], admin=True, author="test"))
    db.call(lambda s: add_user(s, "alice", teams=["vision"], admin=False, author="test"))
    tokens = {name: db.call(lambda s, n=name: create_token(s, n)).token for name in ("root", "alice")}
    broker.run(broker.context.policy.refresh())  # no loop runs in-process: load the new members now
    yield broker, tokens
    broker.close()
    remove_tree(scratch)


def concrete(path: str) -> str:
    """A route's path with every parameter (``{id}``, ``{path:path}``) set to ``ping``."""
    return re.sub(r"{[^}]+}", "ping", path)


def every_path(broker: InProcessBroker) -> list[str]:
    routed = {concrete(r.path) for r in broker.app.routes if isinstance(r, Route | WebSocketRoute)}
    return sorted(routed | set(LOOKALIKES))


def call(broker: InProcessBroker, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return broker.run(broker.client.request(method, "http://broker" + path, **kwargs))


def test_the_route_table_covers_what_the_reproduction_found(secured) -> None:
    broker, _ = secured
    paths = every_path(broker)
    for found in ("/api/v1/experiment/ping", "/api/v1/notebook/ping", "/notebook/ping/ping/ping"):
        assert found in paths
    assert len(paths) > 30


def test_without_a_token_only_the_public_routes_answer(secured) -> None:
    broker, _ = secured
    wrong: list[str] = []
    for path in every_path(broker):
        for method in METHODS:
            answer = call(broker, method, path)
            public = (method, path) in PUBLIC
            if answer.status_code >= 500 or (answer.status_code == 401) == public:
                wrong.append(f"{method} {path}: {answer.status_code} {answer.text[:120]}")
    assert not wrong, "\n".join(wrong)


def test_with_a_token_nothing_is_a_500_and_unknown_paths_are_404(secured) -> None:
    broker, tokens = secured
    headers = {"Authorization": f"Bearer {tokens['root']}"}
    wrong: list[str] = []
    for path in every_path(broker):
        for method in METHODS:
            answer = call(broker, method, path, headers=headers)
            if answer.status_code >= 500 or answer.status_code == 401:
                wrong.append(f"{method} {path}: {answer.status_code} {answer.text[:120]}")
    assert not wrong, "\n".join(wrong)
    # What the reproduction's paths answer once a caller is known.
    assert call(broker, "DELETE", "/api/v1/experiment/ping", headers=headers).status_code == 404
    assert call(broker, "DELETE", "/api/v1/notebook/ping", headers=headers).status_code == 404
    assert call(broker, "POST", "/api/v1/openapi.json", headers=headers).status_code == 405
    assert call(broker, "GET", "/api/v1/no-such-thing", headers=headers).status_code == 404
    assert call(broker, "GET", "/api/v1/experiment/ping", headers=headers).json()["result"] == "Pong"


def handshake(broker: InProcessBroker, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Open a WebSocket on the app: ``(101, "")`` when accepted, ``(HTTP status, body)`` when
    refused with a response, ``(403, "closed")`` when closed before accepting (what servers answer)."""
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "server": ("broker", 80),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"broker")]
        + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}},
    }
    broker.run(asyncio.wait_for(broker.app(scope, receive, send), timeout=30))
    first = sent[0]
    if first["type"] == "websocket.accept":
        return 101, ""
    if first["type"] == "websocket.close":
        return 403, "closed"
    assert first["type"] == "websocket.http.response.start", sent
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return first["status"], body.decode()


def test_websockets_need_a_caller_whatever_their_path(secured) -> None:
    broker, tokens = secured
    for path in ("/notebook/team/nb/ping", "/api/v1/experiment/ping", "/api/v1/notebook/ping", "/ping"):
        status, body = handshake(broker, path)
        assert status == 401, (path, status, body)
        assert "API token" in json.loads(body)["message"]
    alice = {"Authorization": f"Bearer {tokens['alice']}"}
    status, body = handshake(broker, "/notebook/team/nb/ping", alice)
    assert status == 404, body  # authenticated: no such notebook for alice
    # No WebSocket route there: closed before the handshake (a 403 to the client), not a 500.
    assert handshake(broker, "/api/v1/experiment/ping", alice) == (403, "closed")


def test_a_broker_without_authentication_answers_every_route_without_a_500(tmp_path) -> None:
    broker = InProcessBroker(tmp_path)
    try:
        wrong = [
            f"{method} {path}: {answer.status_code} {answer.text[:120]}"
            for path in every_path(broker)
            for method in METHODS
            if (answer := call(broker, method, path)).status_code >= 500
        ]
        assert not wrong, "\n".join(wrong)
    finally:
        broker.close()


def test_the_openapi_document_marks_what_needs_a_token(secured) -> None:
    broker, _ = secured
    document = call(broker, "GET", "/api/v1/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert document["security"] == [{"bearer": []}]
    paths = document["paths"]
    assert paths["/api/v1/experiment/ping"]["get"]["security"] == []
    assert paths["/api/v1/openapi.json"]["get"]["security"] == []
    assert "security" not in paths["/api/v1/experiment/{id}"]["delete"]
    assert set(paths["/api/v1/token"]) == {"get"} and set(paths["/api/v1/token/{id}"]) == {"delete"}
    assert "/login" not in paths  # a page for browsers, not part of the API
