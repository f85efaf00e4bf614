"""An experiment through a real broker and its local cluster: states, logs, delete, listing."""

from __future__ import annotations

from tests.support import Broker, python_spec, wait_for

RANK_PRINTER = (
    "import os; print('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'], os.environ['JOB_ID'])"
)


def test_pytorch_experiment_runs_to_succeeded_with_logs_per_replica(broker: Broker) -> None:
    spec = python_spec(
        RANK_PRINTER,
        name="Ranks",
        framework="pytorch",
        roles={
            "Worker": {"replicas": 2, "resources": "cpu=0.1,memory=64M"},
            "Master": {"replicas": 1, "resources": "cpu=0.1,memory=64M"},
        },
        tags=["demo"],
    )
    created = broker.submit(spec)
    exp_id = created["experimentId"]
    assert created["status"] == "Accepted"
    assert exp_id.startswith("experiment-") and len(exp_id.split("-")[-1]) == 4
    assert created["spec"]["meta"]["name"] == "ranks"
    assert created["spec"]["spec"]["Master"]["resourceMap"] == {"cpu": "0.1", "memory": "64M"}

    done = broker.wait_status(exp_id, "Succeeded")
    assert done["cluster"] == "local"
    assert done["acceptedTime"] and done["createdTime"] and done["runningTime"] and done["finishedTime"]

    logs = broker.logs(exp_id)
    assert list(logs) == [f"{exp_id}-master-0", f"{exp_id}-worker-0", f"{exp_id}-worker-1"]
    assert logs[f"{exp_id}-master-0"] == [f"rank 0 of 3 {exp_id}"]
    assert logs[f"{exp_id}-worker-1"] == [f"rank 2 of 3 {exp_id}"]
    assert broker.logs(exp_id) == logs  # stable between calls

    moves = [(e["from"], e["to"]) for e in broker.events(exp_id) if e["to"]]
    assert moves == [
        (None, "Accepted"),
        ("Accepted", "Created"),
        ("Created", "Running"),
        ("Running", "Succeeded"),
    ]
    notes = [e["reason"] for e in broker.events(exp_id) if not e["to"]]
    assert any("image python:3.11 is recorded but not used" in n for n in notes)


def test_failing_replica_fails_the_experiment_naming_replica_and_exit_code(broker: Broker) -> None:
    spec = python_spec(
        "import os, sys, time; r = int(os.environ['RANK']); time.sleep(0.2); sys.exit(3 if r == 1 else 0)",
        framework="pytorch",
        roles={
            "Master": {"replicas": 1, "resources": "cpu=0.1"},
            "Worker": {"replicas": 1, "resources": "cpu=0.1"},
        },
    )
    exp_id = broker.submit(spec)["experimentId"]
    failed = broker.wait_status(exp_id, "Failed")
    assert "worker-0" in failed["reason"] and "3" in failed["reason"], failed["reason"]
    assert failed["failureCategory"] == "exit_code"


def test_missing_command_fails_with_that_reason(broker: Broker) -> None:
    spec = python_spec("pass")
    spec["meta"]["cmd"] = "no-such-command-xyz --flag"
    exp_id = broker.submit(spec)["experimentId"]
    failed = broker.wait_status(exp_id, "Failed")
    assert "no-such-command-xyz" in failed["reason"] and "not found" in failed["reason"], failed["reason"]


