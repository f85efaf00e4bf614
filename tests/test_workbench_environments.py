"""The workbench's environment and template pages in a real browser against a real broker (auth:
token): lists, details, create and edit forms (the spec as YAML), a bad spec shown on the form with
its field named, delete; another team's template is a 404 page; a form without its CSRF token is
refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser_support import shot, sign_in
from tests.support import Broker
from tests.test_permissions import make_users

ENV = """name: wb-env
kernelSpec:
  name: python3
  channels: [defaults]
  condaDependencies: []
  pipDependencies: []
"""


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, dict[str, str]]]:
    broker = Broker(tmp_path_factory.mktemp("workbench-environments"), auth="token")
    tokens = make_users(broker)
    broker.start()
    yield broker, tokens
    broker.close()


def test_environments_list_create_edit_and_delete(
    signed: tuple[Broker, dict[str, str]], browser_page: Any
) -> None:
    broker, tokens = signed
    page = browser_page
    sign_in(page, broker.url, tokens["alice"], "/ui/environments")
    expect(page.get_by_role("link", name="notebook-env")).to_be_visible()
    shot(page, "environments-list")

    page.get_by_role("link", name="New environment").click()
    spec = page.get_by_label("EnvironmentSpec")
    expect(spec).to_contain_text("kernelSpec")  # an example to start from
    spec.fill("name: wb-env\nkernelSpec: [not, a, mapping]\n")
    page.get_by_role("button", name="Create environment").click()
    expect(page.get_by_role("alert")).to_contain_text("kernelSpec")
    shot(page, "environment-new-refused")
    page.get_by_label("EnvironmentSpec").fill(ENV)
    page.get_by_role("button", name="Create environment").click()
    page.wait_for_url(f"{broker.url}/ui/environments/wb-env")
    expect(page.get_by_role("heading", name="Environment wb-env")).to_be_visible()
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("Revision1")
    shot(page, "environment-page")

    page.get_by_role("link", name="Edit").click()
    page.get_by_label("EnvironmentSpec").fill(ENV.replace("pipDependencies: []", "pipDependencies: [numpy]"))
    shot(page, "environment-edit")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(f"{broker.url}/ui/environments/wb-env")
    expect(facts).to_contain_text("Revision2")
    expect(page.locator("pre")).to_contain_text("numpy")

    refused = page.request.post(f"{broker.url}/ui/environments/wb-env/delete", form={"csrf": "x"})
    assert refused.status == 403
    # Deleting an environment is an admin's (the default policy): a 403 page for alice, naming why.
    with page.expect_response(lambda r: r.url.endswith("/wb-env/delete")) as answer:
        page.get_by_role("button", name="Delete").click()
    assert answer.value.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("alice may not delete environment/wb-env")
    shot(page, "environment-delete-403")
    page.goto(f"{broker.url}/ui/environments")
    expect(page.get_by_role("link", name="wb-env")).to_be_visible()


def test_templates_list_create_edit_delete_and_another_teams_is_404(
    signed: tuple[Broker, dict[str, str]], browser_page: Any
) -> None:
    broker, tokens = signed
    with httpx.Client(base_url=broker.url, headers={"Authorization": f"Bearer {tokens['bob']}"}) as bob:
        made = bob.post(
            "/api/v1/template",
            json={
                "name": "nlp-only",
                "experimentSpec": {
                    "meta": {"name": "x", "framework": "TensorFlow", "cmd": "echo"},
                    "spec": {"Worker": {"replicas": 1, "resources": "cpu=1,memory=1Gi"}},
                },
            },
        )
        assert made.status_code == 200, made.text
    page = browser_page
    sign_in(page, broker.url, tokens["alice"], "/ui/templates")
    expect(page.get_by_role("link", name="nlp-only")).to_have_count(0)
    page.get_by_role("link", name="New template").click()
    spec = page.get_by_label("ExperimentTemplateSpec")
    text = spec.input_value().replace("my-template", "wb-template")
    spec.fill(text)
    shot(page, "template-new")
    page.get_by_role("button", name="Create template").click()
    page.wait_for_url(f"{broker.url}/ui/templates/wb-template")
    expect(page.get_by_role("cell", name="learning_rate")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("vision")
    shot(page, "template-page")

    page.get_by_role("link", name="Edit").click()
    spec = page.get_by_label("ExperimentTemplateSpec")
    spec.fill(spec.input_value().replace("What it runs", "Trains the vision model"))
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(f"{broker.url}/ui/templates/wb-template")
    expect(page.get_by_text("Trains the vision model")).to_be_visible()

    page.goto(f"{broker.url}/ui/templates")
    expect(page.get_by_role("row").filter(has_text="wb-template")).to_contain_text("learning_rate")
    shot(page, "templates-list")

    answer = page.goto(f"{broker.url}/ui/templates/nlp-only")
    assert answer is not None and answer.status == 404
    shot(page, "template-other-team-404")

    page.goto(f"{broker.url}/ui/templates/wb-template")
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url(f"{broker.url}/ui/templates")
    expect(page.get_by_role("link", name="wb-template")).to_have_count(0)
