"""Notebooks through dispatch, monitor, the notebook watch, stop, start, delete, failover and a broker
restart, in-process on scripted clusters (tests/inprocess.py, tests/scripted_cluster.py).

The scripted clusters also play the Jupyter servers: a running attempt answers ``api/status`` to
the broker when it presents that attempt's token.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.state import now
from runtimes.notebook import REPLICA
from tests.inprocess import InProcessBroker, scripted_clusters

CLUSTERS = scripted_clusters("east", "west")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[InProcessBroker]:
    made = InProcessBroker(tmp_path, **CLUSTERS)
    yield made
    made.close()


def create(broker: InProcessBroker, name: str = "nb", **spec: Any) -> str:
    body = {
        "meta": {"name": name, "namespace": "vision", "placement": {"preferredClusters": ["east"]}},
        "spec": {"resources": "cpu=1,memory=2Gi", **spec},
    }
    return broker.result("POST", "/notebook", json=body)["notebookId"]


def shown(broker: InProcessBroker, nid: str) -> dict[str, Any]:
    return broker.result("GET", f"/notebook/{nid}")


def jupyter_time(when: datetime) -> str:
    """A time as Jupyter reports ``last_activity``."""
    return when.isoformat().replace("+00:00", "Z")


def answering(broker: InProcessBroker, nid: str, cluster: str = "east") -> dict[str, Any]:
    """Dispatch, start and watch the notebook until its server answers; what the API shows then."""
    broker.dispatch()
    broker.cluster(cluster).run(nid)
    broker.monitor()
    broker.watch_notebooks()
    ready = shown(broker, nid)
    assert (ready["status"], ready["cluster"]) == ("running", cluster), ready
    return ready


def test_a_notebook_runs_once_its_server_answers_the_broker_with_its_token(broker) -> None:
    nid = create(broker)
    assert shown(broker, nid)["status"] == "waiting"

    broker.dispatch()
    assert (shown(broker, nid)["status"], shown(broker, nid)["cluster"]) == ("creating", "east")
    attempt = broker.cluster("east").of(nid)
    (replica,) = attempt.plan.replicas
    token = replica.env["JUPYTER_TOKEN"]
    assert token and not any(token in arg for arg in replica.argv)
    assert attempt.plan.workdir == nid

    attempt.answers = False
    broker.cluster("east").run(nid)
    broker.monitor()
    broker.watch_notebooks()
    # Running on its cluster is not running for users until the server has answered the broker.
    assert shown(broker, nid)["status"] == "creating"

    attempt.answers = True
    attempt.last_activity = jupyter_time(now() - timedelta(minutes=1))
    broker.watch_notebooks()
    ready = shown(broker, nid)
    assert (ready["status"], ready["url"]) == ("running", "/notebook/vision/nb/lab")
    assert ready["lastActivity"] == attempt.last_activity

    broker.cluster("east").say(nid, REPLICA, f"serving at http://host/lab?token={token}")
    logs = broker.result("GET", f"/notebook/{nid}/logs")["logContent"]
    assert logs == [{"podName": f"{nid}-{REPLICA}", "podLog": ["serving at http://host/lab?token=******"]}]


def test_a_server_that_never_answers_is_given_up_after_the_start_timeout(broker) -> None:
    nid = create(broker)
    broker.dispatch()
    broker.cluster("east").run(nid).answers = False
    broker.monitor()
    broker.watch_notebooks()
    assert shown(broker, nid)["status"] == "creating"

    broker.age(nid, 601)  # past the default start_timeout of 600 s since it started running
    broker.watch_notebooks()
    failed = shown(broker, nid)
    assert (failed["status"], failed["failureCategory"]) == ("failed", "timeout")
    assert "did not answer" in failed["reason"]
    assert broker.cluster("east").of(nid).cancelled


def test_stop_then_start_again_runs_a_new_attempt_with_the_same_id_files_and_url(broker) -> None:
    nid = create(broker)
    first = answering(broker, nid)
    old = broker.cluster("east").of(nid)

    stopped = broker.result("POST", f"/notebook/{nid}/stop")
    assert (stopped["status"], stopped["reason"], stopped["failureCategory"]) == (
        "stopped",
        "stopped by admin",
        "killed",
    )
    assert old.cancelled
    broker.monitor()  # the server's end, reported by the cluster after the stop, changes nothing
    assert shown(broker, nid)["status"] == "stopped"
    refused = broker.post(f"/notebook/{nid}/stop")
    assert (
        refused.status_code == 409 and refused.json()["message"] == f"notebook {nid} is not running (stopped)"
    )

    broker.age(nid, 3600)  # the first attempt ran an hour ago
    started = broker.result("POST", f"/notebook/{nid}/start")
    assert (started["status"], started["attempt"], started["cluster"]) == ("waiting", 2, None)
    assert started["uid"] != first["uid"] and started["failureCategory"] is None

    broker.dispatch()
    new = broker.cluster("east").of(nid)
    assert new.uid == started["uid"] and new.plan.workdir == nid  # its files are where they were
    assert new.plan.replicas[0].env["JUPYTER_TOKEN"] != old.plan.replicas[0].env["JUPYTER_TOKEN"]
    new.answers = False
    broker.cluster("east").run(nid)
    broker.monitor()
    broker.watch_notebooks()  # the start timeout counts from this attempt's start, not the first's
    assert shown(broker, nid)["status"] == "creating"
    new.answers = True
    broker.watch_notebooks()
    again = shown(broker, nid)
    assert (again["status"], again["url"], again["notebookId"]) == ("running", first["url"], nid)
    history = broker.result("GET", f"/notebook/{nid}/events")
    assert [(e["attempt"], e["to"]) for e in history if e["to"]] == [
        (1, "Accepted"),
        (1, "Created"),
        (1, "Running"),
        (1, "Failed"),
        (2, "Accepted"),
        (2, "Created"),
        (2, "Running"),
    ]


def test_delete_stops_the_server_frees_its_files_and_its_name(broker) -> None:
    nid = create(broker)
    answering(broker, nid)

    assert broker.result("DELETE", f"/notebook/{nid}")["status"] == "terminating"

    assert broker.cluster("east").of(nid).cancelled
    assert broker.cluster("east").released == [nid]
    gone = broker.get(f"/notebook/{nid}")
    assert gone.status_code == 404 and gone.json()["message"] == "Notebook not found."
    assert create(broker) != nid  # the name is free again


def test_an_idle_notebook_is_stopped(broker) -> None:
    nid = create(broker)
    answering(broker, nid)
    broker.cluster("east").of(nid).last_activity = jupyter_time(now() - timedelta(hours=2))

    broker.watch_notebooks()
    culled = shown(broker, nid)
    assert (culled["status"], culled["failureCategory"]) == ("stopped", "killed")
    assert culled["reason"].endswith("without activity (idle timeout 3600s)")
    assert broker.cluster("east").of(nid).cancelled


def test_a_notebook_on_a_lost_cluster_fails_and_starts_again_elsewhere(broker) -> None:
    nid = create(broker)
    answering(broker, nid)

    broker.lose("east", for_seconds=700)
    broker.failover()  # notebooks take no retries: the attempt fails with the cluster
    lost = shown(broker, nid)
    assert (lost["status"], lost["failureCategory"]) == ("failed", "cluster_lost")

    broker.result("POST", f"/notebook/{nid}/start")
    ready = answering(broker, nid, cluster="west")
    assert ready["attempt"] == 2

    broker.recover("east")
    broker.failover()  # the first attempt, still on east, is not this notebook's any more
    assert broker.cluster("east").of(nid).cancelled


def test_a_restarted_broker_finds_its_running_notebook_again(tmp_path: Path) -> None:
    first = InProcessBroker(tmp_path, **CLUSTERS)
    nid = create(first)
    before = answering(first, nid)
    first.close(keep_clusters=True)

    again = InProcessBroker(tmp_path, **CLUSTERS)
    try:
        again.monitor()
        again.watch_notebooks()
        after = shown(again, nid)
        assert (after["status"], after["uid"], after["attempt"]) == ("running", before["uid"], 1)
        assert not again.cluster("east").of(nid).cancelled
    finally:
        again.close()
