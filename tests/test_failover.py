"""Failover with two thresholds, all-silent freeze, orphan sweep and submit refusals, on real brokers.

The `faulty` kind (tests/doubles/faulty.py) is the local adapter with injectable faults; its
replicas really run, so a superseded attempt keeps running until the sweep cancels it.
"""

from __future__ import annotations

from pathlib import Path

import psutil

from tests.doubles.faulty import write_faults
from tests.support import python_spec, wait_for

FAULTY = {"faulty": "tests.doubles.faulty:FaultyAdapter"}
FAST = {"health_interval": 0.4, "monitor_interval": 0.3, "dispatch_interval": 0.3, "cluster_loss_grace": 3}


def _hold(release: Path, **meta) -> dict:
    code = f"import pathlib, time\nwhile not pathlib.Path({str(release)!r}).exists(): time.sleep(0.05)\nprint('done')"
    return python_spec(code, **meta)


def _state(broker, name: str) -> str:
    return broker.client.get(f"/cluster/{name}").json()["result"]["state"]


def _alive(attempt_dir: Path) -> bool:
    import json

    for pid_file in attempt_dir.glob("*.pid"):
        info = json.loads(pid_file.read_text())
        try:
            if abs(psutil.Process(info["pid"]).create_time() - info["create_time"]) < 0.05:
                return True
        except psutil.NoSuchProcess:
            continue
    return False


def test_lost_cluster_gets_no_new_work_then_its_work_moves_after_the_grace(broker_factory, tmp_path) -> None:
    flaky_dir = tmp_path / "flaky-work"
    broker = broker_factory(
        extra_kinds=FAULTY,
        loops=FAST,
        clusters={"flaky": {"kind": "faulty", "work_dir": str(flaky_dir)}, "backup": {"kind": "local"}},
    )
    release = tmp_path / "release"
    exp = broker.submit(_hold(release, maxRetries=1, placement={"preferredClusters": ["flaky"]}))[
        "experimentId"
    ]
    first = broker.wait_status(exp, "Running")
    assert first["cluster"] == "flaky" and first["attempt"] == 1

    write_faults(flaky_dir, unreachable=True)
    wait_for(lambda: _state(broker, "flaky") == "Unreachable", timeout=10, what="flaky to turn Unreachable")
    other = broker.submit(python_spec("print(1)", placement={"preferredClusters": ["flaky"]}))["experimentId"]
    assert broker.wait_status(other, "Succeeded")["cluster"] == "backup"

    marked = broker.experiment(exp)
    assert marked["status"] == "Running" and marked["attempt"] == 1  # inside the grace: left alone
    assert "cluster flaky unreachable since" in (marked["statusMessage"] or "")

    moved = wait_for(
        lambda: (e := broker.experiment(exp))["attempt"] == 2 and e["status"] == "Running" and e,
        timeout=30,
        what="attempt 2 running elsewhere",
    )
    assert moved["cluster"] == "backup" and moved["uid"] != first["uid"]
    reasons = [e["reason"] for e in broker.events(exp)]
    assert any("longer than the grace period of 3s" in r and "attempt 2 of 2" in r for r in reasons), reasons

    old_attempt = flaky_dir / first["uid"]
    assert _alive(old_attempt), "the superseded attempt should still run on the silent cluster"
    write_faults(flaky_dir)  # the cluster comes back: the superseded attempt is swept
    wait_for(lambda: not _alive(old_attempt), timeout=20, what="the superseded attempt to be cancelled")
    wait_for(
        lambda: any("superseded attempt 1" in e["reason"] for e in broker.events(exp)),
        timeout=10,
        what="the sweep event",
    )
    release.touch()
    done = broker.wait_status(exp, "Succeeded")
    assert done["attempt"] == 2 and done["cluster"] == "backup"


