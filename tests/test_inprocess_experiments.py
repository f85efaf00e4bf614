"""Experiments through dispatch, monitor, failover, stop, delete and a broker restart, in-process.

The broker runs in the test's process (tests/inprocess.py) on two scripted clusters
(tests/scripted_cluster.py): each loop pass is a call, each cluster answer a line of script, and
time passes by ageing what happened. What is asserted is what the REST API shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from broker.scheduler.dispatch import CLAIM_HOLD
from broker.workloads.rows import events_of
from broker.workloads.views import fmt_time
from runtimes.plan import LaunchPlan
from tests.inprocess import InProcessBroker, scripted_clusters

CLUSTERS = scripted_clusters("east", "west")
HOUR = 3600.0


def spec(name: str = "mnist", **meta: Any) -> dict[str, Any]:
    return {
        "meta": {
            "name": name,
            "framework": "pytorch",
            "cmd": "python train.py",
            "placement": {"preferredClusters": ["east"]},
            **meta,
        },
        "spec": {
            "Master": {"replicas": 1, "resources": "cpu=1,memory=1Gi"},
            "Worker": {"replicas": 2, "resources": "cpu=1,memory=1Gi"},
        },
    }


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[InProcessBroker]:
    made = InProcessBroker(tmp_path, **CLUSTERS)
    yield made
    made.close()


def submit(broker: InProcessBroker, **meta: Any) -> str:
    return broker.result("POST", "/experiment", json=spec(**meta))["experimentId"]


def shown(broker: InProcessBroker, exp: str) -> dict[str, Any]:
    return broker.result("GET", f"/experiment/{exp}")


def events(broker: InProcessBroker, exp: str) -> list[dict[str, Any]]:
    return broker.result("GET", f"/experiment/{exp}/events")


def running_on_east(broker: InProcessBroker, **meta: Any) -> str:
    exp = submit(broker, **meta)
    broker.dispatch()
    broker.cluster("east").run(exp)
    broker.monitor()
    assert shown(broker, exp)["status"] == "Running"
    return exp


def second(stamp: str) -> str | None:
    """An event's time as the experiment shows its times (Submarine's, to the second)."""
    return fmt_time(datetime.fromisoformat(stamp.replace("Z", "+00:00")))


def test_dispatch_and_monitor_take_an_experiment_from_accepted_to_succeeded(broker) -> None:
    exp = submit(broker)
    assert shown(broker, exp)["status"] == "Accepted"  # nothing runs until a dispatch pass

    assert broker.dispatch() == 1
    created = shown(broker, exp)
    assert (created["status"], created["cluster"]) == ("Created", "east")
    attempt = broker.cluster("east").of(exp)
    assert [r.name for r in attempt.plan.replicas] == ["master-0", "worker-0", "worker-1"]
    assert attempt.uid == created["uid"]

    broker.cluster("east").pending(exp, "waiting for a node")
    broker.monitor()
    held = shown(broker, exp)
    assert (held["status"], held["statusMessage"]) == ("Created", "pending on east: waiting for a node")

    broker.cluster("east").run(exp)
    broker.cluster("east").say(exp, "master-0", "epoch 1", "epoch 2")
    broker.monitor()
    assert shown(broker, exp)["status"] == "Running"
    logs = broker.result("GET", f"/experiment/logs/{exp}")["logContent"]
    assert logs[0] == {"podName": f"{exp}-master-0", "podLog": ["epoch 1", "epoch 2"]}

    broker.cluster("east").succeed(exp)
    broker.monitor()
    done = shown(broker, exp)
    assert done["status"] == "Succeeded" and done["finishedTime"] is not None
    assert [e["to"] for e in events(broker, exp) if e["to"]] == [
        "Accepted",
        "Created",
        "Running",
        "Succeeded",
    ]


def test_a_replica_that_fails_fails_the_experiment_naming_it(broker) -> None:
    exp = running_on_east(broker)
    broker.cluster("east").fail(exp, exit_code=3)
    broker.monitor()
    failed = shown(broker, exp)
    assert (failed["status"], failed["failureCategory"]) == ("Failed", "exit_code")
    assert failed["reason"] == "replica master-0 exited with code 3"


def test_a_cluster_that_refuses_the_plan_sends_it_to_another(broker) -> None:
    broker.cluster("east").refuse = "quota exceeded"
    exp = submit(broker)

    broker.dispatch()
    waiting = shown(broker, exp)
    assert waiting["status"] == "Accepted" and waiting["cluster"] is None
    assert waiting["statusMessage"] == "submit to east failed, retrying in 2s: quota exceeded"
    assert broker.dispatch() == 0  # backing off

    broker.age(exp, 2)
    broker.dispatch()
    moved = shown(broker, exp)
    assert (moved["status"], moved["cluster"]) == ("Created", "west")
    placement = broker.result("GET", f"/experiment/{exp}/placement")
    assert placement["cluster"] == "west"


def test_stop_ends_the_run_killed_whatever_the_cluster_reports_after(broker) -> None:
    exp = running_on_east(broker)

    stopped = broker.result("POST", f"/experiment/{exp}/stop")
    assert (stopped["status"], stopped["failureCategory"], stopped["reason"]) == (
        "Failed",
        "killed",
        "stopped by admin",
    )
    assert broker.cluster("east").of(exp).cancelled
    broker.monitor()  # the cluster now says the attempt failed ("cancelled"): too late to count
    assert shown(broker, exp)["reason"] == "stopped by admin"

    again = broker.post(f"/experiment/{exp}/stop")
    assert again.status_code == 409
    assert again.json()["message"] == f"experiment {exp} has already ended (Failed)"


def test_delete_cancels_the_run_and_keeps_its_record_and_logs(broker) -> None:
    exp = running_on_east(broker)
    broker.cluster("east").say(exp, "worker-1", "loss 0.1")

    assert broker.result("DELETE", f"/experiment/{exp}")["status"] == "Deleted"

    assert broker.cluster("east").of(exp).cancelled
    gone = broker.get(f"/experiment/{exp}")
    assert gone.status_code == 404 and gone.json()["message"] == f"Not found experiment: {exp}"
    assert [e["experimentId"] for e in broker.result("GET", "/experiment?status=Deleted")] == [exp]
    kept = broker.result("GET", f"/experiment/logs/{exp}?deleted=true&replica=worker-1")
    assert kept["logContent"] == [{"podName": f"{exp}-worker-1", "podLog": ["loss 0.1"]}]
    assert broker.delete(f"/experiment/{exp}").status_code == 404


def test_a_delete_that_lands_while_the_submit_is_in_flight_stops_what_the_submit_started(broker) -> None:
    exp = submit(broker)

    async def user_deletes(plan: LaunchPlan) -> None:
        answer = await broker.client.delete(f"/experiment/{plan.workload_id}")
        assert answer.status_code == 200

    broker.cluster("east").on_submit = user_deletes
    assert broker.dispatch() == 0

    assert broker.cluster("east").of(exp).cancelled
    deleted = broker.result("GET", "/experiment?status=Deleted")
    assert [(e["experimentId"], e["cluster"]) for e in deleted] == [(exp, "east")]
    history = broker.context.db.call(events_of(exp))  # the API shows a deleted one's events no more
    assert "deleted while being submitted to east" in [e.reason for e in history]


def test_failover_places_a_new_attempt_whose_times_are_its_own(broker) -> None:
    exp = running_on_east(broker, maxRetries=1)
    first = shown(broker, exp)
    broker.age(exp, HOUR)  # attempt 1 was created and ran an hour ago

    broker.lose("east", for_seconds=700)  # past the default grace of 600 s
    broker.failover()
    requeued = shown(broker, exp)
    assert (requeued["status"], requeued["attempt"], requeued["cluster"]) == ("Accepted", 2, None)
    assert requeued["uid"] != first["uid"]
    assert requeued["createdTime"] is None and requeued["runningTime"] is None
    assert requeued["statusMessage"] == "attempt 2: waiting to be placed again after losing east"

    broker.dispatch()
    broker.cluster("west").run(exp)
    broker.monitor()
    moved = shown(broker, exp)
    assert (moved["status"], moved["cluster"]) == ("Running", "west")

    history = events(broker, exp)
    moves = {(e["attempt"], e["to"]): e["at"] for e in history if e["to"] in ("Created", "Running")}
    assert set(moves) == {(1, "Created"), (1, "Running"), (2, "Created"), (2, "Running")}
    assert moved["createdTime"] == second(moves[(2, "Created")])
    assert moved["runningTime"] == second(moves[(2, "Running")])
    assert moved["createdTime"] != second(moves[(1, "Created")])  # attempt 1's times stay in the history
    assert any("attempt 2 of 2 will be placed again" in e["reason"] for e in history)

    broker.recover("east")
    broker.failover()  # east answers again: the superseded attempt is cancelled there
    assert broker.cluster("east").of(exp).cancelled
    assert any(
        f"superseded attempt 1 ({first['uid']}) cancelled on east" == e["reason"] for e in events(broker, exp)
    )
    assert shown(broker, exp)["status"] == "Running"


def test_inside_the_grace_work_on_a_lost_cluster_is_marked_then_adopted(broker) -> None:
    exp = running_on_east(broker, maxRetries=1)

    broker.lose("east", for_seconds=5)
    broker.failover()
    marked = shown(broker, exp)
    assert (marked["status"], marked["attempt"]) == ("Running", 1)
    assert marked["statusMessage"].startswith("cluster east unreachable since")
    broker.monitor()  # an unreachable cluster is not polled, so nothing fails for want of an answer
    assert shown(broker, exp)["status"] == "Running"

    broker.recover("east")
    broker.failover()
    adopted = shown(broker, exp)
    assert adopted["statusMessage"] is None and adopted["attempt"] == 1
    assert any(e["reason"] == "cluster east answers again; attempt 1 adopted" for e in events(broker, exp))
    broker.cluster("east").succeed(exp)
    broker.monitor()
    assert shown(broker, exp)["status"] == "Succeeded"


def test_without_retries_work_on_a_lost_cluster_fails_cluster_lost(broker) -> None:
    exp = running_on_east(broker)
    broker.lose("east", for_seconds=700)
    broker.failover()
    failed = shown(broker, exp)
    assert (failed["status"], failed["failureCategory"]) == ("Failed", "cluster_lost")
    assert "no retries left (meta.maxRetries=0)" in failed["reason"]


def test_when_every_cluster_is_silent_nothing_expires(broker) -> None:
    exp = running_on_east(broker, maxRetries=1)
    broker.lose("east", for_seconds=700)
    broker.lose("west", for_seconds=700)
    broker.failover()
    kept = shown(broker, exp)
    assert (kept["status"], kept["attempt"]) == ("Running", 1)
    assert "every cluster is silent" in kept["statusMessage"]


def test_a_restarted_broker_adopts_running_work_and_finishes_a_submit_cut_short(tmp_path: Path) -> None:
    first = InProcessBroker(tmp_path, **CLUSTERS)
    running = running_on_east(first)
    cut = submit(first)

    async def broker_dies(plan: LaunchPlan) -> None:
        raise asyncio.CancelledError  # after east took the plan, before its handle was saved

    first.cluster("east").on_submit = broker_dies
    with pytest.raises(asyncio.CancelledError):
        first.dispatch()
    interrupted = shown(first, cut)
    assert (interrupted["status"], interrupted["cluster"]) == ("Accepted", "east")
    first.cluster("east").on_submit = None
    first.close(keep_clusters=True)

    again = InProcessBroker(tmp_path, **CLUSTERS)
    try:
        assert again.dispatch() == 0  # the dead broker's claim still holds the row for a while
        assert shown(again, cut)["status"] == "Accepted"
        again.age(cut, CLAIM_HOLD + 1)
        again.dispatch()  # the same attempt is submitted to the same cluster: it exists once there
        finished = shown(again, cut)
        assert (finished["status"], finished["uid"]) == ("Created", interrupted["uid"])
        east = again.cluster("east")
        assert [a.uid for a in east.attempts.values() if a.plan.workload_id == cut] == [interrupted["uid"]]
        assert east.submits == 3

        again.monitor()
        assert shown(again, running)["status"] == "Running"
        east.succeed(running)
        again.monitor()
        assert shown(again, running)["status"] == "Succeeded"
    finally:
        again.close()
