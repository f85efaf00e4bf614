"""The workbench's serving pages in a real browser against a real broker (auth: token, the local
cluster, one real MLflow model server): the served models with readiness and replicas, a serve's
page, its "try it" box answering predictions (and the model server's own 400), the model page
showing where the version is served; another team's serve is a 404 page, and a try without the
page's CSRF token is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser_support import shot, sign_in
from tests.support import Broker, kill_replicas
from tests.test_permissions import make_users
from tests.test_serving import register_sklearn, wait_ready

MODEL = "wb-served"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Broker, dict[str, str], dict[str, Any]]]:
    broker = Broker(tmp_path_factory.mktemp("workbench-serving"), auth="token")
    tokens = make_users(broker)
    broker.start()
    register_sklearn(broker.url, tokens["alice"], MODEL)
    with httpx.Client(
        base_url=broker.url, headers={"Authorization": f"Bearer {tokens['alice']}"}, timeout=60
    ) as alice:
        created = alice.post(
            "/api/v1/serve",
            json={"modelName": MODEL, "modelVersion": 1, "environment": {"name": "notebook-env"}},
        )
        assert created.status_code == 200, created.text
        serve = wait_ready(alice, created.json()["result"]["id"], broker)
    yield broker, tokens, serve
    broker.close()
    kill_replicas(broker.root)


def test_the_serving_pages_and_the_try_it_box(
    served: tuple[Broker, dict[str, str], dict[str, Any]], chromium: Any, browser_page: Any
) -> None:
    broker, tokens, serve = served
    page = browser_page
    sign_in(page, broker.url, tokens["alice"], "/ui/serving")
    row = page.get_by_role("row").filter(has_text=MODEL)
    for shown in ("Running", "ready", "1/1", "local", "vision", f"{MODEL} v1"):
        expect(row).to_contain_text(shown)
    shot(page, "serving-list")

    row.get_by_role("link", name=serve["name"]).click()
    expect(page.get_by_role("heading", name=f"Serve {serve['name']}")).to_be_visible()
    expect(page.get_by_text(f"{serve['url']}invocations")).to_be_visible()
    box = page.get_by_label("Request body")
    box.fill('{"inputs": [[1.0], [4.0]]}')
    page.get_by_role("button", name="Send to /invocations").click()
    answer = page.locator("#try-answer")
    expect(answer).to_contain_text("HTTP 200")
    assert page.url.endswith(f"/ui/serving/{serve['id']}")  # the script sent it: the page stayed
    predictions = json.loads(answer.locator("pre").inner_text())["predictions"]
    assert predictions == pytest.approx([3.0, 9.0])
    shot(page, "serve-try-it")
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "serve-try-it-narrow")
    page.set_viewport_size({"width": 1280, "height": 800})

    box.fill('{"nothing": 1}')
    page.get_by_role("button", name="Send to /invocations").click()
    expect(answer).to_contain_text("HTTP 400")  # the model server's own refusal, passed through
    expect(answer.locator("pre")).not_to_be_empty()
    shot(page, "serve-try-it-400")

    # The try endpoint checks the page's CSRF token.
    refused = page.request.post(
        f"{broker.url}/ui/serving/{serve['id']}/try", form={"body": '{"inputs": [[1.0]]}', "csrf": "x"}
    )
    assert refused.status == 403 and "CSRF" in refused.text()

    # Where the version is served, on the model's page.
    page.goto(f"{broker.url}/ui/models/{MODEL}")
    v1 = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="v1"))
    expect(v1.get_by_role("link", name=f"vision/{serve['name']}")).to_be_visible()
    expect(v1).to_contain_text("Running on local")
    shot(page, "model-served-on")

    # Another team: no such serve, neither its page nor its try box.
    other = chromium.new_context()
    bob = other.new_page()
    sign_in(bob, broker.url, tokens["bob"], "/ui/serving")
    expect(bob.get_by_text(MODEL)).to_have_count(0)
    answer_page = bob.goto(f"{broker.url}/ui/serving/{serve['id']}")
    assert answer_page is not None and answer_page.status == 404
    shot(bob, "serve-other-team-404")
    csrf = bob.locator("body").get_attribute("data-csrf") or ""
    tried = bob.request.post(
        f"{broker.url}/ui/serving/{serve['id']}/try", form={"body": '{"inputs": [[1.0]]}', "csrf": csrf}
    )
    assert tried.status == 404
    other.close()
