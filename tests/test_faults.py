"""Faults: the broker killed mid-run, and work that has to wait for capacity."""

from __future__ import annotations

from tests.support import python_spec, wait_for


def test_broker_killed_mid_run_keeps_tracking_and_starts_replicas_once(broker_factory) -> None:
    broker = broker_factory()
    starts = broker.root / "starts.txt"
    release = broker.root / "release"
    code = (
        "import os, pathlib, time\n"
        f"with open({str(starts)!r}, 'a') as f: f.write(os.environ['SUBMARINE_REPLICA_INDEX'] + '\\n')\n"
        f"while not pathlib.Path({str(release)!r}).exists(): time.sleep(0.05)\n"
        "print('done', os.environ['SUBMARINE_REPLICA_INDEX'])\n"
    )
    exp_id = broker.submit(python_spec(code, roles={"Worker": {"replicas": 2, "resources": "cpu=0.1"}}))[
        "experimentId"
    ]
    broker.wait_status(exp_id, "Running")
    wait_for(lambda: starts.exists() and len(starts.read_text().split()) == 2, what="both replicas to start")

    broker.kill()  # SIGKILL: no shutdown hook runs
    release.touch()  # the replicas finish while no broker is watching
    broker.start()

    done = broker.wait_status(exp_id, "Succeeded")
    assert sorted(starts.read_text().split()) == ["0", "1"], "a replica was started twice"
    assert done["uid"] and done["attempt"] == 1
    logs = broker.logs(exp_id)
    assert logs[f"{exp_id}-worker-0"] == ["done 0"] and logs[f"{exp_id}-worker-1"] == ["done 1"]


def test_broker_restarted_reattaches_to_a_replica_that_is_still_running(broker_factory) -> None:
    broker = broker_factory()
    release = broker.root / "release"
    code = f"import pathlib, sys, time\nwhile not pathlib.Path({str(release)!r}).exists(): time.sleep(0.05)\nsys.exit(4)"
    exp_id = broker.submit(python_spec(code))["experimentId"]
    broker.wait_status(exp_id, "Running")
    broker.kill()
    broker.start()
    assert broker.experiment(exp_id)["status"] == "Running"
    release.touch()
    failed = broker.wait_status(exp_id, "Failed")
    assert "worker-0" in failed["reason"] and "4" in failed["reason"], failed["reason"]


def test_second_experiment_waits_for_capacity_then_runs(broker_factory) -> None:
    broker = broker_factory(clusters={"local": {"kind": "local", "capacity": {"cpu": 1}}})
    release = broker.root / "release"
    hold = f"import pathlib, time\nwhile not pathlib.Path({str(release)!r}).exists(): time.sleep(0.05)"
    roles = {"Worker": {"replicas": 1, "resources": "cpu=1,memory=64M"}}
    first = broker.submit(python_spec(hold, name="first", roles=roles))["experimentId"]
    broker.wait_status(first, "Running")
    second = broker.submit(python_spec("print('second ran')", name="second", roles=roles))["experimentId"]

    waiting = wait_for(
        lambda: (e := broker.experiment(second))["statusMessage"] and e, what="a waiting reason on the second"
    )
    assert waiting["status"] == "Accepted"
    assert "needs cpu=1" in waiting["statusMessage"] and "free now: cpu=0" in waiting["statusMessage"]
    placement = broker.client.get(f"/experiment/{second}/placement").json()["result"]
    assert placement["decision"]["chosen"] is None

    release.touch()
    broker.wait_status(first, "Succeeded")
    done = broker.wait_status(second, "Succeeded")
    assert done["runningTime"] >= broker.experiment(first)["finishedTime"]
    assert broker.logs(second)[f"{second}-worker-0"] == ["second ran"]


def test_gang_that_can_never_fit_is_refused_at_submit_with_the_reason(broker_factory) -> None:
    broker = broker_factory(clusters={"local": {"kind": "local", "capacity": {"cpu": 2}}})
    roles = {"Worker": {"replicas": 3, "resources": "cpu=1"}}
    answer = broker.client.post("/experiment", json=python_spec("pass", roles=roles))
    assert answer.status_code == 422, answer.text
    message = answer.json()["message"]
    assert "for all 3 replicas" in message and "in all" in message
    assert broker.client.get("/experiment").json()["attributes"]["total"] == 0
