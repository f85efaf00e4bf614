"""The Clusters page in a real browser against a real broker (auth: token): the federation at a
glance, an admin's cordon and uncordon (and placement honouring them), a member's view without the
actions (a forged post refused), config errors from clusters.d, the live table, a narrow screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser_support import shot, sign_in
from tests.support import Broker, python_spec
from tests.test_permissions import make_users


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, dict[str, str]]]:
    broker = Broker(tmp_path_factory.mktemp("workbench-clusters"), auth="token")
    broker.add_cluster(
        "gpu-east", kind="local", labels={"site": "east", "tier": "gpu"}, **broker.shared("gpu-east")
    )
    # A cluster that cannot answer: a file stands where its work directory should be.
    root = tmp_path_factory.mktemp("flaky")
    (root / "not-a-folder").write_text("a file where the work directory should be")
    broker.add_cluster(
        "flaky", kind="local", **{**broker.shared("flaky"), "work_dir": str(root / "not-a-folder" / "work")}
    )
    # A file that cannot load: its error is shown, never its values.
    (broker.clusters_dir / "broken.yaml").write_text("name: broken\nkind: nosuchkind\n")
    tokens = make_users(broker)
    broker.start()
    yield broker, tokens
    broker.close()


def api(broker: Broker, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=broker.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def row(page: Any, name: str) -> Any:
    return page.locator(f"#cluster-{name}")


def test_an_admin_cordons_and_uncordons_a_cluster_from_the_page(
    federation: tuple[Broker, dict[str, str]], browser_page: Any
) -> None:
    broker, tokens = federation
    page = browser_page
    sign_in(page, broker.url, tokens["root"], "/ui/clusters")
    expect(page.get_by_role("heading", name="Clusters", exact=True)).to_be_visible()
    # The table refreshes itself: both clusters turn Ready without a reload.
    expect(row(page, "local")).to_contain_text("Ready", timeout=30_000)
    expect(row(page, "gpu-east")).to_contain_text("Ready", timeout=30_000)
    expect(row(page, "gpu-east")).to_contain_text("site=east")
    expect(row(page, "local").get_by_role("img", name="CPU:")).to_be_visible()
    flaky = row(page, "flaky")
    expect(flaky).to_contain_text("Unreachable", timeout=30_000)
    expect(flaky).to_contain_text("unreachable since")
    expect(flaky).to_contain_text("cannot create the work directory")
    expect(flaky.locator("td[data-label=CPU]")).to_have_text("unknown")  # never answered: not "none"
    errors = page.get_by_role("region", name="Configuration errors in clusters.d")
    expect(errors).to_contain_text("broken.yaml")
    expect(errors).to_contain_text("kind")
    shot(page, "clusters-admin")

    page.get_by_role("button", name="Cordon local", exact=True).click()
    page.wait_for_url("**/ui/clusters?done=cordon:local")
    expect(page.get_by_role("status")).to_contain_text("Cluster local: cordon done")
    expect(row(page, "local")).to_contain_text("Cordoned")
    expect(row(page, "local").get_by_role("button", name="Uncordon local", exact=True)).to_be_visible()
    expect(row(page, "local").get_by_role("button", name="Cordon local", exact=True)).to_have_count(0)
    shot(page, "clusters-cordoned")

    with api(broker, tokens["root"]) as root:
        shown = root.get("/cluster/local").json()["result"]
        assert (shown["state"], shown["cordoned"]) == ("Cordoned", True)
        spec = python_spec("print('ok')", namespace="vision", placement={"cluster": "local"})
        decision = root.post("/placement/explain", json=spec)
        assert decision.status_code == 200, decision.text
        placed = decision.json()["result"]
        assert placed["chosen"] is None, placed
        (local,) = [v for v in placed["verdicts"] if v["cluster"] == "local"]
        assert not local["eligible"] and "cordon" in " ".join(local["reasons"]).lower(), local

    page.get_by_role("button", name="Uncordon local", exact=True).click()
    page.wait_for_url("**/ui/clusters?done=uncordon:local")
    expect(row(page, "local")).to_contain_text("Ready")
    with api(broker, tokens["root"]) as root:
        assert root.get("/cluster/local").json()["result"]["cordoned"] is False
        assert root.post("/placement/explain", json=spec).json()["result"]["chosen"] == "local"


def test_the_table_follows_changes_made_elsewhere(
    federation: tuple[Broker, dict[str, str]], browser_page: Any, tmp_path: Path
) -> None:
    broker, tokens = federation
    page = browser_page
    sign_in(page, broker.url, tokens["root"], "/ui/clusters")
    east = row(page, "gpu-east")
    expect(east).to_contain_text("Ready", timeout=30_000)
    flag = (broker.scratch or tmp_path) / "finish-drained-run"  # reachable by the run-as users
    code = f"import os, time\nwhile not os.path.exists({str(flag)!r}):\n    time.sleep(0.05)\n"
    roles = {"Worker": {"replicas": 1, "resources": "cpu=1,memory=4G"}}
    spec = python_spec(code, namespace="vision", placement={"cluster": "gpu-east"}, roles=roles)
    with api(broker, tokens["alice"]) as alice, api(broker, tokens["root"]) as root:
        submitted = alice.post("/experiment", json=spec)
        assert submitted.status_code == 200, submitted.text
        run = submitted.json()["result"]["experimentId"]
        try:
            # Without a reload: the run's work and the capacity it holds, then a drain made elsewhere.
            expect(east).to_contain_text("1 placed by this broker", timeout=30_000)
            expect(east).to_contain_text("1 free of 2", timeout=15_000)
            expect(east.get_by_role("img", name="CPU: 1 free of 2")).to_be_visible()
            assert root.post("/cluster/gpu-east/drain").status_code == 200
            expect(east).to_contain_text("Draining", timeout=15_000)
            expect(east).not_to_contain_text("safe to remove")
            shot(page, "clusters-draining-with-work")
            flag.touch()
            expect(east).to_contain_text("drained: safe to remove", timeout=30_000)
            expect(east).to_contain_text("0 placed by this broker")
            assert alice.get(f"/experiment/{run}").json()["result"]["status"] == "Succeeded"
            shot(page, "clusters-drained")
        finally:
            flag.touch()
            assert root.post("/cluster/gpu-east/uncordon").status_code == 200
    expect(east).to_contain_text("Ready", timeout=15_000)


def test_a_member_sees_no_actions_and_a_forged_post_is_refused(
    federation: tuple[Broker, dict[str, str]], browser_page: Any
) -> None:
    broker, tokens = federation
    page = browser_page
    sign_in(page, broker.url, tokens["alice"], "/ui/clusters")
    expect(row(page, "local")).to_contain_text("Ready", timeout=30_000)
    expect(page.get_by_role("button", name="Cordon local", exact=True)).to_have_count(0)
    expect(page.get_by_role("columnheader", name="Actions")).to_have_count(0)
    # alice may read every cluster but administer none: the refused file is not hers to hear of.
    expect(page.get_by_role("region", name="Configuration errors in clusters.d")).to_have_count(0)
    shot(page, "clusters-member")

    # A form alice forges in her own page, with her own valid CSRF token: the service refuses it.
    with page.expect_response(lambda r: r.url.endswith("/ui/clusters/local/cordon")) as answer:
        page.evaluate(
            """() => {
              const form = document.createElement("form");
              form.method = "post"; form.action = "/ui/clusters/local/cordon";
              const csrf = document.createElement("input");
              csrf.type = "hidden"; csrf.name = "csrf"; csrf.value = document.body.dataset.csrf;
              form.append(csrf); document.body.append(form); form.submit();
            }"""
        )
    assert answer.value.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("alice may not admin cluster/local")
    shot(page, "clusters-member-forged-post")
    with api(broker, tokens["root"]) as root:
        assert root.get("/cluster/local").json()["result"]["cordoned"] is False


def test_a_form_without_its_csrf_token_is_refused(
    federation: tuple[Broker, dict[str, str]], browser_page: Any
) -> None:
    broker, tokens = federation
    page = browser_page
    sign_in(page, broker.url, tokens["root"], "/ui/clusters")
    form = page.locator("form[action='/ui/clusters/local/cordon']")
    form.locator("input[name=csrf]").evaluate("input => input.remove()")
    with page.expect_response(lambda r: r.url.endswith("/ui/clusters/local/cordon")) as answer:
        form.get_by_role("button").click()
    assert answer.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text("CSRF token missing or wrong")
    shot(page, "clusters-no-csrf")
    with api(broker, tokens["root"]) as root:
        assert root.get("/cluster/local").json()["result"]["cordoned"] is False


def test_the_page_reads_on_a_narrow_screen(federation: tuple[Broker, dict[str, str]], chromium: Any) -> None:
    broker, tokens = federation
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        sign_in(page, broker.url, tokens["root"], "/ui/clusters")
        expect(row(page, "gpu-east")).to_contain_text("Ready", timeout=30_000)
        # One card per cluster: nothing wider than the screen.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide on a 390px screen"
        expect(row(page, "local").get_by_role("button", name="Cordon local", exact=True)).to_be_visible()
        shot(page, "clusters-narrow-390")
    finally:
        context.close()
