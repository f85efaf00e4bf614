"""A served model on Ray through a real broker (issue 19): a version registered with MLflow's
client, ``POST /api/v1/serve`` placed on the session's Ray head (``ray_head``), predicted through
the broker's proxy, its logs read from Serve's replica log, and ``DELETE`` removing the Serve
application; an application whose serve the broker no longer knows is swept.

The broker also has its local cluster, so the placement is what puts the serve on Ray. Each serve
asks for 0.25 CPU; every test deletes what it deployed and waits until Serve no longer lists it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clusters.base import Handle
from clusters.ray.adapter import RayAdapter
from clusters.ray.config import RayClusterConfig
from clusters.ray.serving import STATUS_PATH
from tests.ray_cluster import RayHead, free_port
from tests.support import Broker, kill_replicas, wait_for
from tests.test_permissions import Clients, make_users
from tests.test_serving import register_sklearn, wait_ready

NAMESPACE = "vision"  # alice's team
#: How long a wait that includes a Ray job's start or Serve's deploy may take on a loaded 2-core host.
RAY_WAIT = 240
FAST = {"dispatch_interval": 0.3, "monitor_interval": 0.3, "health_interval": 0.5}
BODY = {"dataframe_split": {"columns": ["x"], "data": [[1.0], [4.0]]}}


def serve_apps(head: RayHead) -> dict[str, Any]:
    """Serve's applications on the head, by name, from the dashboard's Serve REST API."""
    answer = httpx.get(f"{head.address}{STATUS_PATH}", timeout=30)
    answer.raise_for_status()
    return answer.json().get("applications") or {}


def wait_app_gone(head: RayHead, name: str) -> None:
    def gone() -> bool:
        try:
            return name not in serve_apps(head)
        except httpx.HTTPError:
            return False  # the dashboard is slow while Serve works; ask again

    wait_for(gone, timeout=RAY_WAIT, interval=1.0, what=f"Serve application {name} deleted")


@pytest.fixture
def ray_broker(ray_head: RayHead, tmp_path: Path) -> Iterator[tuple[Broker, Clients, dict[str, str]]]:
    """A token broker with its local cluster and the session's Ray head as cluster ``ray``."""
    broker = Broker(tmp_path / "broker", auth="token", loops=FAST, clusters={})
    broker.add_cluster("local", kind="local", **broker.shared("local"))
    broker.add_cluster(
        "ray", kind="ray", address=ray_head.address, serve_host="127.0.0.1", serve_port=free_port()
    )
    tokens = make_users(broker)
    broker.start()
    clients = Clients(
        {
            name: httpx.Client(base_url=broker.url, headers={"Authorization": f"Bearer {tok}"}, timeout=60)
            for name, tok in tokens.items()
        }
    )
    yield broker, clients, tokens
    clients.close()
    broker.close()
    kill_replicas(broker.root)


def create_serve(client: httpx.Client, model: str, name: str) -> dict[str, Any]:
    made = client.post(
        "/api/v1/serve",
        json={
            "modelName": model,
            "modelVersion": 1,
            "name": name,
            "resources": "cpu=0.25,memory=256Mi",
            "placement": {"cluster": "ray"},
            # The head's own Python (it has mlflow and sklearn), not a runtime_env built from
            # the version's requirements.txt (tests/test_serve_model_environment_e2e.py builds one).
            "environment": {"name": "notebook-env"},
        },
    )
    assert made.status_code == 200, made.text
    return dict(made.json()["result"])


