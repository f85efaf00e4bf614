"""YARN end to end through the broker: a real broker subprocess reads a ``kind: yarn`` file from its
clusters.d, and its adapter drives the ResourceManager double over loopback HTTP; every Service body
it sends is validated against the Services API swagger file from ../shared."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.doubles.yarn_rm import YarnRMDouble
from tests.support import Broker, python_spec, serve_in_thread, wait_for

FAST = {"dispatch_interval": 0.3, "monitor_interval": 0.3, "health_interval": 0.5}


@pytest.fixture
def rm(yarn_schema_dir: Path) -> Iterator[tuple[YarnRMDouble, str]]:
    double = YarnRMDouble(users={"alice"}, vcores=32, memory_mb=65536)
    with serve_in_thread(double.app) as url:
        yield double, url
    assert double.refused == [], f"the adapter sent bodies YARN would refuse: {double.refused}"


def _broker(broker_factory: Any, url: str) -> Broker:
    cluster = {
        "kind": "yarn",
        "rm_url": url,
        "user": "alice",
        "queue": "default",
        "dns_domain": "yc.example.com",
        "nodemanager_port": int(url.rsplit(":", 1)[1]),
    }
    broker = broker_factory(clusters={"yarn-a": cluster}, loops=FAST)
    wait_for(
        lambda: broker.client.get("/cluster/yarn-a").json()["result"]["state"] == "Ready",
        timeout=20,
        what="the YARN cluster to be Ready",
    )
    return broker


def _spec(workers: int = 1) -> dict[str, Any]:
    return python_spec(
        "print('hello')", roles={"Worker": {"replicas": workers, "resources": "cpu=1,memory=512M"}}
    )


def _service(double: YarnRMDouble, uid: str) -> str:
    name = f"sb-{uid}"
    wait_for(lambda: name in double.names(), timeout=20, what=f"service {name}")
    return name


def test_submit_runs_and_succeeds_with_logs(broker_factory, rm) -> None:
    double, url = rm
    broker = _broker(broker_factory, url)
    exp = broker.submit(_spec(workers=2))["experimentId"]
    created = broker.wait_status(exp, "Created")
    name = _service(double, created["uid"])
    [body] = double.posted
    [worker] = body["components"]
    assert worker["number_of_containers"] == 2 and worker["restart_policy"] == "NEVER"
    assert worker["artifact"] == {"id": "python:3.11", "type": "DOCKER"}
    assert worker["configuration"]["env"]["JOB_ID"] == exp
    assert worker["configuration"]["env"]["SUBMARINE_REPLICA_INDEX"] == "${COMPONENT_ID}"
    double.start(name)
    broker.wait_status(exp, "Running")
    double.stabilize(name)
    double.write_log(name, "worker-0", ["hello from 0"])
    double.write_log(name, "worker-1", ["hello from 1"])
    logs = broker.logs(exp)
    assert logs == {f"{exp}-worker-0": ["hello from 0"], f"{exp}-worker-1": ["hello from 1"]}
    double.succeed(name, end=True)
    assert broker.wait_status(exp, "Succeeded")["cluster"] == "yarn-a"
    assert broker.logs(exp)[f"{exp}-worker-1"] == ["hello from 1"]  # after the end, from the NodeManager
    cluster = broker.client.get("/cluster/yarn-a").json()["result"]
    assert "alice" not in json.dumps(cluster.get("message") or "")


def test_a_failed_container_fails_the_experiment_naming_the_replica(broker_factory, rm) -> None:
    double, url = rm
    broker = _broker(broker_factory, url)
    exp = broker.submit(_spec(workers=2))["experimentId"]
    name = _service(double, broker.wait_status(exp, "Created")["uid"])
    double.start(name)
    broker.wait_status(exp, "Running")
    double.fail(name, "worker-1")  # the ApplicationMaster is still up: the container says who failed
    failed = broker.wait_status(exp, "Failed")
    assert "replica worker-1: container container_" in failed["reason"], failed
    assert "FAILED (exited with an error)" in failed["reason"], failed
    assert "Traceback" not in broker.log()


def test_delete_stops_then_destroys_the_service(broker_factory, rm) -> None:
    double, url = rm
    broker = _broker(broker_factory, url)
    exp = broker.submit(_spec())["experimentId"]
    name = _service(double, broker.wait_status(exp, "Created")["uid"])
    double.start(name)
    broker.wait_status(exp, "Running")
    assert broker.client.delete(f"/experiment/{exp}").status_code == 200
    wait_for(lambda: name not in double.names(), timeout=20, what=f"service {name} to be destroyed")
    calls = [(r["method"], r["body"]) for r in double.requests if r["path"] == f"/app/v1/services/{name}"]
    calls = [c for c in calls if c[0] != "GET"]
    assert calls[:2] == [("PUT", {"state": "STOPPED"}), ("DELETE", None)], calls
    assert double.service(name).app.final_status == "ENDED"


def test_a_killed_broker_adopts_its_service_and_posts_nothing_twice(broker_factory, rm) -> None:
    double, url = rm
    broker = _broker(broker_factory, url)
    exp = broker.submit(_spec())["experimentId"]
    name = _service(double, broker.wait_status(exp, "Created")["uid"])
    double.start(name)
    broker.wait_status(exp, "Running")
    broker.kill()
    broker.start()
    double.succeed(name, end=True)
    assert broker.wait_status(exp, "Succeeded")["attempt"] == 1
    assert len(double.requests_matching("POST", r"^/app/v1/services$")) == 1
    assert double.names() == [name]
