"""The experiment page and the submit page in a real browser against a real broker (auth: token,
the ``local`` cluster): submit through the form (explain first, a bad field refused on the form)
and watch the status turn Succeeded without a reload; a run whose two replicas logged metrics
has one chart line per replica, other runs overlay, artifacts browse, download and register as a
model version; stop and delete from the page; another team's experiment is a 404 page; a
state-changing form without its CSRF token is refused."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser_support import shot, sign_in
from tests.run_as import replica_python
from tests.support import Broker, kill_replicas, python_spec
from tests.test_permissions import make_users
from tests.test_tracking_attempts import LOGGING_SCRIPT

pytestmark = pytest.mark.timeout(300)
SMALL = "cpu=0.1,memory=64M"
#: LOGGING_SCRIPT, and replica 0 also saves a file under ``model/`` of the attempt's run.
ARTIFACT_TAIL = """
if index == 0:
    client = mlflow.MlflowClient()
    client.log_text(run.info.run_id, "weights", "model/weights.txt")
    client.log_text(run.info.run_id, "notes", "model/résumé notes.txt")
    client.log_text(run.info.run_id, '{"id": "x", "model_type": "text"}', "model/description.json")
"""


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, dict[str, str]]]:
    root = tmp_path_factory.mktemp("workbench-experiment")
    broker = Broker(root, auth="token")
    tokens = make_users(broker)
    broker.start()
    yield broker, tokens
    broker.close()
    kill_replicas(root)


def _api(broker: Broker, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=broker.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _submit(broker: Broker, token: str, spec: dict[str, Any]) -> str:
    with _api(broker, token) as api:
        answer = api.post("/experiment", json=spec)
    assert answer.status_code == 200, answer.text
    experiment_id: str = answer.json()["result"]["experimentId"]
    return experiment_id


def _wait(broker: Broker, token: str, experiment_id: str, *statuses: str, timeout: float = 180) -> None:
    import time

    deadline = time.monotonic() + timeout
    with _api(broker, token) as api:
        while time.monotonic() < deadline:
            found = api.get(f"/experiment/{experiment_id}").json()["result"]
            if found["status"] in statuses:
                return
            if found["status"] in ("Failed", "Deleted", "Succeeded"):
                logs = api.get(f"/experiment/logs/{experiment_id}").json()["result"]["logContent"]
                raise AssertionError(f"{experiment_id} ended {found['status']}: {found['reason']}; {logs}")
            time.sleep(0.5)
    raise AssertionError(f"{experiment_id} did not reach {statuses}")


def test_submit_through_the_form_explains_refuses_a_bad_field_and_goes_live_to_succeeded(
    signed: tuple[Broker, dict[str, str]], browser_page: Any
) -> None:
    broker, tokens = signed
    page = browser_page
    sign_in(page, broker.url, tokens["alice"], "/ui/submit")
    shot(page, "submit-empty")
    page.get_by_label("Name", exact=True).fill("formrun")
    code = shlex.quote("print('hello from the form')")
    command = f"{shlex.quote(replica_python())} -c {code}"
    page.get_by_label("Command").fill(command)
    page.get_by_label("Worker replicas").fill("1")
    page.get_by_label("Worker resources").fill("cpu=lots")
    page.get_by_label("or an image").fill("python:3.11")
    # Roles the framework does not have are hidden (python: Master and Worker).
    expect(page.get_by_label("Ps replicas")).to_be_hidden()
    page.get_by_label("Framework").select_option("tensorflow")
    expect(page.get_by_label("Ps replicas")).to_be_visible()
    page.get_by_label("Framework").select_option("python")

    page.get_by_role("button", name="Submit").click()  # the service's 400, on the form, values kept
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("spec.Worker.resources")
    assert page.get_by_label("Name", exact=True).input_value() == "formrun"
    assert page.get_by_label("Command").input_value() == command
    expect(page.locator("#e-Worker\\.resources")).to_be_visible()
    shot(page, "submit-bad-field")

    page.get_by_label("Worker resources").fill(SMALL)
    page.get_by_role("button", name="Explain placement").click()
    explain = page.locator("#explain")
    expect(explain).to_contain_text("It would go to local")
    expect(explain.locator("tr[data-cluster='local']")).to_contain_text("fits")
    shot(page, "submit-explained")

    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(f"{broker.url}/ui/experiments/*", timeout=15_000)
    page.evaluate("window.notReloaded = true")
    status = page.locator("#status [data-status]")
    shot(page, "experiment-just-submitted")
    expect(status).to_have_text("Succeeded", timeout=120_000)
    assert page.evaluate("window.notReloaded") is True  # the live update, not a reload
    expect(page.locator("#status")).to_contain_text("Running")  # the history, live too
    page.reload()
    expect(page.locator("pre[data-logs]").first).to_contain_text("hello from the form")
    expect(page.locator("table.verdicts tr[data-cluster='local']")).to_contain_text("chosen")
    shot(page, "experiment-succeeded")

    # Clone: the submit form comes back filled with this spec.
    page.get_by_role("link", name="Clone into the submit form").click()
    assert page.get_by_label("Name", exact=True).input_value() == "formrun"
    assert page.get_by_label("Worker replicas").input_value() == "1"
    assert page.get_by_label("or an image").input_value() == "python:3.11"
    shot(page, "submit-cloned")


def test_metric_chart_has_one_line_per_replica_and_overlays_other_runs(
    signed: tuple[Broker, dict[str, str]], browser_page: Any
) -> None:
    broker, tokens = signed
    roles = {"Worker": {"replicas": 2, "resources": SMALL}}
    script = LOGGING_SCRIPT.replace("{tail}", ARTIFACT_TAIL)
    two = _submit(broker, tokens["alice"], python_spec(script, name="tworeplicas", roles=roles))
    one = _submit(
        broker,
        tokens["alice"],
        python_spec(
            LOGGING_SCRIPT.replace("{tail}", ""),
            name="onereplica",
            roles={"Worker": {"replicas": 1, "resources": SMALL}},
        ),
    )
    _wait(broker, tokens["alice"], two, "Succeeded")
    _wait(broker, tokens["alice"], one, "Succeeded")
    page = browser_page
    sign_in(page, broker.url, tokens["alice"], f"/ui/experiments/{two}")
    lines = page.locator("figure[data-metric='loss'] polyline[data-replica]")
    expect(lines).to_have_count(2)
    assert sorted(lines.evaluate_all("els => els.map(e => e.dataset.replica)")) == ["worker-0", "worker-1"]
    expect(page.get_by_role("table").filter(has_text="lr_1")).to_be_visible()
    shot(page, "experiment-metrics-by-step")

    page.get_by_role("link", name="time", exact=True).click()
    expect(page.locator("figure[data-metric='loss']")).to_contain_text("seconds since")
    expect(lines).to_have_count(2)
    shot(page, "experiment-metrics-by-time")

    page.get_by_label("Overlay other experiments' runs").fill(one)
    page.get_by_role("button", name="Compare").click()
    expect(lines).to_have_count(3)
    assert lines.evaluate_all("(els, id) => els.filter(e => e.dataset.experiment === id).length", one) == 1
    shot(page, "experiment-metrics-compared")

    # Artifacts: browse into model/, download a file, register the folder as a model version.
    page.goto(f"{broker.url}/ui/experiments/{two}#artifacts")
    page.get_by_role("link", name="model/").click()
    with page.expect_download() as download:
        page.get_by_role("link", name="weights.txt").click()
    assert download.value.suggested_filename == "weights.txt"
    assert download.value.path().read_text() == "weights"
    with page.expect_download() as download:  # a name a header cannot hold as it is
        page.get_by_role("link", name="résumé notes.txt").click()
    assert download.value.suggested_filename == "résumé notes.txt"
    assert download.value.path().read_text() == "notes"
    assert page.get_by_role("textbox", name="Folder").input_value() == "model"
    page.get_by_label("Registered model").fill("digits")
    page.get_by_label("create the model if missing").check()
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("status")).to_contain_text("Registered digits version 1")
    expect(page.get_by_role("link", name="weights.txt")).to_be_visible()  # back in the same folder
    shot(page, "experiment-artifacts-registered")


def test_stop_and_delete_from_the_page(signed: tuple[Broker, dict[str, str]], browser_page: Any) -> None:
    broker, tokens = signed
    ticking = "import time\nfor i in range(1200):\n    print('tick', i, flush=True)\n    time.sleep(0.5)"
    spec = python_spec(ticking, name="sleeper")
    experiment_id = _submit(broker, tokens["alice"], spec)
    _wait(broker, tokens["alice"], experiment_id, "Running")
    page = browser_page
    sign_in(page, broker.url, tokens["alice"], f"/ui/experiments/{experiment_id}")
    log = page.locator("pre[data-logs]").first
    expect(log).to_contain_text("tick 0")
    seen = int(log.get_attribute("data-count") or 0)
    page.evaluate("window.notReloaded = true")
    # Followed: new lines are appended without a reload.
    expect(log).to_contain_text(f"tick {seen + 3}", timeout=30_000)
    assert page.evaluate("window.notReloaded") is True
    shot(page, "experiment-running")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#status [data-status]")).to_have_text("Failed", timeout=60_000)
    expect(page.locator("#status")).to_contain_text("killed")
    shot(page, "experiment-stopped")
    page.get_by_role("button", name="Delete").click()
    expect(page.locator("#status [data-status]")).to_have_text("Deleted")
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)
    shot(page, "experiment-deleted")


def test_another_teams_experiment_is_404_and_a_form_without_csrf_is_refused(
    signed: tuple[Broker, dict[str, str]], browser_page: Any
) -> None:
    broker, tokens = signed
    spec = python_spec("print('mine')", name="alices")
    experiment_id = _submit(broker, tokens["alice"], spec)
    page = browser_page
    sign_in(page, broker.url, tokens["bob"], "/ui/submit")
    answer = page.goto(f"{broker.url}/ui/experiments/{experiment_id}")
    assert answer is not None and answer.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    assert "alices" not in page.content()
    shot(page, "experiment-other-team-404")
    for path in ("logs", "artifacts/model/weights.txt"):
        assert page.goto(f"{broker.url}/ui/experiments/{experiment_id}/{path}").status == 404  # type: ignore[union-attr]
    bobs = page.locator("body").get_attribute("data-csrf")
    refused = page.request.post(f"{broker.url}/ui/experiments/{experiment_id}/delete", form={"csrf": bobs})
    assert refused.status == 404  # a valid form of bob's: still nothing there for him

    page.context.clear_cookies()
    sign_in(page, broker.url, tokens["alice"], f"/ui/experiments/{experiment_id}")
    for form in ({}, {"csrf": "forged"}):
        refused = page.request.post(f"{broker.url}/ui/experiments/{experiment_id}/delete", form=form)
        assert refused.status == 403 and "CSRF token missing or wrong" in refused.text()
    refused = page.request.post(f"{broker.url}/ui/submit", form={"name": "x", "framework": "python"})
    assert refused.status == 403
    with _api(broker, tokens["alice"]) as api:
        assert api.get(f"/experiment/{experiment_id}").json()["result"]["status"] != "Deleted"
    # The page's own Delete form, its token taken out, as a browser would send it.
    page.locator("form[action$='/delete'] input[name='csrf']").evaluate("input => input.remove()")
    with page.expect_response(lambda r: r.url.endswith("/delete")) as answer:
        page.get_by_role("button", name="Delete").click()
    assert answer.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text("CSRF token missing or wrong")
    shot(page, "csrf-refused")
    with _api(broker, tokens["alice"]) as api:
        assert api.get(f"/experiment/{experiment_id}").json()["result"]["status"] != "Deleted"


def test_submit_from_a_template_with_its_parameters_and_a_narrow_screen(
    signed: tuple[Broker, dict[str, str]], chromium: Any
) -> None:
    broker, tokens = signed
    code = "print('lr={{learning_rate}}')"
    template = {
        "name": "lr-sweep",
        "description": "prints its learning rate",
        "parameters": [
            {"name": "learning_rate", "value": "0.1", "required": "false", "description": "the rate"},
            {"name": "experiment_name", "required": "true", "description": "the experiment's name"},
        ],
        "experimentSpec": python_spec(code, name="{{experiment_name}}"),
    }
    with _api(broker, tokens["alice"]) as api:
        answer = api.post("/template", json=template)
    assert answer.status_code == 200, answer.text
    # A phone-sized screen: the same pages, one column.
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, broker.url, tokens["alice"], "/ui/submit")
        page.get_by_role("link", name="template lr-sweep").click()
        expect(page.get_by_label("learning_rate")).to_have_value("0.1")
        page.get_by_role("button", name="Submit").click()  # experiment_name is required
        expect(page.get_by_role("alert")).to_contain_text("experiment_name")
        shot(page, "submit-template-missing-param-narrow")
        page.get_by_label("experiment_name").fill("sweep1")
        page.get_by_label("learning_rate").fill("0.5")
        page.get_by_role("button", name="Explain placement").click()
        expect(page.locator("#explain")).to_contain_text("It would go to local")
        shot(page, "submit-template-explained-narrow")
        page.get_by_role("button", name="Submit").click()
        page.wait_for_url(f"{broker.url}/ui/experiments/*")
        expect(page.locator("#status [data-status]")).to_have_text("Succeeded", timeout=120_000)
        page.reload()
        expect(page.locator("pre[data-logs]").first).to_contain_text("lr=0.5")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways on a narrow screen ({width}px)"
        shot(page, "experiment-from-template-narrow")
    finally:
        context.close()
    assert errors == []
