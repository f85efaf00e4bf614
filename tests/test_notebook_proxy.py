"""The notebook proxy against a real Jupyter server and a small echo upstream, through a real uvicorn.

A Starlette app routes ``/notebook/{namespace}/{name}/{path}`` (HTTP and WebSocket) to NotebookProxy:
``team/nb1`` is a real Jupyter server whose base_url is that prefix, ``team/echo`` an upstream that
echoes what it received, ``team/dead`` a port nothing listens on; ``tiny/echo`` and ``hasty/echo`` reach
the echo upstream through proxies with a 1 KiB body limit and with a 0.5 s read timeout.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from broker.notebooks.proxy import WS_TASK_PREFIX, NotebookProxy, Upstream, _scrubbed
from tests.jupyter_kernel import KERNEL_WS_V1, channels_url, create_kernel, delete_kernel, execute
from tests.jupyter_server import JupyterServer
from tests.support import free_port, serve_in_thread

ECHO_TOKEN = "echo-token-5b1e9c0d7a"
DEAD_TOKEN = "dead-token-0c4f2e8a91"
USER_SECRET = "user-credential-77aa"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
pytestmark = pytest.mark.timeout(120)


# The echo upstream ---------------------------------------------------------------------------------
@dataclass
class Echo:
    """What the echo upstream saw of WebSocket closes (it runs in the server thread)."""

    client_closes: list[int] = field(default_factory=list)

    async def http(self, request: Request) -> Response:
        path = request.path_params["path"]
        if path.endswith("slow"):
            await asyncio.sleep(2.5)
        if path.endswith("gzip"):
            return Response(gzip.compress(b"hello " * 1000), headers={"Content-Encoding": "gzip"})
        if path.endswith("page.html"):
            page = f'<script>{{"token": "{ECHO_TOKEN}", "again": "{ECHO_TOKEN}"}}</script>' * 500
            return Response(page, media_type="text/html")
        body = await request.body()
        seen = {
            "method": request.method,
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.scope["query_string"].decode(),
            "headers": [[n.decode(), v.decode()] for n, v in request.scope["headers"]],
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        answer = JSONResponse(seen)
        for name, value in [
            ("set-cookie", "first=1; Path=/"),
            ("set-cookie", "second=2; Path=/; HttpOnly"),
            ("keep-alive", "timeout=5"),
            ("connection", "x-hop-resp"),
            ("x-hop-resp", "1"),
            ("proxy-authenticate", "Basic"),
            ("x-end-to-end", "kept"),
        ]:
            answer.raw_headers.append((name.encode(), value.encode()))
        return answer

    async def ws(self, websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols", [])
        await websocket.accept(subprotocol=offered[-1] if offered else None)
        headers = {n.decode(): v.decode() for n, v in websocket.scope["headers"]}
        raw = websocket.scope["raw_path"].decode()
        await websocket.send_json({"headers": headers, "raw_path": raw, "query": websocket.url.query})
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    self.client_closes.append(message["code"])
                    return
                if message.get("text") == "close-me":
                    await websocket.close(4001, "bye")
                    return
                if message.get("text") is not None:
                    await websocket.send_text(message["text"])
                else:
                    await websocket.send_bytes(message["bytes"])
        except WebSocketDisconnect as exc:
            self.client_closes.append(exc.code)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/{path:path}", self.http, methods=METHODS),
                WebSocketRoute("/{path:path}", self.ws),
            ]
        )


# The proxy under test ------------------------------------------------------------------------------
def proxy_app(upstreams: dict[tuple[str, str], tuple[NotebookProxy, Upstream]]) -> Starlette:
    """Routes like the broker's, minus authentication: every path goes to its upstream."""

    async def http(request: Request) -> Response:
        proxy, upstream = upstreams[request.path_params["namespace"], request.path_params["name"]]
        return await proxy.forward_http(request, upstream)

    async def ws(websocket: WebSocket) -> None:
        proxy, upstream = upstreams[websocket.path_params["namespace"], websocket.path_params["name"]]
        await proxy.forward_websocket(websocket, upstream)

    async def relay_tasks(request: Request) -> Response:
        names = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(WS_TASK_PREFIX)]
        return JSONResponse(names)

    async def close(request: Request) -> Response:
        for proxy in {id(p): p for p, _ in upstreams.values()}.values():
            await proxy.aclose()
        return Response(status_code=204)

    prefix = "/notebook/{namespace}/{name}/{path:path}"
    return Starlette(
        routes=[
            Route("/_test/relay-tasks", relay_tasks),
            Route("/_test/close", close, methods=["POST"]),
            Route(prefix, http, methods=METHODS),
            WebSocketRoute(prefix, ws),
        ]
    )


