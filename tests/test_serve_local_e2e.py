"""A served model on the local kind end to end: a version registered with MLflow's client, served
by a real broker (auth: token) with 2 model-server replicas, predicted through the broker's proxy;
one replica killed, every request still answered."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import psutil
import pytest

from clusters.local.processes import read_json
from tests.support import Broker, wait_for
from tests.test_permissions import Clients
from tests.test_serving import OWN_PYTHON, register_sklearn, secured, serve_of  # noqa: F401 - fixture

MODEL = "twin"


def model_server_of(attempt: Path, replica: str) -> psutil.Process:
    """The model-server process of ``replica`` (its supervisor's child)."""
    record = read_json(attempt / f"{replica}.pid")
    assert record is not None, f"no pid file for {replica} in {attempt}"
    children = psutil.Process(int(record["pid"])).children()
    assert len(children) == 1, children
    assert "runtimes.model_server" in " ".join(children[0].cmdline())
    return children[0]


def test_two_replicas_through_the_proxy_and_one_killed(
    secured: tuple[Broker, Clients, dict[str, str]],  # noqa: F811
) -> None:
    broker, clients, tokens = secured
    alice, bob = clients["alice"], clients["bob"]
    register_sklearn(broker.url, tokens["alice"], MODEL)  # y = 2x + 1
    created = alice.post(
        "/api/v1/serve",
        json={
            "modelName": MODEL,
            "modelVersion": 1,
            "replicas": 2,
            "resources": "cpu=0.1,memory=256Mi",
            "environment": OWN_PYTHON,
        },
    )
    assert created.status_code == 200, created.text
    serve = created.json()["result"]
    url = serve["url"]
    assert url == f"/serve/vision/{MODEL}-1/"

    def both_ready() -> bool:
        found = serve_of(alice, serve["id"])
        assert found["status"] not in ("Failed", "Deleted"), f"{found['reason']}\n{broker.log()[-3000:]}"
        return found["readyReplicas"] == 2

    wait_for(both_ready, timeout=180, what="both replicas ready")
    body = {"inputs": [[1.0], [2.0]]}

    def predict() -> httpx.Response:
        return alice.post(f"{url}invocations", json=body)

    for _ in range(6):
        answer = predict()
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == pytest.approx([3.0, 5.0])
    bad = alice.post(f"{url}invocations", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "BAD_REQUEST", bad.text
    assert bob.post(f"{url}invocations", json=body).status_code == 404

    attempt = broker.work_dir() / serve_of(alice, serve["id"])["uid"]
    victim = model_server_of(attempt, "server-0")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)

    answered: list[int] = []

    def one_left() -> bool:
        answered.append(predict().status_code)
        found = serve_of(alice, serve["id"])
        assert found["status"] == "Running", f"the serve ended with one replica left: {found['reason']}"
        return found["readyReplicas"] == 1

    wait_for(one_left, timeout=60, what="the broker to see one replica left")
    answered.extend(predict().status_code for _ in range(6))
    assert answered and set(answered) == {200}, answered
    after = serve_of(alice, serve["id"])
    assert after["status"] == "Running" and after["ready"] is True

    survivor = model_server_of(attempt, "server-1")
    gone = alice.delete(f"/api/v1/serve/{serve['id']}")
    assert gone.status_code == 200, gone.text
    wait_for(lambda: not survivor.is_running(), timeout=30, what="the surviving replica to stop")
