"""The workbench's model pages in a real browser against a real broker (auth: token): the models
alice may read, a model's versions with stage and aliases, its audited history; promote a version
and set and remove an alias from the page; a promote a deny line forbids is a 403 page; another
team's model is a 404 page; an action without its CSRF token is refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser_support import shot, sign_in
from tests.support import Broker
from tests.test_permissions import make_users
from tests.test_serving import register_sklearn

MODEL = "wb-model"
OTHER = "nlp-model"
DENY = f"p, alice, vision, model/{MODEL}, promote, deny"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, dict[str, str]]]:
    broker = Broker(tmp_path_factory.mktemp("workbench-models"), auth="token")
    tokens = make_users(broker)
    broker.start()
    register_sklearn(broker.url, tokens["alice"], MODEL)
    register_sklearn(broker.url, tokens["alice"], MODEL)  # version 2
    register_sklearn(broker.url, tokens["bob"], OTHER)  # team nlp's
    yield broker, tokens
    broker.close()


def _version(broker: Broker, token: str, version: int) -> dict[str, Any]:
    with httpx.Client(base_url=broker.url, headers={"Authorization": f"Bearer {token}"}) as client:
        answer = client.get(f"/api/v1/model-version/{MODEL}/{version}")
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]


def test_promote_and_alias_from_the_model_page(
    registry: tuple[Broker, dict[str, str]], browser_page: Any
) -> None:
    broker, tokens = registry
    page = browser_page
    sign_in(page, broker.url, tokens["alice"], "/ui/models")
    row = page.get_by_role("row").filter(has_text=MODEL)
    expect(row).to_contain_text("vision")
    expect(row).to_contain_text("alice")
    expect(page.get_by_role("link", name=OTHER)).to_have_count(0)  # team nlp's: not listed
    shot(page, "models-list")

    row.get_by_role("link", name=MODEL).click()
    expect(page.get_by_role("heading", name=f"Model {MODEL}")).to_be_visible()
    versions = page.get_by_role("table").nth(0)
    expect(versions.get_by_role("row")).to_have_count(3)  # the header and v2, v1
    shot(page, "model-page")

    page.get_by_label("Stage of v1").select_option("Production")
    page.get_by_label("Why (v1)").fill("first release")
    page.get_by_role("button", name="Promote v1").click()
    v1 = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="v1"))
    expect(v1.locator(".stage")).to_have_text("Production")
    history = page.get_by_role("table").nth(1)
    expect(history.get_by_role("row").filter(has_text="first release")).to_contain_text("Production")
    expect(history.get_by_role("row").filter(has_text="first release")).to_contain_text("alice")
    assert _version(broker, tokens["alice"], 1)["currentStage"] == "Production"

    page.get_by_label("Alias").fill("champion")
    page.get_by_role("combobox", name="Version").select_option("2")
    page.get_by_role("button", name="Set alias").click()
    expect(page.get_by_text("@champion → v2")).to_be_visible()
    v2 = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="v2"))
    expect(v2).to_contain_text("@champion")
    assert _version(broker, tokens["alice"], 2)["aliases"] == ["champion"]
    shot(page, "model-promoted-and-aliased")
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: the tables scroll, the page does not
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "model-page-narrow")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_role("button", name="Remove alias champion").click()
    expect(page.get_by_text("@champion → v2")).to_have_count(0)
    assert _version(broker, tokens["alice"], 2)["aliases"] == []

    # Without the page's CSRF token: refused, nothing moves.
    refused = page.request.post(
        f"{broker.url}/ui/models/{MODEL}/versions/2/stage", form={"stage": "Production", "csrf": "x"}
    )
    assert refused.status == 403 and "CSRF" in refused.text()
    assert _version(broker, tokens["alice"], 2)["currentStage"] == "None"

    # A deny line on promote: the page answers 403 naming it, and nothing moves.
    with httpx.Client(base_url=broker.url, headers={"Authorization": f"Bearer {tokens['root']}"}) as root:
        assert root.post("/api/v1/policy", json={"lines": [DENY]}).status_code == 200
    page.reload()
    page.get_by_label("Stage of v2").select_option("Production")
    with page.expect_response(lambda r: r.url.endswith("/versions/2/stage")) as answer:
        page.get_by_role("button", name="Promote v2").click()
    assert answer.value.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text(DENY)
    shot(page, "model-promote-denied-403")
    assert _version(broker, tokens["alice"], 2)["currentStage"] == "None"

    # Another team's model: a 404 page, its history too.
    answer = page.goto(f"{broker.url}/ui/models/{OTHER}")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    shot(page, "model-other-team-404")