@dataclass
class Env:
    jupyter: JupyterServer
    echo: Echo
    url: str  # the proxy, http://127.0.0.1:<port>
    client: httpx.Client

    @property
    def nb(self) -> str:
        return f"{self.url}/notebook/team/nb1/"

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://")

    def relay_tasks(self) -> list[str]:
        return self.client.get(f"{self.url}/_test/relay-tasks").json()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    echo = Echo()
    main, tiny, hasty = NotebookProxy(), NotebookProxy(max_body_bytes=1024), NotebookProxy(read_timeout=0.5)
    with (
        JupyterServer(tmp_path_factory.mktemp("jupyter"), base_url="/notebook/team/nb1/") as jupyter,
        serve_in_thread(echo.app()) as echo_url,
    ):
        upstreams = {
            ("team", "nb1"): (main, Upstream(jupyter.origin, jupyter.token)),
            ("team", "echo"): (main, Upstream(echo_url, ECHO_TOKEN)),
            ("team", "dead"): (main, Upstream(f"http://127.0.0.1:{free_port()}", DEAD_TOKEN)),
            ("tiny", "echo"): (tiny, Upstream(echo_url, ECHO_TOKEN)),
            ("hasty", "echo"): (hasty, Upstream(echo_url, ECHO_TOKEN)),
        }
        with (
            serve_in_thread(proxy_app(upstreams)) as url,
            httpx.Client(timeout=30, trust_env=False) as client,
        ):
            yield Env(jupyter, echo, url, client)
            assert client.post(f"{url}/_test/close").status_code == 204


def echoed(answer: httpx.Response) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The echo upstream's report and the headers it received, by lower-case name."""
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    headers: dict[str, list[str]] = {}
    for name, value in seen["headers"]:
        headers.setdefault(name, []).append(value)
    return seen, headers


def assert_envelope(answer: httpx.Response, code: int, *words: str) -> None:
    body = answer.json()
    assert answer.status_code == code and body["code"] == code, answer.text
    assert body["result"] is None and body["success"] is None
    assert all(word in body["message"] for word in words), body["message"]
    for secret in (ECHO_TOKEN, DEAD_TOKEN):
        assert secret not in answer.text


def wait_no_relay_tasks(env: Env) -> None:
    deadline = time.monotonic() + 10
    while env.relay_tasks():
        assert time.monotonic() < deadline, f"relay tasks left: {env.relay_tasks()}"
        time.sleep(0.05)


# HTTP --------------------------------------------------------------------------------------------
def test_the_proxy_adds_the_token_jupyter_demands(env: Env) -> None:
    direct = env.client.get(env.jupyter.url + "api/status")
    assert direct.status_code == 403
    proxied = env.client.get(env.nb + "api/status")
    assert proxied.status_code == 200 and "started" in proxied.json()
    # a wrong credential from the caller is replaced, not forwarded
    wrong = env.client.get(env.nb + "api/status", headers={"Authorization": f"token {USER_SECRET}"})
    assert wrong.status_code == 200


