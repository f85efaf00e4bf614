"""The yarn adapter over real HTTP against the ResourceManager double (Services API, cluster API, NodeManager logs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clusters.base import Capability, Handle, Phase
from clusters.errors import ClusterUnreachable, SubmitRejected, WorkloadNotFound
from clusters.kinds import adapter_class
from clusters.yarn import service_spec as spec
from clusters.yarn.adapter import YarnAdapter
from clusters.yarn.config import YarnClusterConfig
from runtimes.frameworks import build_plan
from runtimes.plan import LaunchPlan
from runtimes.spec import ExperimentSpec
from tests.doubles.yarn_rm import YarnRMDouble
from tests.support import free_port, serve_in_thread


class Cluster:
    """A served double and a way to make adapters for it."""

    def __init__(self, double: YarnRMDouble, url: str, tmp_path: Path) -> None:
        self.double, self.url, self.tmp_path = double, url, tmp_path
        self.port = int(url.rsplit(":", 1)[1])

    def adapter(self, **fields: Any) -> YarnAdapter:
        base = {
            "name": "yc",
            "rm_url": self.url,
            "user": "alice",
            "dns_domain": "yc.example.com",
            "nodemanager_port": self.port,
            "request_timeout": 5,
        }
        return YarnAdapter(YarnClusterConfig(**{**base, **fields}), data_dir=str(self.tmp_path))


@pytest.fixture
def cluster(tmp_path: Path, yarn_schema_dir: Path) -> Iterator[Cluster]:
    double = YarnRMDouble(users={"alice"}, vcores=16, memory_mb=32768, gpus=4)
    with serve_in_thread(double.app) as url:
        yield Cluster(double, url, tmp_path)
    assert double.refused == [], json.dumps(double.refused, indent=1)[:3000]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def make_plan(adapter: YarnAdapter, uid: str, roles: Any = None, framework: str = "pytorch") -> LaunchPlan:
    roles = roles or {"Master": {"resources": "cpu=1,memory=1Gi"}, "Worker": {"replicas": 2}}
    experiment = ExperimentSpec.model_validate(
        {
            "meta": {"name": "job", "framework": framework, "cmd": "python train.py"},
            "spec": roles,
            "environment": {"image": "pytorch/pytorch:2.4"},
        }
    )
    return build_plan(
        experiment,
        workload_id=f"experiment-{uid[:4]}",
        uid=uid,
        namespace="ns",
        addressing=adapter.addressing(uid),
    )


def uid_of(n: int) -> str:
    return f"{n:02d}aabbccddeeff00112233445566778899"[:32]


def test_kind_config_and_capabilities() -> None:
    assert adapter_class("yarn") is YarnAdapter
    assert YarnAdapter.capabilities == (
        Capability.GPU | Capability.MULTI_NODE | Capability.IMAGES | Capability.LISTS_WORK
    )
    config = YarnClusterConfig(
        name="yc", rm_url="http://rm:8088/", user="alice", dns_domain="YC.Example.com."
    )
    assert config.rm_url == "http://rm:8088" and config.dns_domain == "yc.example.com"
    assert config.origin_mark == "yc" and config.public_view()["user"] == "alice"
    for bad in ({"rm_url": "rm:8088"}, {"user": "a b"}, {"dns_domain": "bad_domain"}, {"log_file": "../x"}):
        with pytest.raises(ValueError):
            YarnClusterConfig(**{"name": "yc", "rm_url": "http://rm:8088", "user": "alice", **bad})
    with pytest.raises(ValueError, match="Extra inputs"):
        YarnClusterConfig(name="yc", rm_url="http://rm:8088", user="alice", kubeconfig="/x")


def test_health_reads_capacity_from_the_cluster_metrics(cluster: Cluster) -> None:
    adapter = cluster.adapter()
    health = run(adapter.health())
    assert health.reachable, health.message
    assert (health.total.cpu, health.total.memory, health.total.gpu) == (16.0, 32 * 2**30, 4)
    assert (health.free.cpu, health.free.memory, health.free.gpu) == (16.0, 32 * 2**30, 4)
    handle = run(
        adapter.submit(
            make_plan(adapter, uid_of(1), {"Worker": {"replicas": 2, "resources": "cpu=2,memory=2Gi,gpu=1"}})
        )
    )
    cluster.double.start(handle.state["job_id"])
    health = run(adapter.health())
    assert (health.free.cpu, health.free.memory, health.free.gpu) == (12.0, 28 * 2**30, 2)
    quota = run(cluster.adapter(capacity={"cpu": 8, "memory": "8Gi", "gpu": 2}).health())
    assert (quota.total.cpu, quota.free.cpu, quota.free.memory, quota.free.gpu) == (8.0, 4.0, 4 * 2**30, 0)
    metrics = cluster.double.requests_matching("GET", r"^/ws/v1/cluster/metrics$")
    assert metrics and all(r["query"]["user.name"] == "alice" for r in metrics)


def test_unreachable_refused_or_without_the_services_api(cluster: Cluster) -> None:
    down = cluster.adapter(rm_url=f"http://127.0.0.1:{free_port()}")
    health = run(down.health())
    assert not health.reachable and "did not answer" in health.message
    handle = Handle("u", {"job_id": "sb-u", "replicas": ["worker-0"], "success_roles": ["Worker"]})
    with pytest.raises(ClusterUnreachable):
        run(down.poll([handle]))
    with pytest.raises(ClusterUnreachable):
        run(down.submit(make_plan(down, uid_of(2))))
    with pytest.raises(ClusterUnreachable):
        run(down.cancel(handle))
    no_api = run(cluster.adapter(rm_url=cluster.url + "/elsewhere").health())
    assert not no_api.reachable and "Services API" in no_api.message
    cluster.double.outage = 503
    with pytest.raises(ClusterUnreachable, match="503"):
        run(cluster.adapter().poll([handle]))
    assert not run(cluster.adapter().health()).reachable
    cluster.double.outage = None
    cluster.double.refuse_credentials()
    refused = run(cluster.adapter().health())
    assert not refused.reachable and "credentials refused" in refused.message
    with pytest.raises(ClusterUnreachable, match="credentials refused"):
        run(cluster.adapter().poll([handle]))
    cluster.double.restore_credentials({"alice"})
    assert run(cluster.adapter().health()).reachable


def test_submit_is_one_valid_post_and_idempotent(cluster: Cluster) -> None:
    adapter = cluster.adapter()
    plan = make_plan(adapter, uid_of(3))
    handle = run(adapter.submit(plan))
    name = f"sb-{uid_of(3)}"
    assert handle.uid == plan.uid and handle.state["job_id"] == name
    assert handle.state["replicas"] == ["master-0", "worker-0", "worker-1"]
    assert handle.state["success_roles"] == ["Master", "Worker"]
    again = run(cluster.adapter().submit(plan))  # a retry, or a restarted broker
    assert again == handle
    posts = cluster.double.requests_matching("POST", r"^/app/v1/services$")
    assert len(posts) == 1 and posts[0]["query"] == {"user.name": "alice"}
    [body] = cluster.double.posted
    assert body["name"] == name and [c["name"] for c in body["components"]] == ["master", "worker"]
    assert [c["number_of_containers"] for c in body["components"]] == [1, 2]


def test_a_lost_race_adopts_the_winners_service(cluster: Cluster) -> None:
    adapter = cluster.adapter()
    plan = make_plan(adapter, uid_of(4))
    assert run(adapter.submit_job(plan)) == f"sb-{uid_of(4)}"
    assert run(adapter.submit_job(plan)) == f"sb-{uid_of(4)}"  # 500 "already taken", then found
    assert len(cluster.double.posted) == 1 and len(cluster.double.requests_matching("POST", "services$")) == 2


def test_refusals_carry_yarns_diagnostics(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = cluster.adapter(queue="nope")
    with pytest.raises(SubmitRejected, match="unknown queue: nope"):
        run(adapter.submit(make_plan(adapter, uid_of(5))))
    with pytest.raises(SubmitRejected, match="no image"):
        run(
            cluster.adapter().submit(
                make_plan(adapter, uid_of(5)).model_copy(update={"image": None, "environment": None})
            )
        )
    with pytest.raises(SubmitRejected, match="dns_domain"):
        no_dns = cluster.adapter(dns_domain=None)
        run(no_dns.submit(make_plan(no_dns, uid_of(5))))
    original = spec.build_service

    def invalid(plan: LaunchPlan, config: YarnClusterConfig) -> dict[str, Any]:
        body = original(plan, config)
        body["components"][0]["name"] = "Master_0"
        return body

    monkeypatch.setattr(spec, "build_service", invalid)
    with pytest.raises(SubmitRejected, match="can not use '_'"):
        run(cluster.adapter().submit(make_plan(adapter, uid_of(6))))
    assert len(cluster.double.refused) == 1  # the double caught it, as YARN would
    cluster.double.refused.clear()
    assert cluster.double.names() == []


def test_poll_moves_through_the_states_with_one_listing_per_poll(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter()
    ok, bad = (run(adapter.submit(make_plan(adapter, uid_of(n)))) for n in (7, 8))
    ghost = Handle(
        uid_of(9), {"job_id": f"sb-{uid_of(9)}", "replicas": ["worker-0"], "success_roles": ["Worker"]}
    )
    handles = [ok, bad, ghost]

    def poll() -> dict[str, Any]:
        listings = len(d.requests_matching("GET", r"^/ws/v1/cluster/apps$"))
        reads = len(d.requests_matching("GET", r"^/app/v1/services/sb-"))
        seen = run(cluster.adapter().poll(handles))
        assert len(d.requests_matching("GET", r"^/ws/v1/cluster/apps$")) == listings + 1
        poll.reads = len(d.requests_matching("GET", r"^/app/v1/services/sb-")) - reads  # type: ignore[attr-defined]
        return seen

    seen = poll()
    assert seen[ok.uid].phase is Phase.PENDING and seen[bad.uid].phase is Phase.PENDING
    assert seen[ghost.uid].phase is Phase.NOT_FOUND
    assert poll.reads == 0  # type: ignore[attr-defined]  # nothing runs yet: the listing says all
    for h in (ok, bad):
        d.start(h.state["job_id"])  # ACCEPTED -> STARTED, containers RUNNING_BUT_UNREADY
    seen = poll()
    assert poll.reads == 2  # type: ignore[attr-defined]  # one service read per running attempt
    assert seen[ok.uid].phase is Phase.RUNNING
    assert [r.name for r in seen[ok.uid].replicas] == ["master-0", "worker-0", "worker-1"]
    d.stabilize(ok.state["job_id"])
    assert poll()[ok.uid].phase is Phase.RUNNING
    d.fail(bad.state["job_id"], "worker-1")
    failed = poll()[bad.uid]
    assert failed.phase is Phase.FAILED and failed.failure_category == "exit_code"
    assert failed.message.startswith("replica worker-1: container container_") and "FAILED" in failed.message
    d.end(bad.state["job_id"], diagnostics="Failed components: [worker]")
    after = poll()[bad.uid]  # the AM is gone: the application report decides
    assert after.phase is Phase.FAILED and "FINISHED/FAILED: Failed components: [worker]" in after.message
    d.succeed(ok.state["job_id"])
    assert poll()[ok.uid].phase is Phase.SUCCEEDED  # service SUCCEEDED, AM still up
    d.end(ok.state["job_id"])
    seen = poll()
    assert seen[ok.uid].phase is Phase.SUCCEEDED and poll.reads == 0  # type: ignore[attr-defined]
    # the Services API alone would have said STOPPED for both
    with httpx.Client(base_url=cluster.url) as http:
        states = [
            http.get(f"/app/v1/services/{h.state['job_id']}", params={"user.name": "alice"}).json()["state"]
            for h in (ok, bad)
        ]
    assert states == ["STOPPED", "STOPPED"]
    assert run(cluster.adapter().poll([])) == {}


def test_cancel_stops_then_destroys_and_is_idempotent(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter()
    early = run(adapter.submit(make_plan(adapter, uid_of(10))))
    running = run(adapter.submit(make_plan(adapter, uid_of(11))))
    d.start(running.state["job_id"])
    for handle in (early, running):
        run(adapter.cancel(handle))
        name = handle.state["job_id"]
        calls = [
            (r["method"], r["body"])
            for r in d.requests
            if r["path"] == f"/app/v1/services/{name}" and r["method"] != "GET"
        ]
        assert calls == [("PUT", {"state": "STOPPED"}), ("DELETE", None)]
        assert name not in d.names()
    assert d.service(early.state["job_id"]).app.final_status == "KILLED"  # not running yet: killed
    assert d.service(running.state["job_id"]).app.final_status == "ENDED"  # graceful stop
    seen = run(adapter.poll([early, running]))
    assert {o.phase for o in seen.values()} == {Phase.FAILED} and {
        o.failure_category for o in seen.values()
    } == {"killed"}
    run(adapter.cancel(running))  # again: 404 and "doesn't exist" are fine
    done = run(adapter.submit(make_plan(adapter, uid_of(12))))
    d.start(done.state["job_id"])
    d.succeed(done.state["job_id"], end=True)
    run(adapter.cancel(done))  # "already stopped", then destroyed
    assert done.state["job_id"] not in d.names()
    d.outage = 500
    with pytest.raises(ClusterUnreachable):
        run(adapter.cancel(done))
    d.outage = None


def test_logs_come_from_the_nodemanager_per_replica(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter()
    handle = run(adapter.submit(make_plan(adapter, uid_of(13))))
    name = handle.state["job_id"]
    assert [log.lines for log in run(adapter.logs(handle))] == [[], [], []]  # no containers yet
    d.start(name)
    d.write_log(name, "master-0", ["rank 0", "step 1", "step 2"])
    d.write_log(name, "worker-1", ["rank 2"])
    logs = run(adapter.logs(handle))
    assert [(log.replica, log.lines) for log in logs] == [
        ("master-0", ["rank 0", "step 1", "step 2"]),
        ("worker-0", []),
        ("worker-1", ["rank 2"]),
    ]
    assert [log.lines for log in run(adapter.logs(handle, replica="master-0", tail=1))] == [["step 2"]]
    with pytest.raises(WorkloadNotFound):
        run(adapter.logs(handle, replica="worker-7"))
    reads = d.requests_matching("GET", r"^/ws/v1/node/containerlogs/container_.*/stdout.txt$")
    assert reads and all(
        r["query"]["user.name"] == "alice" and r["query"]["size"] == "-1048576" for r in reads
    )
    d.succeed(name, end=True)  # the service no longer lists containers: the poll's memory serves
    run(adapter.poll([handle]))
    assert run(adapter.logs(handle, replica="worker-1"))[0].lines == ["rank 2"]
    fresh = cluster.adapter()  # a restarted broker after the end: nothing to find the containers by
    assert run(fresh.logs(handle, replica="worker-1"))[0].lines == []


def test_owned_lists_live_services_with_this_brokers_mark(cluster: Cluster) -> None:
    d = cluster.double
    mine, theirs = cluster.adapter(), cluster.adapter(origin="other-broker")
    a = run(mine.submit(make_plan(mine, uid_of(14))))
    b = run(mine.submit(make_plan(mine, uid_of(15))))
    run(theirs.submit(make_plan(theirs, uid_of(16))))
    d.start(b.state["job_id"])
    d.succeed(b.state["job_id"], end=True)
    owned = run(mine.owned())
    assert [h.uid for h in owned] == [a.uid]
    assert owned[0].state["job_id"] == a.state["job_id"]
    run(mine.cancel(owned[0]))
    assert run(mine.owned()) == []
    assert [h.uid for h in run(theirs.owned())] == [uid_of(16)]