def test_without_retries_the_experiment_fails_after_the_grace(broker_factory, tmp_path) -> None:
    flaky_dir = tmp_path / "flaky-work"
    broker = broker_factory(
        extra_kinds=FAULTY,
        loops=FAST,
        clusters={"flaky": {"kind": "faulty", "work_dir": str(flaky_dir)}, "backup": {"kind": "local"}},
    )
    exp = broker.submit(_hold(tmp_path / "never", placement={"cluster": "flaky"}))["experimentId"]
    broker.wait_status(exp, "Running")
    write_faults(flaky_dir, unreachable=True)
    failed = broker.wait_status(exp, "Failed", timeout=30)
    assert failed["failureCategory"] == "cluster_lost"
    assert "cluster flaky unreachable since" in failed["reason"] and "no retries left" in failed["reason"]


def test_when_every_cluster_is_silent_nothing_expires_and_work_is_adopted_again(
    broker_factory, tmp_path
) -> None:
    dirs = {name: tmp_path / f"{name}-work" for name in ("one", "two")}
    broker = broker_factory(
        extra_kinds=FAULTY,
        loops=FAST,
        clusters={name: {"kind": "faulty", "work_dir": str(d)} for name, d in dirs.items()},
    )
    release = tmp_path / "release"
    exp = broker.submit(_hold(release, maxRetries=3, placement={"cluster": "one"}))["experimentId"]
    first = broker.wait_status(exp, "Running")
    for d in dirs.values():
        write_faults(d, unreachable=True)
    wait_for(
        lambda: "every cluster is silent" in (broker.experiment(exp)["statusMessage"] or ""),
        timeout=15,
        what="the all-silent note",
    )
    import time

    time.sleep(4)  # past the 3 s grace: with every cluster silent nothing may expire
    held = broker.experiment(exp)
    assert held["status"] == "Running" and held["attempt"] == 1 and held["uid"] == first["uid"]

    for d in dirs.values():
        write_faults(d)
    wait_for(
        lambda: any("answers again; attempt 1 adopted" in e["reason"] for e in broker.events(exp)),
        timeout=15,
        what="the attempt to be adopted",
    )
    release.touch()
    done = broker.wait_status(exp, "Succeeded")
    assert done["attempt"] == 1 and broker.logs(exp)[f"{exp}-worker-0"] == ["done"]


def test_a_refused_submit_is_placed_again_elsewhere_with_events(broker_factory, tmp_path) -> None:
    flaky_dir = tmp_path / "flaky-work"
    write_faults(flaky_dir, reject_submit="quota exceeded in namespace default (injected)")
    broker = broker_factory(
        extra_kinds=FAULTY,
        loops=FAST,
        clusters={"flaky": {"kind": "faulty", "work_dir": str(flaky_dir)}, "backup": {"kind": "local"}},
    )
    exp = broker.submit(python_spec("print('ran')", placement={"preferredClusters": ["flaky"]}))[
        "experimentId"
    ]
    done = broker.wait_status(exp, "Succeeded", timeout=30)
    assert done["cluster"] == "backup"
    reasons = [e["reason"] for e in broker.events(exp)]
    assert any("submit to flaky failed (try 1): quota exceeded" in r for r in reasons), reasons
    assert reasons.index(next(r for r in reasons if r == "placed on flaky")) < reasons.index(
        "placed on backup"
    )


def test_a_poll_that_never_answers_does_not_stall_the_other_clusters(broker_factory, tmp_path) -> None:
    flaky_dir = tmp_path / "flaky-work"
    broker = broker_factory(
        extra_kinds=FAULTY,
        loops={**FAST, "poll_timeout": 1},
        clusters={"flaky": {"kind": "faulty", "work_dir": str(flaky_dir)}, "backup": {"kind": "local"}},
    )
    release = tmp_path / "release"
    stuck = broker.submit(_hold(release, placement={"cluster": "flaky"}))["experimentId"]
    broker.wait_status(stuck, "Running")
    write_faults(flaky_dir, poll_hangs=True)
    elsewhere = broker.submit(python_spec("print('fine')", placement={"cluster": "backup"}))["experimentId"]
    assert broker.wait_status(elsewhere, "Succeeded", timeout=30)["cluster"] == "backup"
    wait_for(
        lambda: "cannot poll cluster flaky: no answer in 1s" in broker.log(), timeout=15, what="the timeout"
    )
    again = broker.submit(python_spec("print('still fine')", placement={"cluster": "backup"}))["experimentId"]
    assert broker.wait_status(again, "Succeeded", timeout=30)["cluster"] == "backup"
    write_faults(flaky_dir)
    release.touch()
    assert broker.wait_status(stuck, "Succeeded", timeout=30)["attempt"] == 1


