"""The experiments list in a real browser against a real broker (auth: token): an experiment
submitted through the REST API appears and turns Succeeded on the open page without a reload;
stop and delete from a row; a form posted without its CSRF token is refused and changes nothing;
filters kept in the URL; a narrow screen; another team's experiments never appear."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser_support import shot, sign_in
from tests.support import Broker, python_spec
from tests.test_permissions import make_users

LIST = "/ui/experiments"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, dict[str, str]]]:
    broker = Broker(tmp_path_factory.mktemp("explist"), auth="token")
    tokens = make_users(broker)
    broker.start()
    yield broker, tokens
    broker.close()


def _api(broker: Broker, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=broker.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _submit(client: httpx.Client, code: str, name: str) -> str:
    answer = client.post("/experiment", json=python_spec(code, name=name))
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]["experimentId"]


def _status(client: httpx.Client, experiment_id: str) -> str:
    return client.get(f"/experiment/{experiment_id}").json()["result"]["status"]


def test_live_statuses_row_actions_and_filters(
    signed: tuple[Broker, dict[str, str]], browser_page: Any
) -> None:
    broker, tokens = signed
    page = browser_page
    sign_in(page, broker.url, tokens["alice"], LIST)
    expect(page.get_by_role("heading", name="Experiments")).to_be_visible()
    expect(page.get_by_text("No experiments yet")).to_be_visible()
    shot(page, "experiments-list-empty")
    page.evaluate("window.stillTheSamePage = true")  # a reload would forget it

    with _api(broker, tokens["alice"]) as alice:
        done = _submit(alice, "print('hello')", "quick")
        broken = _submit(alice, "raise SystemExit(3)", "broken")
        held = _submit(alice, "import time; time.sleep(300)", "held")  # until stopped

        rows = page.locator("#experiment-rows")
        expect(rows.locator(f'tr[data-id="{done}"]')).to_contain_text("Succeeded", timeout=60_000)
        expect(rows.locator(f'tr[data-id="{broken}"]')).to_contain_text("Failed", timeout=60_000)
        expect(rows.locator(f'tr[data-id="{held}"]')).to_contain_text("Running", timeout=60_000)
        assert page.evaluate("window.stillTheSamePage") is True
        assert page.url == broker.url + LIST
        row = rows.locator(f'tr[data-id="{done}"]')
        expect(row.get_by_role("link", name="quick")).to_have_attribute("href", f"{LIST}/{done}")
        expect(row).to_contain_text("alice")
        expect(row).to_contain_text("vision")
        expect(row).to_contain_text("local")
        shot(page, "experiments-list")

        # The stop form posted without its CSRF field: a 403 page, and the experiment still runs.
        page.evaluate(
            """id => {
                const form = document.querySelector(`tr[data-id="${id}"] form`);
                form.querySelector('input[name=csrf]').remove();
                form.requestSubmit(form.querySelector('button[value=stop]'));
            }""",
            held,
        )
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("CSRF token missing or wrong")
        shot(page, "experiments-list-csrf-refused")
        assert _status(alice, held) == "Running"

        # Stop it from its row, for real.
        page.goto(broker.url + LIST)
        page.get_by_role("button", name=f"Stop held ({held})").click()
        page.wait_for_url(broker.url + LIST)
        expect(rows.locator(f'tr[data-id="{held}"]')).to_contain_text("Failed")
        expect(rows.locator(f'tr[data-id="{held}"]')).to_contain_text("killed")
        assert _status(alice, held) == "Failed"

        # Delete asks first; cancelling keeps it, accepting deletes it.
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.get_by_role("button", name=f"Delete broken ({broken})").click()
        expect(rows.locator(f'tr[data-id="{broken}"]')).to_be_visible()
        assert _status(alice, broken) == "Failed"
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name=f"Delete broken ({broken})").click()
        expect(rows.locator(f'tr[data-id="{broken}"]')).to_have_count(0)
        assert alice.get(f"/experiment/{broken}").status_code == 404

    # Filters are a GET form: the URL keeps them.
    page.get_by_label("Status").select_option("Succeeded")
    page.get_by_label("Name or id").fill("qui")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/ui/experiments?status=Succeeded*q=qui*")
    expect(rows.locator("tr")).to_have_count(1)
    expect(rows.locator(f'tr[data-id="{done}"]')).to_be_visible()
    expect(page.get_by_label("Status")).to_have_value("Succeeded")
    shot(page, "experiments-list-filtered")
    page.get_by_label("Status").select_option("Running")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No experiment matches these filters")).to_be_visible()
    page.get_by_role("link", name="Clear filters").first.click()
    page.wait_for_url(broker.url + LIST)

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(broker.url + LIST)
    expect(rows.locator(f'tr[data-id="{done}"]')).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing runs off the side
    shot(page, "experiments-list-narrow")


def test_another_team_never_sees_alices_experiments(
    signed: tuple[Broker, dict[str, str]], chromium: Any
) -> None:
    broker, tokens = signed
    with _api(broker, tokens["alice"]) as alice, _api(broker, tokens["bob"]) as bob:
        theirs = _submit(alice, "print('vision only')", "vision-only")
        mine = _submit(bob, "print('nlp')", "nlp-own")
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        sign_in(page, broker.url, tokens["bob"], LIST)
        expect(page.locator(f'tr[data-id="{mine}"]')).to_be_visible()
        expect(page.locator(f'tr[data-id="{theirs}"]')).to_have_count(0)
        assert "alice" not in page.locator("#experiment-rows").inner_text()
        page.goto(broker.url + LIST + "?namespace=vision")
        expect(page.get_by_text("No experiment matches these filters")).to_be_visible()
    finally:
        context.close()
