"""A browser opens a notebook through the broker with the cookie the sign-in page sets: a real
broker with ``auth: token``, a real Jupyter server, HTTP and the kernel's WebSocket. Another site's
page gets nothing from the same cookie."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.jupyter_kernel import execute
from tests.support import Broker
from tests.test_notebooks import NAMESPACE, create, kernel_ws, wait_status
from tests.test_permissions import make_users

FOREIGN = "https://evil.example"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, dict[str, str]]]:
    broker = Broker(tmp_path_factory.mktemp("cookie"), auth="token", notebooks={"check_interval": 0.3})
    tokens = make_users(broker)
    broker.start()
    yield broker, tokens
    broker.close()


def test_a_browser_signs_in_and_opens_its_notebook_with_the_cookie(secured) -> None:
    broker, tokens = secured
    with httpx.Client(base_url=broker.url, headers={"Authorization": f"Bearer {tokens['alice']}"}) as alice:
        notebook = create(alice, "cookie-nb")
        wait_status(alice, notebook["notebookId"], "running")
    prefix = f"/notebook/{NAMESPACE}/cookie-nb/"
    same = broker.url  # the browser's Origin for the broker's own pages

    with httpx.Client(base_url=broker.url, timeout=30, headers={"Accept": "text/html"}) as browser:
        # Not signed in: the notebook's page leads to the sign-in form, which leads back.
        first = browser.get(prefix + "lab")
        assert first.status_code == 303
        assert first.headers["location"] == "/login?next=" + quote(prefix + "lab", safe="")
        form = browser.get(first.headers["location"])
        assert form.status_code == 200 and f'value="{prefix}lab"' in form.text
        signed = browser.post(
            "/login", data={"token": tokens["alice"], "next": prefix + "lab"}, headers={"Origin": same}
        )
        assert signed.status_code == 303 and signed.headers["location"] == prefix + "lab"
        assert "samesite=strict" in signed.headers["set-cookie"].lower()

        lab = browser.get(prefix + "lab")  # the client now sends the cookie, as a browser does
        assert lab.status_code == 200 and "JupyterLab" in lab.text
        assert tokens["alice"] not in lab.text
        kernel = browser.post(prefix + "api/kernels", json={"name": "python3"}, headers={"Origin": same})
        assert kernel.status_code == 201, kernel.text
        foreign = browser.post(prefix + "api/kernels", json={"name": "python3"}, headers={"Origin": FOREIGN})
        assert foreign.status_code == 403 and "cross-site" in foreign.json()["message"]
        # The cookie opens notebooks only: the REST API wants the bearer token.
        assert browser.get("/api/v1/notebook").status_code == 401

    ws = kernel_ws(broker, "cookie-nb", kernel.json()["id"])
    cookie = {"Cookie": f"submarine_broker_token={tokens['alice']}"}
    assert asyncio.run(execute(ws, "6*7", headers={**cookie, "Origin": same})) == "42"
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(execute(ws, "1+1", headers={**cookie, "Origin": FOREIGN}, timeout=10))
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as refused:  # bob's cookie: not his team's notebook
        asyncio.run(
            execute(ws, "1+1", headers={"Cookie": f"submarine_broker_token={tokens['bob']}"}, timeout=10)
        )
    assert refused.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(execute(ws, "1+1", headers={}, timeout=10))
    assert refused.value.response.status_code == 401