def test_delete_stops_every_replica_and_hides_the_experiment(broker: Broker) -> None:
    marker = broker.root / "still-running"
    code = (
        f"import time, pathlib\nwhile True:\n    pathlib.Path({str(marker)!r}).touch()\n    time.sleep(0.1)"
    )
    spec = python_spec(code, roles={"Worker": {"replicas": 2, "resources": "cpu=0.1"}})
    exp_id = broker.submit(spec)["experimentId"]
    broker.wait_status(exp_id, "Running")
    wait_for(marker.exists, what="the replicas to start writing")

    answer = broker.client.delete(f"/experiment/{exp_id}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["status"] == "Deleted"

    marker.unlink()
    import time

    time.sleep(0.5)  # a replica still alive would re-create the marker within 0.1 s
    assert not marker.exists(), "a replica kept running after DELETE"
    gone = broker.client.get(f"/experiment/{exp_id}")
    assert gone.status_code == 404 and exp_id in gone.json()["message"]
    assert broker.client.delete(f"/experiment/{exp_id}").status_code == 404
    listed = [e["experimentId"] for e in broker.client.get("/experiment").json()["result"]]
    assert exp_id not in listed
    deleted = broker.client.get("/experiment", params={"status": "deleted"}).json()["result"]
    assert [e["experimentId"] for e in deleted] == [exp_id]  # history kept for audit


def test_list_filters_by_status_and_pages(broker_factory) -> None:
    broker = broker_factory(clusters={"local": {"kind": "local", "capacity": {"cpu": 1}}})
    ids = [broker.submit(python_spec("pass", name=f"n{i}"))["experimentId"] for i in range(3)]
    for exp_id in ids:
        broker.wait_status(exp_id, "Succeeded")
    release = broker.root / "release"
    hold = f"import pathlib, time\nwhile not pathlib.Path({str(release)!r}).exists(): time.sleep(0.05)"
    whole_cpu = {"Worker": {"replicas": 1, "resources": "cpu=1"}}
    holder = broker.submit(python_spec(hold, name="holder", roles=whole_cpu))["experimentId"]
    broker.wait_status(holder, "Running")
    waiting = broker.submit(python_spec("pass", name="waiting", roles=whole_cpu))["experimentId"]

    everything = broker.client.get("/experiment").json()
    assert everything["attributes"]["total"] == 5
    succeeded = broker.client.get("/experiment", params={"status": "Succeeded"}).json()
    assert sorted(e["experimentId"] for e in succeeded["result"]) == sorted(ids)
    accepted = broker.client.get("/experiment", params={"status": "accepted"}).json()["result"]
    assert [e["experimentId"] for e in accepted] == [waiting]
    running = broker.client.get("/experiment", params={"status": "RUNNING"}).json()["result"]
    assert [e["experimentId"] for e in running] == [holder]

    first = broker.client.get("/experiment", params={"page": 1, "pageSize": 3}).json()
    second = broker.client.get("/experiment", params={"page": 2, "pageSize": 3}).json()
    assert len(first["result"]) == 3 and len(second["result"]) == 2
    seen = {e["experimentId"] for e in first["result"]} | {e["experimentId"] for e in second["result"]}
    assert seen == {*ids, holder, waiting}
    release.touch()
    broker.wait_status(waiting, "Succeeded")


def test_ping_and_envelope_shape(broker: Broker) -> None:
    answer = broker.client.get("/experiment/ping")
    assert list(answer.json()) == ["status", "code", "success", "message", "result", "attributes"]
    assert answer.json() == {
        "status": "OK",
        "code": 200,
        "success": True,
        "message": None,
        "result": "Pong",
        "attributes": {},
    }


def test_ids_stay_unique_across_restarts(broker: Broker) -> None:
    before = {broker.submit(python_spec("pass"))["experimentId"] for _ in range(3)}
    broker.stop()
    broker.start()
    after = {broker.submit(python_spec("pass"))["experimentId"] for _ in range(3)}
    assert not before & after
    assert len(before | after) == 6


def test_idempotency_key_returns_the_same_experiment(broker: Broker) -> None:
    spec = python_spec("pass")
    first = broker.client.post("/experiment", json=spec, headers={"Idempotency-Key": "abc-1"}).json()[
        "result"
    ]
    again = broker.client.post("/experiment", json=spec, headers={"Idempotency-Key": "abc-1"}).json()[
        "result"
    ]
    assert first["experimentId"] == again["experimentId"]
    assert broker.client.get("/experiment").json()["attributes"]["total"] == 1


def test_stop_keeps_the_experiment_and_ends_it_failed_killed(broker: Broker) -> None:
    marker = broker.root / "stop-marker"
    code = (
        f"import time, pathlib\nwhile True:\n    pathlib.Path({str(marker)!r}).touch()\n    time.sleep(0.1)"
    )
    exp_id = broker.submit(python_spec(code))["experimentId"]
    broker.wait_status(exp_id, "Running")
    wait_for(marker.exists, what="the replica to start")

    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "broker", "--url", broker.url, "experiment", "stop", exp_id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and "stopped: Failed" in run.stdout, run.stdout + run.stderr
    stopped = broker.experiment(exp_id)  # still there, unlike after DELETE
    assert stopped["status"] == "Failed" and stopped["failureCategory"] == "killed"
    assert stopped["reason"].startswith("stopped by admin")
    marker.unlink()
    import time

    time.sleep(0.5)
    assert not marker.exists(), "the replica kept running after stop"
    again = broker.client.post(f"/experiment/{exp_id}/stop")
    assert again.status_code == 409 and "already ended" in again.json()["message"]


def test_openapi_document_lists_every_route(broker: Broker) -> None:
    import httpx

    document = httpx.get(broker.url + "/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/experiment"])
    assert "delete" in paths["/api/v1/experiment/{id}"]
    assert paths["/api/v1/experiment/{id}/stop"]["post"]["summary"].startswith("Broker extension")
    assert "/api/v1/policy/test" in paths and "/api/v1/cluster/{name}/cordon" in paths
    assert {"post", "get"} <= set(paths["/api/v1/notebook"]) and "/api/v1/notebook/{id}/start" in paths
    assert not any(path.startswith("/notebook/") for path in paths)  # the proxy is Jupyter's API
    ids = [op["operationId"] for ops in paths.values() for op in ops.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
