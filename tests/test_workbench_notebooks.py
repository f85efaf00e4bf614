"""The workbench's notebook pages in a real browser against a real broker (auth: token, the local
cluster, one real Jupyter server): create a notebook from the form, watch it become running without
reloading, open it through the proxy; a browser without the cookie is led through the sign-in page
to it; a one-time sign-in link works once and not after it expired; stop, start and delete from
the page; another team's notebook is a 404 page; an action without its CSRF token is refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from playwright.sync_api import expect
from sqlalchemy import update

from broker.cli.main import main
from broker.config.loader import load_broker_config
from broker.store.database import Database
from broker.store.models import SignInCode
from tests.browser_support import shot, sign_in
from tests.support import Broker
from tests.test_permissions import make_users

NAME = "wb-nb"
LAB = f"/notebook/vision/{NAME}/lab"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, dict[str, str]]]:
    broker = Broker(
        tmp_path_factory.mktemp("workbench-notebooks"),
        auth="token",
        notebooks={"check_interval": 0.3, "idle_timeout": 0},
    )
    tokens = make_users(broker)
    broker.start()
    yield broker, tokens
    broker.close()


def sign_in_link(broker: Broker, token: str) -> str:
    """What ``notebook open --sign-in-link`` prints: the link on its own line."""
    done = CliRunner().invoke(
        main,
        ["--url", broker.url, "--token", token, "notebook", "open", NAME, "--sign-in-link"],
        catch_exceptions=False,
    )
    assert done.exit_code == 0, done.output
    links = [line for line in done.output.splitlines() if line.startswith("http")]
    assert len(links) == 1, done.output
    assert token not in links[0]  # the API token is never in a URL
    return links[0]


def _lab_answers(page: Any) -> None:
    """The page is JupyterLab, served through the broker's proxy."""
    assert page.url.split("?")[0].endswith(LAB)
    expect(page).to_have_title("JupyterLab")


def test_create_open_stop_start_and_delete_a_notebook_from_its_pages(
    signed: tuple[Broker, dict[str, str]], chromium: Any, browser_page: Any
) -> None:
    broker, tokens = signed
    page = browser_page
    sign_in(page, broker.url, tokens["alice"], "/ui/notebooks")
    expect(page.get_by_role("heading", name="Notebooks")).to_be_visible()
    shot(page, "notebooks-empty")

    page.get_by_role("link", name="New notebook").click()
    page.get_by_label("Name", exact=True).fill(NAME)
    page.get_by_label("Namespace").fill("vision")
    page.get_by_label("Environment").select_option("notebook-env")
    page.get_by_label("Resources").fill("cpu=0.2,memory=256Mi")
    shot(page, "notebook-new")
    page.get_by_role("button", name="Create notebook").click()
    page.wait_for_url(f"{broker.url}/ui/notebooks/notebook_*")
    notebook_id = page.url.rsplit("/", 1)[1]
    # Live: the page turns to running without a reload.
    expect(page.locator("#notebook .status")).to_have_text("running", timeout=120_000)
    expect(page.get_by_role("link", name="Open notebook")).to_be_visible()
    shot(page, "notebook-running")

    page.goto(broker.url + "/ui/notebooks")
    row = page.get_by_role("row").filter(has_text=NAME)
    expect(row).to_contain_text("running")
    expect(row).to_contain_text("alice")
    expect(row).to_contain_text("vision")
    expect(row).to_contain_text("local")
    shot(page, "notebooks-list")

    with page.context.expect_page() as opened:
        row.get_by_role("link", name=f"Open {NAME}").click()
    lab = opened.value
    lab.wait_for_load_state()
    _lab_answers(lab)
    # JupyterLab's own scripts and styles came through the proxy too: its launcher is drawn.
    expect(lab.locator(".jp-LabShell")).to_be_visible(timeout=60_000)
    expect(lab.get_by_role("menuitem", name="File")).to_be_visible(timeout=60_000)
    shot(lab, "notebook-lab")
    lab.close()

    # A state change without the page's CSRF token: refused, nothing changes.
    refused = page.request.post(f"{broker.url}/ui/notebooks/{notebook_id}/stop", form={"csrf": "forged"})
    assert refused.status == 403 and "CSRF" in refused.text()
    refused = page.request.post(f"{broker.url}/ui/notebooks/{notebook_id}/delete")
    assert refused.status == 403
    page.goto(f"{broker.url}/ui/notebooks/{notebook_id}")
    expect(page.locator("#notebook .status")).to_have_text("running")

    # Another team's member: the page is a 404, the list does not show it.
    other = chromium.new_context()
    bob = other.new_page()
    sign_in(bob, broker.url, tokens["bob"], "/ui/notebooks")
    expect(bob.get_by_text(NAME)).to_have_count(0)
    answer = bob.goto(f"{broker.url}/ui/notebooks/{notebook_id}")
    assert answer is not None and answer.status == 404
    expect(bob.get_by_role("heading", name="Not found")).to_be_visible()
    shot(bob, "notebook-other-team-404")
    forbidden = bob.request.post(
        f"{broker.url}/ui/notebooks/{notebook_id}/stop",
        form={"csrf": bob.locator("body").get_attribute("data-csrf")},
    )
    assert forbidden.status == 404
    other.close()

    _open_without_cookie_signs_in_first(broker, tokens, chromium)
    _one_time_link_works_once(broker, tokens, chromium)

    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#notebook .status")).to_have_text("stopped", timeout=60_000)
    expect(page.get_by_role("link", name="Open notebook")).to_have_count(0)
    shot(page, "notebook-stopped")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("#notebook .status")).not_to_have_text("stopped")
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(f"{broker.url}/ui/notebooks")
    expect(page.get_by_text(NAME)).to_have_count(0)
    with httpx.Client(base_url=broker.url, headers={"Authorization": f"Bearer {tokens['alice']}"}) as alice:
        assert alice.get(f"/api/v1/notebook/{notebook_id}").status_code == 404