def test_a_failed_submit_retries_the_same_attempt_on_the_same_cluster_once_it_works(
    broker_factory, tmp_path
) -> None:
    flaky_dir = tmp_path / "flaky-work"
    write_faults(flaky_dir, fail_submit="connection reset while submitting (injected)")
    broker = broker_factory(
        extra_kinds=FAULTY,
        loops=FAST,
        clusters={"flaky": {"kind": "faulty", "work_dir": str(flaky_dir)}, "backup": {"kind": "local"}},
    )
    starts = tmp_path / "starts"
    code = f"open({str(starts)!r}, 'a').write('x')"
    exp = broker.submit(python_spec(code, placement={"preferredClusters": ["flaky"]}))["experimentId"]
    wait_for(
        lambda: any(
            "submit to flaky failed (try 1): connection reset" in e["reason"] for e in broker.events(exp)
        ),
        timeout=15,
        what="the failed submit event",
    )
    waiting = broker.experiment(exp)
    assert (
        waiting["status"] == "Accepted" and waiting["cluster"] == "flaky"
    )  # kept: it may have reached flaky
    write_faults(flaky_dir)
    done = broker.wait_status(exp, "Succeeded", timeout=60)
    assert done["cluster"] == "flaky" and done["attempt"] == 1 and done["uid"] == waiting["uid"]
    assert starts.read_text() == "x"


def test_delete_during_a_slow_submit_leaves_nothing_running(broker_factory, tmp_path) -> None:
    flaky_dir = tmp_path / "flaky-work"
    write_faults(flaky_dir, submit_delay=2)
    broker = broker_factory(
        extra_kinds=FAULTY,
        loops=FAST,
        clusters={"flaky": {"kind": "faulty", "work_dir": str(flaky_dir)}},
    )
    exp = broker.submit(_hold(tmp_path / "never"))["experimentId"]
    wait_for(lambda: broker.experiment(exp)["cluster"] == "flaky", timeout=10, what="the placement")
    uid = broker.experiment(exp)["uid"]
    assert broker.client.delete(f"/experiment/{exp}").status_code == 200
    attempt = flaky_dir / uid
    wait_for(
        lambda: attempt.is_dir() and (attempt / "cancelled").exists(),
        timeout=20,
        what="the late submit to be cancelled",
    )
    wait_for(lambda: not _alive(attempt), timeout=20, what="no replica left running")


def test_why_a_cluster_keeps_an_attempt_pending_is_shown(broker_factory, tmp_path) -> None:
    queue_dir = tmp_path / "queue-work"
    write_faults(queue_dir, pending="waiting for resources (Priority)")
    broker = broker_factory(
        extra_kinds=FAULTY, loops=FAST, clusters={"queue": {"kind": "faulty", "work_dir": str(queue_dir)}}
    )
    release = tmp_path / "release"
    experiment = broker.submit(_hold(release))["experimentId"]

    def message() -> str | None:
        return broker.client.get(f"/experiment/{experiment}").json()["result"]["statusMessage"]

    wait_for(
        lambda: message() == "pending on queue: waiting for resources (Priority)", timeout=30, what="reason"
    )
    found = broker.client.get(f"/experiment/{experiment}").json()["result"]
    assert found["status"] == "Created"
    reasons = [e["reason"] for e in broker.client.get(f"/experiment/{experiment}/events").json()["result"]]
    assert reasons.count("pending on queue: waiting for resources (Priority)") == 1  # once, not per poll
    write_faults(queue_dir)  # the queue lets it run
    release.touch()
    done = broker.wait_status(experiment, "Succeeded", timeout=60)
    assert done["statusMessage"] is None