def test_the_upstream_sees_its_token_not_the_callers_credentials(env: Env) -> None:
    answer = env.client.get(
        f"{env.url}/notebook/team/echo/api/status",
        headers={
            "Authorization": f"Bearer {USER_SECRET}",
            "Cookie": f"_xsrf=abc; submarine_broker_token={USER_SECRET}; other=1",
            "X-Forwarded-Host": "spoofed.example",
        },
    )
    seen, headers = echoed(answer)
    assert headers["authorization"] == [f"token {ECHO_TOKEN}"]
    assert headers["cookie"] == ["_xsrf=abc; other=1"]
    assert USER_SECRET not in json.dumps(seen)
    echo_host = headers["host"][0]
    assert echo_host != answer.request.headers["host"] and echo_host.startswith("127.0.0.1:")
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-host"] == [answer.request.headers["host"]]


def test_path_and_query_string_are_forwarded_unchanged(env: Env) -> None:
    answer = env.client.get(f"{env.url}/notebook/team/echo/some%20dir/a%2Fb.txt?b=2&a=1&a=%2F&empty=")
    seen, _ = echoed(answer)
    assert seen["raw_path"] == "/notebook/team/echo/some%20dir/a%2Fb.txt"
    assert seen["query"] == "b=2&a=1&a=%2F&empty="
    # and Jupyter acts on the query: content=0 leaves the directory listing out
    assert env.client.get(env.nb + "api/contents/").json()["content"] is not None
    assert env.client.get(env.nb + "api/contents/?content=0").json()["content"] is None


def test_hop_by_hop_headers_are_stripped_both_ways(env: Env) -> None:
    answer = env.client.get(
        f"{env.url}/notebook/team/echo/x",
        headers={
            "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "1",
            "Keep-Alive": "300",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-Keep-Me": "1",
        },
    )
    _, headers = echoed(answer)
    for name in ("x-drop-me", "keep-alive", "te", "proxy-authorization"):
        assert name not in headers, name
    assert headers.get("connection", ["keep-alive"]) == ["keep-alive"]  # httpx's own, not the caller's
    assert headers["x-keep-me"] == ["1"]
    for name in ("x-hop-resp", "keep-alive", "proxy-authenticate"):
        assert name not in answer.headers, name
    assert "x-hop-resp" not in answer.headers.get("connection", "").lower()
    assert answer.headers["x-end-to-end"] == "kept"


def test_head_answers_headers_only(env: Env) -> None:
    answer = env.client.head(f"{env.url}/notebook/team/echo/x")
    assert answer.status_code == 200 and answer.content == b""
    assert int(answer.headers["content-length"]) > 0 and answer.headers["x-end-to-end"] == "kept"


def test_every_set_cookie_reaches_the_client(env: Env) -> None:
    answer = env.client.get(f"{env.url}/notebook/team/echo/cookies")
    assert answer.headers.get_list("set-cookie") == ["first=1; Path=/", "second=2; Path=/; HttpOnly"]


def test_encoded_bodies_pass_through_undecoded(env: Env) -> None:
    with env.client.stream("GET", f"{env.url}/notebook/team/echo/gzip") as answer:
        raw = b"".join(answer.iter_raw())
    assert answer.headers["content-encoding"] == "gzip"
    assert int(answer.headers["content-length"]) == len(raw)
    assert gzip.decompress(raw) == b"hello " * 1000


def test_html_pages_do_not_carry_the_token(env: Env) -> None:
    page = env.client.get(f"{env.url}/notebook/team/echo/page.html")
    assert page.status_code == 200 and ECHO_TOKEN not in page.text
    assert page.text.count('"token": ""') == 500
    # JupyterLab puts the server's token in its page config; through the proxy it is gone
    assert env.jupyter.token in env.client.get(env.jupyter.url + "lab", headers=env.jupyter.auth).text
    lab = env.client.get(env.nb + "lab")
    assert lab.status_code == 200 and "jupyter-config-data" in lab.text
    assert env.jupyter.token not in lab.text


def test_the_scrubber_finds_the_token_across_chunk_boundaries() -> None:
    secret = b"tok-123456"
    page = b"<p>" + secret + b"</p>" + secret + secret + b"x" * 7 + secret[:4]
    for size in (1, 3, 7, 10, 11, len(page)):

        async def pieces(size: int = size) -> AsyncIterator[bytes]:
            for start in range(0, len(page), size):
                yield page[start : start + size]

        async def scrub() -> bytes:
            return b"".join([chunk async for chunk in _scrubbed(pieces(), secret)])

        assert asyncio.run(scrub()) == b"<p></p>" + b"x" * 7 + secret[:4], size