def _open_without_cookie_signs_in_first(broker: Broker, tokens: dict[str, str], chromium: Any) -> None:
    """The URL ``notebook open`` prints, in a browser that never signed in: the sign-in page, then the notebook."""
    context = chromium.new_context()
    page = context.new_page()
    page.goto(broker.url + LAB)
    assert page.url.startswith(f"{broker.url}/login?next=")
    shot(page, "notebook-sign-in-first")
    page.get_by_label("API token").fill(tokens["alice"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{broker.url}{LAB}*")
    _lab_answers(page)
    context.close()


def _one_time_link_works_once(broker: Broker, tokens: dict[str, str], chromium: Any) -> None:
    link = sign_in_link(broker, tokens["alice"])
    first = chromium.new_context()
    page = first.new_page()
    page.goto(link)
    page.wait_for_url(f"{broker.url}{LAB}*")
    _lab_answers(page)
    first.close()

    second = chromium.new_context()
    page = second.new_page()
    answer = page.goto(link)  # used up
    assert answer is not None and answer.status == 400
    expect(page.get_by_text("expired or was already used")).to_be_visible()
    expect(page.get_by_label("API token")).to_be_visible()  # and the way to sign in anyway
    shot(page, "notebook-link-used")

    late = sign_in_link(broker, tokens["alice"])
    _expire_every_code(broker)
    answer = page.goto(late)
    assert answer is not None and answer.status == 400
    expect(page.get_by_text("expired or was already used")).to_be_visible()
    page.goto(broker.url + LAB)  # nothing was signed in by either
    assert page.url.startswith(f"{broker.url}/login?next=")
    second.close()


def _expire_every_code(broker: Broker) -> None:
    """Move every code's expiry into the past (as if a minute had passed)."""
    db = Database(load_broker_config(broker.config_path).effective_database_url)
    past = datetime.now(UTC) - timedelta(seconds=1)
    db.call(lambda s: s.execute(update(SignInCode).values(expires_at=past)))
    db.dispose()


def test_a_sign_in_link_needs_a_token_and_a_path_of_the_broker(signed: tuple[Broker, dict[str, str]]) -> None:
    broker, tokens = signed
    with httpx.Client(base_url=broker.url) as client:
        assert client.post("/api/v1/login/once", json={"next": LAB}).status_code == 401
        bearer = {"Authorization": f"Bearer {tokens['alice']}"}
        bad = client.post("/api/v1/login/once", json={"next": "https://evil.example/"}, headers=bearer)
        assert bad.status_code == 400 and "next" in bad.json()["message"]
        made = client.post("/api/v1/login/once", json={"next": LAB}, headers=bearer).json()["result"]
        assert made["url"].startswith("/login/once?code=sbo_") and made["expiresInSeconds"] == 60
        assert tokens["alice"] not in made["url"]
        # A forged code, and a real one with another site as next: no cookie, no open redirect.
        assert client.get("/login/once", params={"code": "sbo_forged", "next": LAB}).status_code == 400
        code = made["url"].split("code=")[1].split("&")[0]
        answer = client.get("/login/once", params={"code": code, "next": "//evil.example/"})
        assert answer.status_code == 200 and "evil" not in answer.text and "url=/ui/" in answer.text
        assert "submarine_broker_token" in answer.headers["set-cookie"]
