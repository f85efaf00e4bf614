"""Cross-site requests: the browser's cookie opens only what a browser opens itself (the notebook
proxy), is set ``HttpOnly; SameSite=Strict`` on those paths only, and neither it nor a broker
without authentication lets another site's page change anything. Bearer tokens work as before.

Reproduced before: a ``text/plain`` POST from a foreign origin carrying the cookie created an
experiment.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from broker.accounts import add_user, create_token
from broker.api.access import COOKIE_PATHS
from tests.inprocess import InProcessBroker
from tests.run_as import remove_tree, scratch_dir
from tests.support import python_spec
from tests.test_auth_routes import local_cluster_for_tokens

HOST = "broker"
SAME = f"http://{HOST}"
FOREIGN = "https://evil.example"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessBroker, dict[str, str]]]:
    scratch = scratch_dir()
    broker = InProcessBroker(
        tmp_path_factory.mktemp("cross-site"),
        auth="token",
        clusters={"local": local_cluster_for_tokens(scratch)},
    )
    db = broker.context.db
    db.call(lambda s: add_user(s, "root", teams=["ops"], admin=True, author="test"))
    db.call(lambda s: add_user(s, "alice", teams=["vision"], admin=False, author="test"))
    tokens = {name: db.call(lambda s, n=name: create_token(s, n)).token for name in ("root", "alice")}
    broker.run(broker.context.policy.refresh())  # no loop runs in-process: load the new members now
    tokens["spare"] = db.call(lambda s: create_token(s, "alice")).token
    yield broker, tokens
    broker.close()
    remove_tree(scratch)


def call(broker: InProcessBroker, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request through the whole app, from a client that keeps no cookies between calls."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=broker.app)
        async with httpx.AsyncClient(transport=transport, base_url=SAME) as client:
            return await client.request(method, path, **kwargs)

    return broker.run(send())


def cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"submarine_broker_token={token}"}


def experiments_named(broker: InProcessBroker, token: str, name: str) -> list[dict[str, Any]]:
    answer = call(
        broker, "GET", f"/api/v1/experiment?name={name}", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def test_a_foreign_text_plain_post_with_the_cookie_creates_no_experiment(secured) -> None:
    broker, tokens = secured
    body = json.dumps(python_spec("print('csrf')", name="csrf-probe", namespace="vision"))
    attack = {**cookie(tokens["alice"]), "Content-Type": "text/plain", "Origin": FOREIGN}
    answer = call(broker, "POST", "/api/v1/experiment", content=body, headers=attack)
    assert answer.status_code == 401, answer.text
    assert "cookie only opens pages under /notebook/" in answer.json()["message"]
    # Not from the same site with JSON either: the REST API takes no cookie at all.
    same = {**cookie(tokens["alice"]), "Content-Type": "application/json", "Origin": SAME}
    assert call(broker, "POST", "/api/v1/experiment", content=body, headers=same).status_code == 401
    assert experiments_named(broker, tokens["root"], "csrf-probe") == []

    # A bearer token is unchanged, whatever the Origin or content type says.
    bearer = {"Authorization": f"Bearer {tokens['alice']}", "Content-Type": "text/plain", "Origin": FOREIGN}
    made = call(broker, "POST", "/api/v1/experiment", content=body, headers=bearer)
    assert made.status_code == 200, made.text
    assert [e["experimentId"] for e in experiments_named(broker, tokens["root"], "csrf-probe")] == [
        made.json()["result"]["experimentId"]
    ]


def test_sign_in_sets_a_strict_http_only_cookie_on_the_notebook_paths(secured) -> None:
    broker, tokens = secured
    form = {"token": tokens["alice"], "next": "/notebook/vision/lab-one/lab?reset"}
    answer = call(broker, "POST", "/login", data=form, headers={"Origin": SAME})
    assert answer.status_code == 303 and answer.headers["location"] == "/notebook/vision/lab-one/lab?reset"
    cookies = answer.headers.get_list("set-cookie")
    assert len(cookies) == len(COOKIE_PATHS)  # one per path a browser opens itself, none wider
    for set_cookie, path in zip(cookies, COOKIE_PATHS, strict=True):
        attributes = [part.strip().lower() for part in set_cookie.split(";")]
        assert attributes[0] == f"submarine_broker_token={tokens['alice']}".lower()
        assert {"httponly", "samesite=strict", f"path={path}"} <= set(attributes)
        assert "secure" not in attributes  # plain HTTP here; see below for HTTPS
        assert not any(
            a.startswith(("max-age", "expires", "domain")) for a in attributes
        )  # this session, this host
    assert "/notebook/" in COOKIE_PATHS

    over_tls = broker.run(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=broker.app), base_url="https://broker").post(
            "/login", data={"token": tokens["alice"]}
        )
    )
    assert over_tls.status_code == 200 and "Signed in as alice" in over_tls.text
    assert "secure" in [p.strip().lower() for p in over_tls.headers["set-cookie"].split(";")]

    page = call(broker, "GET", "/login?next=/notebook/vision/lab-one/lab")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'name="next" value="/notebook/vision/lab-one/lab"' in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_sign_in_refuses_bad_tokens_other_sites_and_redirects_elsewhere(secured) -> None:
    broker, tokens = secured
    wrong = call(broker, "POST", "/login", data={"token": "sbk_000000000000_" + "x" * 43})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    assert "Unknown or revoked API token" in wrong.text
    foreign = call(broker, "POST", "/login", data={"token": tokens["alice"]}, headers={"Origin": FOREIGN})
    assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
    for outside in (
        "https://evil.example/notebook/",
        "//evil.example/notebook/",
        "/api/v1/experiment",
        "/\\evil",
    ):
        answer = call(broker, "POST", "/login", data={"token": tokens["alice"], "next": outside})
        assert answer.status_code == 200 and "location" not in answer.headers, outside
    page = call(broker, "GET", "/login?next=" + quote('/notebook/"><script>x</script>'))
    assert "<script>x" not in page.text
    unreadable = call(broker, "POST", "/login", content=b"token", headers={"Content-Type": "text/plain"})
    assert unreadable.status_code == 415


def test_the_cookie_opens_notebook_paths_but_not_for_another_sites_page(secured) -> None:
    broker, tokens = secured
    path = "/notebook/vision/missing/api/contents"
    opened = call(broker, "GET", path, headers=cookie(tokens["alice"]))
    assert (
        opened.status_code == 404 and opened.json()["message"] == "Notebook not found."
    )  # past authentication
    assert call(broker, "PUT", path, headers={**cookie(tokens["alice"]), "Origin": SAME}).status_code == 404
    assert (
        call(broker, "PUT", path, headers=cookie(tokens["alice"])).status_code == 404
    )  # a script: no Origin
    for origin in (FOREIGN, "null", "http://broker.evil.example", "http://broker:8443"):
        refused = call(broker, "PUT", path, headers={**cookie(tokens["alice"]), "Origin": origin})
        assert refused.status_code == 403, origin
        assert "cross-site request refused" in refused.json()["message"]
    # Without the cookie: a browser is sent to sign in, anything else is told how to authenticate.
    browser = call(broker, "GET", path + "?x=1", headers={"Accept": "text/html,*/*"})
    assert browser.status_code == 303
    assert browser.headers["location"] == "/login?next=" + quote(path + "?x=1", safe="")
    script = call(broker, "GET", path)
    assert script.status_code == 401 and "sign in at /login" in script.json()["message"]
    # A revoked token's cookie opens nothing, at once.
    assert call(broker, "GET", path, headers=cookie(tokens["spare"])).status_code == 404
    spare_id = tokens["spare"].split("_")[1]
    revoked = call(
        broker, "DELETE", f"/api/v1/token/{spare_id}", headers={"Authorization": f"Bearer {tokens['spare']}"}
    )
    assert revoked.status_code == 200, revoked.text
    assert call(broker, "GET", path, headers=cookie(tokens["spare"])).status_code == 401


def test_sign_out_forgets_the_cookie(secured) -> None:
    broker, _ = secured
    answer = call(broker, "POST", "/logout", headers={"Origin": SAME})
    assert answer.status_code == 200
    attributes = [p.strip().lower() for p in answer.headers["set-cookie"].split(";")]
    assert attributes[0] == 'submarine_broker_token=""' and "path=/notebook/" in attributes
    assert "max-age=0" in attributes
    assert call(broker, "POST", "/logout", headers={"Origin": FOREIGN}).status_code == 403


def test_without_authentication_another_sites_page_cannot_submit(tmp_path) -> None:
    broker = InProcessBroker(tmp_path)
    try:
        body = json.dumps(python_spec("print('csrf')", name="csrf-probe"))
        plain = {"Content-Type": "text/plain"}
        refused = call(
            broker, "POST", "/api/v1/experiment", content=body, headers={**plain, "Origin": FOREIGN}
        )
        assert refused.status_code == 403, refused.text
        assert call(broker, "GET", "/api/v1/experiment?name=csrf-probe").json()["result"] == []
        # The CLI and the SDK send no Origin; a page of the broker's own origin would send its own.
        assert call(broker, "POST", "/api/v1/experiment", content=body, headers=plain).status_code == 200
        same = call(broker, "POST", "/api/v1/experiment", content=body, headers={**plain, "Origin": SAME})
        assert same.status_code == 200
        assert len(call(broker, "GET", "/api/v1/experiment?name=csrf-probe").json()["result"]) == 2
        # Reads are the browser's to keep from other sites (no CORS headers): not refused here.
        assert call(broker, "GET", "/api/v1/experiment", headers={"Origin": FOREIGN}).status_code == 200
    finally:
        broker.close()
