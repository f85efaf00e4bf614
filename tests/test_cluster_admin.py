"""Cordon, uncordon and drain against a real broker (API and CLI), who may do it, and how an
unreachable cluster is shown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support import Broker, python_spec, wait_for
from tests.test_cli_e2e import cli
from tests.test_permissions import make_users

TWO = {"a": {"kind": "local", "labels": {"site": "a"}}, "b": {"kind": "local", "labels": {"site": "b"}}}


def post(broker: Broker, name: str, verb: str) -> dict[str, Any]:
    answer = broker.client.post(f"/cluster/{name}/{verb}")
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def waiting_until(code_flag: Path) -> str:
    return (
        f"import os, time\nwhile not os.path.exists({str(code_flag)!r}):\n    time.sleep(0.05)\nprint('ok')"
    )


def submit(broker: Broker, code: str = "print('ok')", **placement: Any) -> str:
    return broker.submit(python_spec(code, placement=placement))["experimentId"]


def status_message(broker: Broker, exp_id: str, word: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = broker.experiment(exp_id)
        return found if word in (found.get("statusMessage") or "") else None

    return wait_for(check, timeout=15, what=f"{exp_id} waiting with a message naming '{word}'")


def test_cordon_and_drain_stop_new_work_and_let_running_work_finish(broker_factory, tmp_path: Path) -> None:
    broker = broker_factory(clusters=TWO)
    wait_for(
        lambda: all(c["state"] == "Ready" for c in broker.client.get("/cluster").json()["result"]),
        timeout=15,
        what="both clusters Ready",
    )
    flag = tmp_path / "finish"
    long_run = submit(broker, waiting_until(flag), cluster="a")
    broker.wait_status(long_run, "Running")

    cordoned = post(broker, "a", "cordon")
    assert cordoned["state"] == "Cordoned" and cordoned["cordoned"] is True
    assert "cordoned" in cordoned["message"]
    anywhere = submit(broker)
    assert broker.wait_status(anywhere, "Succeeded")["cluster"] == "b"
    pinned = submit(broker, cluster="a")
    waiting = status_message(broker, pinned, "Cordoned")
    assert waiting["status"] == "Accepted" and "cordoned by an admin" in waiting["statusMessage"]
    assert broker.experiment(long_run)["status"] == "Running"

    uncordoned = post(broker, "a", "uncordon")
    assert uncordoned["state"] == "Ready" and uncordoned["cordoned"] is False
    assert broker.wait_status(pinned, "Succeeded")["cluster"] == "a"

    drained = post(broker, "a", "drain")
    assert drained["state"] == "Draining" and drained["draining"] is True
    assert (drained["workloads"], drained["drained"]) == (1, False)  # the long run is still there
    pinned = submit(broker, cluster="a")
    assert "drained by an admin" in status_message(broker, pinned, "Draining")["statusMessage"]
    listed = cli(broker, "cluster", "list")
    assert "Draining (draining: 1 running)" in listed.stdout, listed.stdout
    # `drain --wait` reports when the cluster is empty: nothing is evicted, the run ends by itself.
    waiting = subprocess.Popen(
        [sys.executable, "-m", "broker", "--url", broker.url, "cluster", "drain", "a", "--wait"]
        + ["--interval", "0.2", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    try:
        assert waiting.stdout is not None
        first = waiting.stdout.readline()  # it has drained the cluster and read what is left
        assert first.strip() == "cluster a set to drain: Draining (draining: 1 running)", first
        assert broker.experiment(long_run)["status"] == "Running"
        flag.touch()
        out, err = waiting.communicate(timeout=90)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(timeout=10)
    assert waiting.returncode == 0, out + err
    assert out.splitlines()[-1] == "cluster a drained: empty, safe to remove"
    assert broker.wait_status(long_run, "Succeeded")["cluster"] == "a"
    empty = broker.client.get("/cluster/a").json()["result"]
    assert (empty["state"], empty["workloads"], empty["drained"]) == ("Draining", 0, True)
    post(broker, "a", "uncordon")
    assert broker.wait_status(pinned, "Succeeded")["cluster"] == "a"

    missing = broker.client.post("/cluster/nowhere/cordon")
    assert missing.status_code == 404 and missing.json()["message"] == "Not found cluster: nowhere"


def test_cli_cluster_commands(broker: Broker, tmp_path: Path) -> None:
    done = cli(broker, "cluster", "cordon", "local")
    assert done.returncode == 0, done.stderr
    assert "cluster local cordoned: Cordoned" in done.stdout
    listed = cli(broker, "cluster", "list")
    assert listed.returncode == 0 and "Cordoned" in listed.stdout
    got = cli(broker, "cluster", "get", "local")
    assert got.returncode == 0, got.stderr
    for text in ("Cordoned", "Reachable", "Failed checks", "Next check", "Source", "local.yaml", "Config"):
        assert text in got.stdout, text
    drained = cli(broker, "cluster", "drain", "local", "--json")
    assert drained.returncode == 0 and json.loads(drained.stdout)["state"] == "Draining"
    back = cli(broker, "cluster", "uncordon", "local")
    assert back.returncode == 0 and "cluster local uncordoned: Ready" in back.stdout
    missing = cli(broker, "cluster", "cordon", "nowhere")
    assert missing.returncode == 1 and "Not found cluster: nowhere" in missing.stderr

    (broker.clusters_dir / "broken.yaml").write_text("name: broken\nkind: local\nweight: many\n")
    refused = wait_for(
        lambda: (r := cli(broker, "cluster", "errors")).returncode == 0 and "broken.yaml:3" in r.stdout and r,
        timeout=5,
        what="the refused file in `cluster errors`",
    )
    assert "weight" in refused.stdout
    listed = cli(broker, "cluster", "list")
    assert "Refused cluster files" in listed.stdout and "broken.yaml:3: weight" in listed.stdout


def test_an_unreachable_cluster_shows_since_when_and_recovers_by_a_file_fix(
    broker: Broker, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the work directory should be")
    broker.add_cluster("flaky", kind="local", work_dir=str(blocker / "work"))

    def unreachable() -> dict[str, Any] | None:
        found = broker.client.get("/cluster/flaky")
        result = found.json()["result"] if found.status_code == 200 else None
        return result if result and result["state"] == "Unreachable" and result["failedChecks"] >= 2 else None

    flaky = wait_for(unreachable, timeout=15, what="flaky unreachable after two failed checks")
    assert flaky["reachable"] is False and flaky["unreachableSince"] and flaky["nextCheck"]
    assert "cannot create the work directory" in flaky["message"]
    listed = cli(broker, "cluster", "list")
    assert f"Unreachable since {flaky['unreachableSince'].replace('T', ' ')}" in listed.stdout
    pinned = submit(broker, cluster="flaky")
    assert "Unreachable" in status_message(broker, pinned, "flaky")["statusMessage"]

    broker.add_cluster("flaky", kind="local", work_dir=str(tmp_path / "work"))
    wait_for(
        lambda: broker.client.get("/cluster/flaky").json()["result"]["state"] == "Ready",
        timeout=5,
        what="flaky Ready after its file was fixed",
    )
    recovered = broker.client.get("/cluster/flaky").json()["result"]
    assert recovered["failedChecks"] == 0 and recovered["unreachableSince"] is None
    assert broker.wait_status(pinned, "Succeeded")["cluster"] == "flaky"


def test_only_admins_cordon_uncordon_and_drain(broker_factory) -> None:
    broker = broker_factory(start=False, auth="token")
    tokens = make_users(broker)
    broker.start()

    def as_user(user: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {tokens[user]}"}
        return httpx.Client(base_url=broker.url + "/api/v1", headers=headers, timeout=30)

    with as_user("alice") as alice, as_user("root") as root:
        for verb in ("cordon", "uncordon", "drain"):
            refused = alice.post(f"/cluster/local/{verb}")
            assert refused.status_code == 403, refused.text
            assert "alice may not admin cluster/local" in refused.json()["message"]
            assert alice.post(f"/cluster/nowhere/{verb}").status_code == 404
            assert root.post(f"/cluster/nowhere/{verb}").status_code == 404
        assert alice.get("/cluster/local").json()["result"]["state"] == "Ready"
        assert root.post("/cluster/local/cordon").json()["result"]["state"] == "Cordoned"
        assert alice.get("/cluster/local").json()["result"]["cordoned"] is True
        assert root.post("/cluster/local/uncordon").json()["result"]["state"] == "Ready"
    assert "cordoned by root" in broker.log()