def test_contents_round_trip_small_and_5mb(env: Env) -> None:
    text = "héllo, notebook\n" * 10
    put = env.client.put(
        env.nb + "api/contents/note.txt", json={"type": "file", "format": "text", "content": text}
    )
    assert put.status_code == 201, put.text
    got = env.client.get(env.nb + "api/contents/note.txt")
    assert got.status_code == 200 and got.json()["content"] == text

    blob = os.urandom(5 * 1024 * 1024)
    model = {"type": "file", "format": "base64", "content": base64.b64encode(blob).decode()}
    assert env.client.put(env.nb + "api/contents/big.bin", json=model).status_code == 201
    with env.client.stream("GET", env.nb + "files/big.bin") as answer:
        assert answer.status_code == 200
        chunks = list(answer.iter_bytes())
    assert b"".join(chunks) == blob
    assert env.client.delete(env.nb + "api/contents/big.bin").status_code == 204


def test_a_streamed_5mb_upload_arrives_whole(env: Env) -> None:
    blob = os.urandom(5 * 1024 * 1024)

    def pieces() -> Iterator[bytes]:  # no Content-Length: chunked all the way
        for start in range(0, len(blob), 256 * 1024):
            yield blob[start : start + 256 * 1024]

    seen, headers = echoed(env.client.post(f"{env.url}/notebook/team/echo/upload", content=pieces()))
    assert "content-length" not in headers
    assert seen["body_length"] == len(blob)
    assert seen["body_sha256"] == hashlib.sha256(blob).hexdigest()


def test_bodies_over_the_limit_are_refused_with_413(env: Env) -> None:
    url = f"{env.url}/notebook/tiny/echo/upload"
    assert echoed(env.client.post(url, content=b"x" * 1000))[0]["body_length"] == 1000
    assert_envelope(env.client.post(url, content=b"x" * 2048), 413, "1024 bytes")
    chunked = env.client.post(url, content=iter([b"x" * 600, b"x" * 600]))
    assert_envelope(chunked, 413, "1024 bytes")


def test_a_dead_upstream_is_a_502_envelope_without_the_token(env: Env) -> None:
    answer = env.client.get(f"{env.url}/notebook/team/dead/api/status")
    assert_envelope(answer, 502, "team/dead", "unreachable")


def test_a_slow_upstream_is_a_504_envelope(env: Env) -> None:
    assert_envelope(env.client.get(f"{env.url}/notebook/hasty/echo/slow"), 504, "hasty/echo", "in time")


def test_cross_origin_writes_are_refused_reads_are_not(env: Env) -> None:
    url = f"{env.url}/notebook/team/echo/x"
    evil = {"Origin": "https://evil.example"}
    assert_envelope(env.client.post(url, headers=evil, content=b"{}"), 403, "cross-origin")
    assert env.client.get(url, headers=evil).status_code == 200
    same = {"Origin": env.url}
    assert env.client.post(url, headers=same, content=b"{}").status_code == 200


def test_dot_segments_are_refused(env: Env) -> None:
    answer = env.client.get(f"{env.url}/notebook/team/echo/a/%2e%2e/%2e%2e/other/x")
    assert_envelope(answer, 400, "'..'")


# WebSocket ---------------------------------------------------------------------------------------
async def refusal(url: str) -> InvalidStatus:
    """The refusal a WebSocket handshake to ``url`` meets (fails the test if it is accepted)."""
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, proxy=None, open_timeout=10)
    return refused.value


def test_a_kernel_runs_code_through_the_proxy(env: Env) -> None:
    kernel = create_kernel(env.nb)  # no token: the proxy adds it
    try:
        ws_url = channels_url(env.nb.replace("http://", "ws://"), kernel)
        assert asyncio.run(execute(ws_url, "1+1")) == "2"
        assert asyncio.run(execute(ws_url, "print('hi'); 6*7", subprotocols=[KERNEL_WS_V1])) == "hi\n42"

        async def negotiated() -> str | None:
            async with connect(ws_url, subprotocols=[Subprotocol(KERNEL_WS_V1)], proxy=None) as conn:
                return conn.subprotocol

        assert asyncio.run(negotiated()) == KERNEL_WS_V1
    finally:
        delete_kernel(env.nb, kernel)
    wait_no_relay_tasks(env)


