"""Notebooks end to end: a real broker with token auth starting real Jupyter servers on its local
cluster, reached through the broker's proxy (HTTP and WebSocket)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest
from websockets.exceptions import InvalidStatus

from tests.jupyter_kernel import execute
from tests.support import Broker, wait_for
from tests.test_permissions import Clients, make_users

NAMESPACE = "vision"  # alice's team; bob is in nlp


def notebook_spec(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "meta": {"name": name, "namespace": NAMESPACE},
        "environment": {"name": "notebook-env"},
        "spec": {"envVars": {"GREETING": "hello"}, "resources": "cpu=0.2,memory=256Mi", **spec},
    }


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Clients, dict[str, str]]]:
    broker = Broker(
        tmp_path_factory.mktemp("notebooks"),
        auth="token",
        notebooks={"check_interval": 0.3, "idle_timeout": 0},
    )
    tokens = make_users(broker)
    broker.start()
    clients = Clients(
        {
            name: httpx.Client(base_url=broker.url, headers={"Authorization": f"Bearer {tok}"}, timeout=30)
            for name, tok in tokens.items()
        }
    )
    yield broker, clients, tokens
    clients.close()
    broker.close()


def status_of(client: httpx.Client, notebook_id: str) -> dict[str, Any]:
    answer = client.get(f"/api/v1/notebook/{notebook_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


#: Statuses a notebook stays in until someone starts it again.
ENDED = ("stopped", "failed")


def wait_status(client: httpx.Client, notebook_id: str, wanted: str, timeout: float = 90) -> dict[str, Any]:
    """Wait until the notebook is ``wanted``; fail at once if it ends otherwise."""
    seen: list[str] = []

    def reached() -> bool:
        current = status_of(client, notebook_id)
        if not seen or seen[-1] != current["status"]:
            seen.append(current["status"])
        if current["status"] in ENDED and current["status"] != wanted:
            raise AssertionError(
                f"notebook {notebook_id} ended {current['status']} ({current['failureCategory']}: "
                f"{current['reason']}), not {wanted} (seen {seen})"
            )
        return current["status"] == wanted

    wait_for(reached, timeout=timeout, what=f"notebook {notebook_id} {wanted} (seen {seen})")
    return status_of(client, notebook_id)


def server_process(broker: Broker, uid: str) -> psutil.Process:
    """The Jupyter server of attempt ``uid`` on the local cluster (from the supervisor's records)."""
    attempt = broker.work_dir() / uid
    supervisor = psutil.Process(json.loads((attempt / "notebook-0.pid").read_text())["pid"])
    children = supervisor.children()
    assert children, "the supervisor has no child"
    return children[0]


def create(client: httpx.Client, name: str, **spec: Any) -> dict[str, Any]:
    answer = client.post("/api/v1/notebook", json=notebook_spec(name, **spec))
    assert answer.status_code == 200, answer.text
    body = answer.json()["result"]
    assert body["notebookId"].startswith("notebook_")
    assert body["status"] == "waiting"
    assert body["url"] == f"/notebook/{NAMESPACE}/{name}/lab"
    return body


def kernel_ws(broker: Broker, name: str, kernel_id: str) -> str:
    return f"ws://127.0.0.1:{broker.port}/notebook/{NAMESPACE}/{name}/api/kernels/{kernel_id}/channels"


def test_notebook_runs_and_its_kernel_answers_through_the_proxy(secured) -> None:
    broker, c, tokens = secured
    alice = c["alice"]
    created = create(alice, "lab-one")
    nb = wait_status(alice, created["notebookId"], "running")
    assert nb["cluster"] == "local" and nb["owner"] == "alice"
    assert nb["spec"]["meta"]["labels"]["notebook-id"] == created["notebookId"]
    assert "access_token" not in str(nb) and "JUPYTER_TOKEN" not in str(nb)

    # The proxy adds the server's token: the caller only shows its own broker token.
    prefix = f"/notebook/{NAMESPACE}/lab-one/"
    status = alice.get(prefix + "api/status")
    assert status.status_code == 200 and "last_activity" in status.json()
    lab = alice.get(prefix + "lab")
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    assert (
        alice.get(f"/notebook/{NAMESPACE}/lab-one", follow_redirects=False)
        .headers["location"]
        .endswith("/lab-one/lab")
    )

    kernel = alice.post(prefix + "api/kernels", json={"name": "python3"})
    assert kernel.status_code == 201, kernel.text
    headers = {"Authorization": f"Bearer {tokens['alice']}"}
    ws = kernel_ws(broker, "lab-one", kernel.json()["id"])
    assert asyncio.run(execute(ws, "1+1", headers=headers)) == "2"
    # The SDK inside the notebook finds the broker through Submarine's variables.
    env = asyncio.run(
        execute(
            ws,
            "import os; (os.environ['SUBMARINE_SERVER_DNS_NAME'], os.environ['SUBMARINE_SERVER_PORT'], "
            "os.environ['GREETING'])",
            headers=headers,
        )
    )
    assert env == repr(("127.0.0.1", str(broker.port), "hello"))
    # A browser carries the token in a cookie (it cannot set headers on a WebSocket).
    cookie = {"Cookie": f"submarine_broker_token={tokens['alice']}"}
    assert asyncio.run(execute(ws, "6*7", headers=cookie)) == "42"

    # The listing shows it; the experiment API does not.
    listed = alice.get("/api/v1/notebook").json()["result"]
    assert [n["notebookId"] for n in listed] == [created["notebookId"]]
    experiments = alice.get("/api/v1/experiment").json()["result"]
    assert created["notebookId"] not in str(experiments)
    assert alice.get(f"/api/v1/experiment/{created['notebookId']}").status_code == 404

    # Another team's user sees nothing: 404 through the API and the proxy (HTTP and WebSocket).
    bob = c["bob"]
    for answer in (
        bob.get(f"/api/v1/notebook/{created['notebookId']}"),
        bob.get(prefix + "api/status"),
        bob.post(prefix + "api/kernels", json={}),
        bob.delete(f"/api/v1/notebook/{created['notebookId']}"),
    ):
        assert answer.status_code == 404, answer.text
        assert answer.json()["message"] == "Notebook not found."
    assert bob.get("/api/v1/notebook").json()["result"] == []
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(execute(ws, "1+1", headers={"Authorization": f"Bearer {tokens['bob']}"}, timeout=10))
    assert refused.value.response.status_code == 404
    # No token at all: 401 on HTTP and on the WebSocket's handshake.
    assert httpx.get(broker.url + prefix + "api/status").status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(execute(ws, "1+1", headers={}, timeout=10))
    assert refused.value.response.status_code == 401
    # The kernel still answers alice: the refusals touched nothing.
    assert asyncio.run(execute(ws, "2+3", headers=headers)) == "5"


def test_duplicate_and_bad_specs_are_refused_naming_the_field(secured) -> None:
    _, c, _ = secured
    alice = c["alice"]
    create(alice, "dup")
    again = alice.post("/api/v1/notebook", json=notebook_spec("dup"))
    assert again.status_code == 409
    assert "same name" in again.json()["message"]
    for body, field in (
        ({"meta": {"name": "Bad Name!", "namespace": NAMESPACE}}, "meta.name"),
        (
            {"meta": {"name": "ok", "namespace": NAMESPACE}, "spec": {"resources": "cpu=lots"}},
            "spec.resources",
        ),
        ({"meta": {"name": "ok", "namespace": NAMESPACE}, "spec": {"replicas": 2}}, "spec.replicas"),
        (
            {"meta": {"name": "ok", "namespace": NAMESPACE, "placement": {"cluster": "nope"}}},
            "meta.placement",
        ),
        ({"meta": {"namespace": NAMESPACE}}, "meta.name"),
    ):
        answer = alice.post("/api/v1/notebook", json=body)
        assert answer.status_code == 400, answer.text
        assert field in answer.json()["message"]
    assert alice.post("/api/v1/notebook", content=b"{not json").status_code == 400
    # bob may not create notebooks in alice's team.
    assert c["bob"].post("/api/v1/notebook", json=notebook_spec("intruder")).status_code == 403
    names = [n["name"] for n in alice.get("/api/v1/notebook").json()["result"]]
    assert names.count("dup") == 1 and "ok" not in names and "intruder" not in names


def test_delete_stops_the_server_and_frees_the_name(secured) -> None:
    broker, c, _ = secured
    alice = c["alice"]
    created = create(alice, "to-delete")
    nb = wait_status(alice, created["notebookId"], "running")
    server = server_process(broker, nb["uid"])
    assert server.is_running()
    deleted = alice.delete(f"/api/v1/notebook/{created['notebookId']}")
    assert deleted.status_code == 200 and deleted.json()["result"]["status"] == "terminating"
    server.wait(timeout=30)
    assert not server.is_running()
    gone = alice.get(f"/api/v1/notebook/{created['notebookId']}")
    assert gone.status_code == 404 and gone.json()["message"] == "Notebook not found."
    assert alice.get(f"/notebook/{NAMESPACE}/to-delete/api/status").status_code == 404
    # The name is free again.
    again = create(alice, "to-delete")
    assert again["notebookId"] != created["notebookId"]
    alice.delete(f"/api/v1/notebook/{again['notebookId']}")


def test_idle_notebook_is_stopped_and_starts_again_with_its_files(secured) -> None:
    broker, c, _ = secured
    alice = c["alice"]
    created = create(alice, "sleepy", idleTimeoutSeconds=4)
    nid = created["notebookId"]
    nb = wait_status(alice, nid, "running")
    first_uid = nb["uid"]
    server = server_process(broker, first_uid)
    prefix = f"/notebook/{NAMESPACE}/sleepy/"
    saved = alice.put(
        prefix + "api/contents/keep.txt", json={"type": "file", "format": "text", "content": "kept"}
    )
    assert saved.status_code in (200, 201), saved.text

    ended = wait_status(alice, nid, "stopped", timeout=60)
    assert ended["failureCategory"] == "killed"
    assert "without activity" in ended["reason"] and "idle timeout 4s" in ended["reason"]
    server.wait(timeout=30)
    events = [e["reason"] for e in alice.get(f"/api/v1/notebook/{nid}/events").json()["result"]]
    assert any("without activity" in e for e in events)
    assert alice.get(prefix + "api/status").status_code == 503

    started = alice.post(f"/api/v1/notebook/{nid}/start")
    assert started.status_code == 200, started.text
    again = wait_status(alice, nid, "running")
    assert again["notebookId"] == nid and again["uid"] != first_uid and again["attempt"] == 2
    back = alice.get(prefix + "api/contents/keep.txt")
    assert back.status_code == 200 and back.json()["content"] == "kept"
    # Stopping by hand works the same way, and a running notebook cannot be started twice.
    assert alice.post(f"/api/v1/notebook/{nid}/start").status_code == 409
    stopped = alice.post(f"/api/v1/notebook/{nid}/stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["result"]["status"] == "stopped"
    assert stopped.json()["result"]["failureCategory"] == "killed"
    assert "stopped by alice" in stopped.json()["result"]["reason"]
    assert [
        n["status"]
        for n in alice.get("/api/v1/notebook", params={"status": "stopped"}).json()["result"]
        if n["notebookId"] == nid
    ] == ["stopped"]
    files = broker.work_dir() / ".workdirs" / nid
    assert (files / "keep.txt").read_text() == "kept"
    # Deleting the notebook removes its files.
    assert alice.delete(f"/api/v1/notebook/{nid}").status_code == 200
    assert not files.exists()


def test_broker_restart_keeps_a_running_notebook_reachable(secured) -> None:
    broker, c, tokens = secured
    alice = c["alice"]
    created = create(alice, "survivor")
    nb = wait_status(alice, created["notebookId"], "running")
    server = server_process(broker, nb["uid"])
    prefix = f"/notebook/{NAMESPACE}/survivor/"
    kernel = alice.post(prefix + "api/kernels", json={"name": "python3"}).json()["id"]
    headers = {"Authorization": f"Bearer {tokens['alice']}"}
    ws = kernel_ws(broker, "survivor", kernel)
    assert asyncio.run(execute(ws, "x = 20; x + 1", headers=headers)) == "21"

    broker.kill()
    broker.start()
    assert server.is_running()
    after = wait_status(alice, created["notebookId"], "running")
    assert after["uid"] == nb["uid"]
    assert alice.get(prefix + "api/status").status_code == 200
    # The same kernel, with its state: nothing was restarted.
    assert asyncio.run(execute(ws, "x * 2", headers=headers)) == "40"
    assert server_process(broker, nb["uid"]).pid == server.pid
    alice.delete(f"/api/v1/notebook/{created['notebookId']}")
    server.wait(timeout=30)


def test_cli_creates_opens_stops_starts_and_deletes_a_notebook(secured) -> None:
    from click.testing import CliRunner

    from broker.cli.main import main

    broker, c, tokens = secured
    runner = CliRunner()
    base = ["--url", broker.url, "--token", tokens["alice"], "notebook"]

    def run(*args: str) -> str:
        done = runner.invoke(main, [*base, *args], catch_exceptions=False)
        assert done.exit_code == 0, done.output
        return done.output

    created = run(
        "create", "cli-nb", "-n", NAMESPACE, "--resources", "cpu=0.2,memory=256Mi", "--env", "A=1", "--wait"
    )
    url = f"{broker.url}/notebook/{NAMESPACE}/cli-nb/lab"
    assert "running" in created and url in created
    notebook_id = created.split()[1]
    assert notebook_id.startswith("notebook_")
    listed = run("list")
    assert "cli-nb" in listed and "running" in listed
    assert run("open", notebook_id).strip() == url
    # The Jupyter server's own output, through the broker (REST and CLI).
    served = c["alice"].get(f"/api/v1/notebook/{notebook_id}/logs", params={"tail": 5}).json()["result"]
    assert [e["podName"] for e in served["logContent"]] == [f"{notebook_id}-notebook-0"]
    assert 0 < len(served["logContent"][0]["podLog"]) <= 5
    jupyter = run("logs", notebook_id)
    assert "Jupyter" in jupyter and "/notebook/vision/cli-nb/" in jupyter
    assert run("logs", notebook_id, "--tail", "2").splitlines() == jupyter.splitlines()[-2:]

    assert run("stop", notebook_id).strip() == f"notebook {notebook_id} stopped"
    stopped_row = next(line for line in run("list").splitlines() if notebook_id in line)
    assert "stopped" in stopped_row and "stopped by alice" in stopped_row  # the reason is listed
    shown = run("get", notebook_id)
    for text in ("ID", "Status", "stopped", "Reason", "stopped by alice", "Failure", "killed", "URL", url):
        assert text in shown, text
    assert "Events" in shown
    again = run("start", notebook_id, "--wait")
    assert again.strip() == f"notebook {notebook_id} running: {url}"
    assert "started again by alice" in run("get", notebook_id)
    assert run("delete", notebook_id).strip() == f"notebook {notebook_id} deleted: terminating"
    refused = runner.invoke(main, [*base, "get", notebook_id])
    assert refused.exit_code == 1 and "Notebook not found." in refused.output
    bad = runner.invoke(main, [*base, "create", "cli-bad", "--env", "novalue"])
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output


def test_a_server_that_never_answers_is_stopped_after_the_start_timeout(broker_factory, tmp_path) -> None:
    # A "python" that ignores Jupyter's arguments and just sleeps: the process runs, nothing listens.
    silent = tmp_path / "silent-python"
    silent.write_text("#!/bin/sh\nexec sleep 300\n")
    silent.chmod(0o755)
    broker = broker_factory(notebooks={"python": str(silent), "check_interval": 0.3, "start_timeout": 3})
    created = broker.client.post("/notebook", json=notebook_spec("mute")).json()["result"]
    client = httpx.Client(base_url=broker.url, timeout=30)
    ended = wait_status(client, created["notebookId"], "failed", timeout=60)
    assert ended["failureCategory"] == "timeout"
    assert "did not answer" in ended["reason"] and "within 3s" in ended["reason"]
    nb = broker.work_dir() / ended["uid"]
    wait_for(lambda: (nb / "notebook-0.exit").exists(), timeout=30, what="the silent server stopped")
    client.close()


def test_placement_explain_takes_a_notebook_spec(secured) -> None:
    _, c, _ = secured
    alice = c["alice"]
    answer = alice.post("/api/v1/placement/explain", params={"kind": "notebook"}, json=notebook_spec("dry"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["chosen"] == "local"
    assert answer.json()["result"]["namespace"] == NAMESPACE
    bad = alice.post("/api/v1/placement/explain", params={"kind": "model"}, json=notebook_spec("dry"))
    assert bad.status_code == 400 and "kind" in bad.json()["message"]
    assert "dry" not in str(alice.get("/api/v1/notebook").json()["result"])  # nothing was created
