"""The Policies page in a real browser against a real broker (auth: token): who may see it, the
editor's check as you type, saving a line, a lockout refused with its message, testing a decision,
revisions with their diffs and a revert, and a form without its CSRF token refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser_support import shot, sign_in
from tests.support import Broker
from tests.test_permissions import make_users

NEW_LINE = "p, carol, vision, experiment/*, read, allow"
BAD_LINE = "p, carol, vision, experiment/*, fly, allow"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, dict[str, str]]]:
    broker = Broker(tmp_path_factory.mktemp("workbench-policies"), auth="token")
    tokens = make_users(broker)
    broker.start()
    yield broker, tokens
    broker.close()


def policy(broker: Broker, token: str) -> dict[str, Any]:
    answer = httpx.get(
        broker.url + "/api/v1/policy", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()["result"]
    return result


def lines_table(page: Any) -> Any:
    return page.get_by_role("region", name="Current lines")


def decide(page: Any, user: str, namespace: str, obj: str, action: str) -> Any:
    test = page.locator("#policy-test")
    for label, value in (("User", user), ("Namespace", namespace), ("Object", obj), ("Action", action)):
        test.get_by_label(label).fill(value)
    test.get_by_role("button", name="Test").click()
    return page.locator("#decision")


def test_a_member_is_refused_the_page(signed: tuple[Broker, dict[str, str]], browser_page: Any) -> None:
    broker, tokens = signed
    page = browser_page
    sign_in(page, broker.url, tokens["alice"], "/ui/clusters")
    answer = page.goto(broker.url + "/ui/policies")
    assert answer is not None and answer.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("alice may not read policy")
    shot(page, "policies-member-403")


def test_edit_test_and_revert_a_policy_line(signed: tuple[Broker, dict[str, str]], browser_page: Any) -> None:
    broker, tokens = signed
    page = browser_page
    sign_in(page, broker.url, tokens["root"], "/ui/policies")
    before = policy(broker, tokens["root"])
    expect(lines_table(page)).to_contain_text("p, admin, *, *, *, allow")
    expect(page.get_by_text(f"revision {before['revision']},")).to_be_visible()
    editor = page.get_by_label("The whole policy, one line each", exact=False)
    status = page.locator("#policy-check-status")
    save = page.get_by_role("button", name="Save")
    expect(status).to_contain_text(f"{len(before['lines'])} lines, all valid")
    shot(page, "policies-admin")

    # A bad line: the check as you type names it, with its line number, and Save stays off.
    original = editor.input_value()
    editor.fill(original + "\n" + BAD_LINE)
    bad_number = len(original.split("\n")) + 1
    problem = page.locator("#policy-problems li")
    expect(problem).to_have_count(1)
    expect(problem).to_contain_text(f"Line {bad_number}")
    expect(problem).to_contain_text("unknown action")
    expect(status).to_contain_text("1 line to fix before saving")
    expect(save).to_be_disabled()
    expect(page.locator("#policy-gutter")).to_contain_text(f"✗ {bad_number}")
    shot(page, "policies-editor-invalid")

    # Fixed: valid, saved as the next revision, in force at once.
    editor.fill(original + "\n" + NEW_LINE)
    expect(status).to_contain_text("all valid")
    expect(problem).to_have_count(0)
    expect(save).to_be_enabled()
    page.get_by_label("Message", exact=False).fill("carol reads vision's experiments")
    save.click()
    page.wait_for_url("**/ui/policies?saved=*")
    added = before["revision"] + 1
    expect(page.get_by_role("status").first).to_contain_text(f"Saved: the policy is at revision {added}")
    expect(lines_table(page)).to_contain_text(NEW_LINE)
    assert NEW_LINE in policy(broker, tokens["root"])["lines"]
    revision = page.locator(f"#revision-{added}")
    expect(revision).to_contain_text("carol reads vision's experiments")
    expect(revision.locator("li.added")).to_contain_text(NEW_LINE)
    shot(page, "policies-saved")

    # Test a decision: allowed by the new line; another action is denied with no line allowing it.
    decision = decide(page, "carol", "vision", "experiment/exp-1", "read")
    expect(decision).to_contain_text("Allowed")
    expect(decision).to_contain_text(NEW_LINE)
    shot(page, "policies-test-allowed")
    decision = decide(page, "carol", "vision", "experiment/exp-1", "kill")
    expect(decision).to_contain_text("Denied")
    expect(decision).to_contain_text("No line allows it")
    shot(page, "policies-test-denied")

    # An edit that would lock everyone out is refused with the store's message; the draft is kept.
    editor = page.get_by_label("The whole policy, one line each", exact=False)
    editor.fill(NEW_LINE)
    expect(save).to_be_enabled()
    with page.expect_response(lambda r: r.url.endswith("/ui/policies/save")) as answer:
        save.click()
    assert answer.value.status == 409
    expect(page.get_by_role("alert")).to_contain_text("Not saved")
    expect(page.get_by_role("alert")).to_contain_text("edit the policy")
    expect(editor).to_have_value(NEW_LINE)
    shot(page, "policies-lockout-refused")
    assert policy(broker, tokens["root"])["revision"] == added

    # Revert to the revision before the edit: a new revision without the line.
    page.goto(broker.url + "/ui/policies")
    page.locator(f"#revision-{before['revision']}").get_by_role(
        "button", name=f"Revert to revision {before['revision']}"
    ).click()
    page.wait_for_url("**/ui/policies?saved=*")
    expect(page.get_by_role("status").first).to_contain_text(f"revision {added + 1}")
    expect(lines_table(page)).not_to_contain_text(NEW_LINE)
    reverted = page.locator(f"#revision-{added + 1}")
    expect(reverted).to_contain_text(f"revert to revision {before['revision']}")
    expect(reverted.locator("li.removed")).to_contain_text(NEW_LINE)
    after = policy(broker, tokens["root"])
    assert NEW_LINE not in after["lines"] and sorted(after["lines"]) == sorted(before["lines"])
    expect(decide(page, "carol", "vision", "experiment/exp-1", "read")).to_contain_text("Denied")
    shot(page, "policies-reverted")


def test_a_form_without_its_csrf_token_is_refused(
    signed: tuple[Broker, dict[str, str]], browser_page: Any
) -> None:
    broker, tokens = signed
    page = browser_page
    sign_in(page, broker.url, tokens["root"], "/ui/policies")
    before = policy(broker, tokens["root"])
    form = page.locator("form[action='/ui/policies/remove']").first
    form.locator("input[name=csrf]").evaluate("input => input.remove()")
    with page.expect_response(lambda r: r.url.endswith("/ui/policies/remove")) as answer:
        form.get_by_role("button").click()
    assert answer.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text("CSRF token missing or wrong")
    shot(page, "policies-no-csrf")
    assert policy(broker, tokens["root"]) == before


def test_the_check_refuses_a_request_without_the_token(signed: tuple[Broker, dict[str, str]]) -> None:
    broker, tokens = signed
    cookies = {"submarine_broker_token": tokens["root"]}
    headers = {"Origin": broker.url}
    answer = httpx.post(
        broker.url + "/ui/policies/validate", data={"lines": BAD_LINE}, cookies=cookies, headers=headers
    )
    assert answer.status_code == 403 and "CSRF" in answer.json()["message"]


def test_the_page_reads_on_a_narrow_screen(signed: tuple[Broker, dict[str, str]], chromium: Any) -> None:
    broker, tokens = signed
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        sign_in(page, broker.url, tokens["root"], "/ui/policies")
        expect(page.locator("#policy-check-status")).to_contain_text("all valid")
        shot(page, "policies-narrow-390")
        wide = page.evaluate(
            "[...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > 391)"
            ".slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + e.getBoundingClientRect().right)"
        )
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide on a 390px screen: {wide}"
    finally:
        context.close()


def test_without_the_script_the_server_checks_the_draft_on_save(
    signed: tuple[Broker, dict[str, str]],
) -> None:
    broker, tokens = signed
    with httpx.Client(
        base_url=broker.url,
        cookies={"submarine_broker_token": tokens["root"]},
        headers={"Origin": broker.url},
    ) as browser:
        opened = browser.get("/ui/policies")
        assert opened.status_code == 200
        csrf = re.search(r'data-csrf="([0-9a-f]+)"', opened.text)
        assert csrf is not None
        live = policy(broker, tokens["root"])
        draft = "\n".join([*live["lines"], "", BAD_LINE])
        form = {"csrf": csrf.group(1), "revision": str(live["revision"]), "lines": draft}
        refused = browser.post("/ui/policies/save", data=form)
        assert refused.status_code == 400
        assert "Not saved: 1 line to fix" in refused.text
        assert f"Line {len(live['lines']) + 2}" in refused.text and "unknown action" in refused.text
        stale_form = {
            **form,
            "revision": str(live["revision"] - 1),
            "lines": "\n".join([*live["lines"], NEW_LINE]),
        }
        stale = browser.post("/ui/policies/save", data=stale_form)
        assert stale.status_code == 409 and "the policy changed since this page was opened" in stale.text
        assert policy(broker, tokens["root"]) == live
