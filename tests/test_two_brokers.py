"""Two broker replicas on one PostgreSQL database: one dispatches, nothing runs twice, take-over works."""

from __future__ import annotations

import pytest

from tests.support import python_spec, wait_for

pytestmark = pytest.mark.postgres


def test_two_replicas_start_every_experiment_once_and_fail_over(broker_factory, pg_url, tmp_path) -> None:
    work = tmp_path / "shared-work"
    cluster = {"local": {"kind": "local", "work_dir": str(work)}}
    loops = {"lease_ttl": 3, "dispatch_interval": 0.3}
    a = broker_factory(name="a", database_url=pg_url, clusters=cluster, loops=loops)
    b = broker_factory(name="b", database_url=pg_url, clusters=cluster, loops=loops)
    starts = tmp_path / "starts.txt"
    release = tmp_path / "release"
    code = (
        "import os, pathlib, time\n"
        f"with open({str(starts)!r}, 'a') as f: f.write(os.environ['JOB_ID'] + '\\n')\n"
        f"while not pathlib.Path({str(release)!r}).exists(): time.sleep(0.05)\n"
    )
    ids = [(a if i % 2 else b).submit(python_spec(code, name=f"e{i}"))["experimentId"] for i in range(6)]
    assert len(set(ids)) == 6, "two replicas handed out the same id"
    for exp_id in ids:
        a.wait_status(exp_id, "Running")

    # Whoever holds the lease dies; the other takes over and sees the runs through.
    leader = a if "took the scheduler lease" in a.log() else b
    follower = b if leader is a else a
    leader.kill()
    wait_for(
        lambda: "took the scheduler lease" in follower.log(), timeout=30, what="the follower to take over"
    )
    release.touch()
    for exp_id in ids:
        follower.wait_status(exp_id, "Succeeded")
    started = starts.read_text().split()
    assert sorted(started) == sorted(ids), f"starts per experiment: {started}"


def test_a_cordon_on_any_replica_binds_the_one_that_places(broker_factory, pg_url, tmp_path) -> None:
    clusters = {
        "one": {"kind": "local", "work_dir": str(tmp_path / "one")},
        "two": {"kind": "local", "work_dir": str(tmp_path / "two")},
    }
    a = broker_factory(name="a", database_url=pg_url, clusters=clusters)
    b = broker_factory(name="b", database_url=pg_url, clusters=clusters)
    for broker in (a, b):  # whichever is not the leader receives the cordon
        answer = broker.client.post("/cluster/one/cordon")
        assert answer.status_code == 200 and answer.json()["result"]["state"] == "Cordoned"
    wait_for(lambda: a.client.get("/cluster/one").json()["result"]["cordoned"], timeout=5, what="a to see it")
    exp = a.submit(python_spec("print(1)", placement={"preferredClusters": ["one"]}))["experimentId"]
    assert a.wait_status(exp, "Succeeded")["cluster"] == "two"
    b.client.post("/cluster/one/uncordon")
    wait_for(
        lambda: a.client.get("/cluster/one").json()["result"]["state"] == "Ready",
        timeout=5,
        what="the uncordon to reach a",
    )