def test_a_model_served_on_ray_through_the_broker_until_deleted(
    ray_broker: tuple[Broker, Clients, dict[str, str]], ray_head: RayHead
) -> None:
    broker, clients, tokens = ray_broker
    alice, bob = clients["alice"], clients["bob"]
    register_sklearn(broker.url, tokens["alice"], "rayiris")  # y = 2x + 1
    serve = create_serve(alice, "rayiris", "on-ray")
    url = serve["url"]
    assert url == f"/serve/{NAMESPACE}/on-ray/"
    app = None
    try:
        ready = wait_ready(alice, serve["id"], broker, timeout=RAY_WAIT)
        assert (ready["status"], ready["ready"], ready["cluster"], ready["url"]) == (
            "Running",
            True,
            "ray",
            url,
        )
        app = f"sb-{ready['uid']}"
        assert serve_apps(ray_head)[app]["status"] == "RUNNING"

        answers = [alice.post(f"{url}invocations", json=BODY) for _ in range(3)]
        assert [a.status_code for a in answers] == [200] * 3, answers[0].text
        assert answers[0].json()["predictions"] == pytest.approx([3.0, 9.0])
        malformed = alice.post(
            f"{url}invocations", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 400, malformed.text  # the model server's own 400, through Serve
        assert bob.post(f"{url}invocations", json=BODY).status_code == 404

        # The replica's Serve log under the plan's replica name: the model server's lines and
        # one per request Serve answered (Serve writes them out in batches: wait for them).
        def logged() -> list[str]:
            answer = alice.get(f"/api/v1/serve/{serve['id']}/logs")
            assert answer.status_code == 200, answer.text
            pods = answer.json()["result"]["logContent"]
            assert [p["podName"] for p in pods] == [f"{serve['id']}-server-0"]
            lines: list[str] = pods[0]["podLog"]
            return lines if any(f"POST /{app} 200 " in line for line in lines) else []

        lines = wait_for(logged, timeout=60, interval=1.0, what="the replica's requests in its log")
        assert any("model server: loaded" in line for line in lines), lines[-20:]
        assert tokens["alice"] not in "\n".join(lines)
        tail = alice.get(f"/api/v1/serve/{serve['id']}/logs", params={"tail": 2}).json()["result"]
        assert len(tail["logContent"][0]["podLog"]) == 2

        # The orphan sweep's listing shows the live application as the serve's attempt.
        adapter = RayAdapter(
            RayClusterConfig(name="ray", address=ray_head.address), data_dir=str(broker.root)
        )
        listed = {h.uid: h for h in asyncio.run(adapter.owned())}
        assert listed[ready["uid"]].state["serve_app"] == app
    finally:
        gone = alice.delete(f"/api/v1/serve/{serve['id']}")
        assert gone.status_code == 200, gone.text
    assert app is not None
    wait_app_gone(ray_head, app)
    assert alice.get(f"/api/v1/serve/{serve['id']}").status_code == 404
    after = alice.post(f"{url}invocations", json=BODY)
    assert after.status_code == 404, after.text
    assert ready["uid"] not in {h.uid for h in asyncio.run(adapter.owned())}
    assert "orphan sweep" not in broker.log()


def test_an_application_no_serve_owns_is_swept_when_the_broker_starts(
    ray_broker: tuple[Broker, Clients, dict[str, str]], ray_head: RayHead
) -> None:
    broker, clients, tokens = ray_broker
    alice = clients["alice"]
    register_sklearn(broker.url, tokens["alice"], "orphaned")
    serve = create_serve(alice, "orphaned", "orphan")
    app = None
    try:
        ready = wait_ready(alice, serve["id"], broker, timeout=RAY_WAIT)
        app = f"sb-{ready['uid']}"
        assert app in serve_apps(ray_head)
        # The broker stops (Serve applications outlive it) and the serve is marked deleted
        # meanwhile, as a delete whose cancel never reached the cluster leaves it: the
        # application is nobody's now.
        broker.stop()
        with sqlite3.connect(broker.data_dir / "broker.db") as db:
            marked = db.execute("UPDATE experiment SET status = 'Deleted' WHERE id = ?", (serve["id"],))
            assert marked.rowcount == 1
        broker.start()
        wait_app_gone(ray_head, app)
        assert f"orphan sweep: cancelling attempt {ready['uid']} on ray" in broker.log()
    finally:
        if app is None:  # never ready: the broker still has the serve
            alice.delete(f"/api/v1/serve/{serve['id']}")
        elif app in serve_apps(ray_head):  # not swept: delete it as the adapter does
            adapter = RayAdapter(
                RayClusterConfig(name="ray", address=ray_head.address), data_dir=str(broker.root)
            )
            handle = Handle(ready["uid"], {"submission_id": f"sb-{ready['uid']}", "serve_app": app})
            asyncio.run(adapter.cancel(handle))
            wait_app_gone(ray_head, app)