def test_a_refused_upstream_handshake_is_refused_to_the_client(env: Env) -> None:
    refused = asyncio.run(refusal(f"{env.ws}/notebook/team/nb1/api/kernels/{'0' * 32}/channels"))
    assert refused.response.status_code == 404
    assert env.jupyter.token.encode() not in (refused.response.body or b"")


def test_frames_and_closes_are_relayed_both_ways(env: Env) -> None:
    url = f"{env.ws}/notebook/team/echo/ws/path?x=1&y=%2F"

    async def session() -> tuple[dict[str, Any], str | None, int | None, str | None]:
        async with asyncio.timeout(20):
            return await talk()

    async def talk() -> tuple[dict[str, Any], str | None, int | None, str | None]:
        headers = {
            "Authorization": f"Bearer {USER_SECRET}",
            "Cookie": f"submarine_broker_token={USER_SECRET}; _xsrf=k",
        }
        async with connect(
            url, additional_headers=headers, subprotocols=["one", "two"], proxy=None, max_size=None
        ) as conn:
            hello = json.loads(await conn.recv())
            await conn.send("text ✓")
            assert await conn.recv() == "text ✓"
            await conn.send(b"\x00\x01\xff")
            assert await conn.recv() == b"\x00\x01\xff"
            big = os.urandom(3 * 1024 * 1024)  # over websockets' 1 MiB default
            await conn.send(big)
            assert await conn.recv() == big
            await conn.send("close-me")
            with pytest.raises(ConnectionClosed):
                await conn.recv()
            return hello, conn.subprotocol, conn.close_code, conn.close_reason

    hello, subprotocol, code, reason = asyncio.run(session())
    assert subprotocol == "two"  # the upstream's choice
    assert hello["headers"]["authorization"] == f"token {ECHO_TOKEN}"
    assert hello["headers"]["cookie"] == "_xsrf=k"
    assert USER_SECRET not in json.dumps(hello)
    assert hello["raw_path"] == "/notebook/team/echo/ws/path" and hello["query"] == "x=1&y=%2F"
    assert (code, reason) == (4001, "bye")
    wait_no_relay_tasks(env)

    async def client_closes() -> None:
        async with asyncio.timeout(20), connect(url, proxy=None) as conn:
            await conn.recv()
            await conn.close(4002, "client-bye")

    before = len(env.echo.client_closes)
    asyncio.run(client_closes())
    deadline = time.monotonic() + 10
    while len(env.echo.client_closes) == before:
        assert time.monotonic() < deadline, "the upstream never saw the client's close"
        time.sleep(0.05)
    assert env.echo.client_closes[-1] == 4002
    wait_no_relay_tasks(env)


def test_a_websocket_to_a_dead_upstream_is_refused_cleanly(env: Env) -> None:
    refused = asyncio.run(refusal(f"{env.ws}/notebook/team/dead/api/kernels/x/channels"))
    assert refused.response.status_code == 502
    body = json.loads(refused.response.body or b"{}")
    assert body["code"] == 502 and "team/dead" in body["message"] and "unreachable" in body["message"]
    assert DEAD_TOKEN.encode() not in (refused.response.body or b"")
    wait_no_relay_tasks(env)


def test_a_cross_origin_websocket_is_refused(env: Env) -> None:
    url = f"{env.ws}/notebook/team/echo/ws"

    async def attempt(origin: str) -> int:
        try:
            async with asyncio.timeout(20), connect(url, origin=origin, proxy=None) as conn:  # type: ignore[arg-type]
                await conn.recv()
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(attempt("https://evil.example")) == 403
    assert asyncio.run(attempt(env.url)) == 101
    wait_no_relay_tasks(env)
