"""The workbench's foundation in a real browser against a real broker (auth: token): ``/`` leads
to the workbench, a browser without the cookie is sent through the sign-in page and comes back,
pages carry the CSRF token, a form without it is refused, another site's post too; and the
tokens themselves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from broker.guard import Forbidden
from broker.secret_key import SecretBox
from broker.web.csrf import CsrfTokens
from tests.browser_support import shot, sign_in
from tests.support import Broker
from tests.test_permissions import make_users


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, dict[str, str]]]:
    broker = Broker(tmp_path_factory.mktemp("workbench"), auth="token")
    tokens = make_users(broker)
    broker.start()
    yield broker, tokens
    broker.close()


def test_a_new_browser_signs_in_and_lands_on_the_workbench(
    signed: tuple[Broker, dict[str, str]], browser_page: Any
) -> None:
    broker, tokens = signed
    page = browser_page
    page.goto(broker.url + "/")
    assert page.url.startswith(broker.url + "/login?next=")  # / -> /ui/ -> the sign-in page
    shot(page, "sign-in")
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    assert "Unknown or revoked API token" in page.content()
    sign_in(page, broker.url, tokens["alice"], "/ui/")
    cookies = {c["name"]: c for c in page.context.cookies()}
    cookie = cookies["submarine_broker_token"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui/"
    assert page.evaluate("document.cookie") == ""  # no script can read it


def test_unauthenticated_api_callers_still_get_json(signed: tuple[Broker, dict[str, str]]) -> None:
    broker, _ = signed
    answer = httpx.get(broker.url + "/ui/experiments", headers={"Accept": "application/json"})
    assert answer.status_code == 401 and answer.json()["status"] == "UNAUTHORIZED"
    assert httpx.get(broker.url + "/", follow_redirects=False).headers["location"] == "/ui/"


def _request(cookie: str | None) -> Request:
    headers = [(b"cookie", f"submarine_broker_token={cookie}".encode())] if cookie else []
    return Request({"type": "http", "method": "POST", "path": "/ui/x", "headers": headers})


def test_csrf_tokens_are_bound_to_the_browser_credential() -> None:
    tokens = CsrfTokens(SecretBox.ephemeral())
    alice = _request("sbt_alice")
    issued = tokens.issue(alice, "alice")
    tokens.require(alice, "alice", issued)
    for request, user, sent in (
        (alice, "alice", None),
        (alice, "alice", ""),
        (alice, "alice", issued[:-1] + ("0" if issued[-1] != "0" else "1")),
        (_request("sbt_other"), "alice", issued),  # another browser's cookie
        (alice, "bob", issued),
        (_request(None), "alice", issued),
    ):
        with pytest.raises(Forbidden, match="CSRF token missing or wrong"):
            tokens.require(request, user, sent)
    assert CsrfTokens(SecretBox.ephemeral()).issue(alice, "alice") != issued  # another broker key
