"""The kubernetes adapter, through the official client, against the protocol-level API double."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusters.base import Capability, Handle, Phase  # noqa: E402
from clusters.errors import ClusterUnreachable, SubmitRejected, WorkloadNotFound  # noqa: E402
from clusters.kinds import adapter_class  # noqa: E402
from clusters.kubernetes import manifests as m  # noqa: E402
from clusters.kubernetes.adapter import KubernetesAdapter  # noqa: E402
from clusters.kubernetes.config import KubernetesClusterConfig  # noqa: E402
from runtimes.frameworks import build_plan  # noqa: E402
from runtimes.plan import LaunchPlan  # noqa: E402
from runtimes.spec import ExperimentSpec  # noqa: E402
from tests.doubles.kube_api import KubeApiDouble  # noqa: E402
from tests.support import serve_in_thread  # noqa: E402

NS = "team-a"
TOKEN = "s3cret-token-value"


class Cluster:
    """A served double and a way to make adapters for it."""

    def __init__(self, double: KubeApiDouble, url: str, tmp_path: Path) -> None:
        self.double = double
        self.url = url
        self.kubeconfig = double.kubeconfig(tmp_path / "kubeconfig", url, NS)
        self.tmp_path = tmp_path

    def adapter(self, **fields: Any) -> KubernetesAdapter:
        config = KubernetesClusterConfig(
            name="k1", kubeconfig=str(self.kubeconfig), namespace=NS, origin="broker-a", **fields
        )
        return KubernetesAdapter(config, data_dir=str(self.tmp_path))


@pytest.fixture
def cluster(tmp_path: Path, shared_dir: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    options = getattr(request, "param", {})
    crds = shared_dir / "schemas" / "kubernetes" / "kubeflow-training"  # the double validates with them
    double = KubeApiDouble(token=TOKEN, crd_dir=crds, **options)
    with serve_in_thread(double.app) as url:
        yield Cluster(double, url, tmp_path)
    assert not double.refused, json.dumps(double.refused, indent=1)[:3000]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def make_plan(
    adapter: KubernetesAdapter, uid: str, framework: str = "pytorch", roles: Any = None
) -> LaunchPlan:
    roles = roles or {"Master": {"resources": "cpu=1,memory=1Gi"}, "Worker": {"replicas": 2}}
    spec = ExperimentSpec.model_validate(
        {
            "meta": {"name": "job", "framework": framework, "cmd": "python train.py"},
            "spec": roles,
            "environment": {"image": "pytorch/pytorch:2.4"},
        }
    )
    return build_plan(
        spec, workload_id=f"experiment-{uid}", uid=uid, namespace=NS, addressing=adapter.addressing(uid)
    )


def uid_of(n: int) -> str:
    return f"{n:02d}aabbccddeeff00112233445566778899"[:32]


def test_kind_config_and_capabilities(tmp_path: Path) -> None:
    assert adapter_class("kubernetes") is KubernetesAdapter
    assert KubernetesAdapter.capabilities == (
        Capability.GPU
        | Capability.MULTI_NODE
        | Capability.IMAGES
        | Capability.ENDPOINTS
        | Capability.LISTS_WORK
        | Capability.RELEASES_WORKDIRS
    )
    with pytest.raises(ValueError, match="kubeconfig"):
        KubernetesClusterConfig(name="k1")
    with pytest.raises(ValueError, match="not both"):
        KubernetesClusterConfig(name="k1", kubeconfig="/x", in_cluster=True)
    with pytest.raises(ValueError):
        KubernetesClusterConfig(name="k1", kubeconfig="/x", workload_api="yarn")
    config = KubernetesClusterConfig(name="k1", in_cluster=True, token=TOKEN)
    assert config.public_view()["token"] == "******" and TOKEN not in json.dumps(config.public_view())
    assert config.origin_label == "k1"


def test_health_reads_capacity_from_nodes_minus_pods(cluster: Cluster) -> None:
    d = cluster.double
    d.set_node("n1", cpu="8", memory="32Gi", gpu=2)
    d.set_node("n2", cpu="4000m", memory="16Gi")
    d.set_node("n3", cpu="64", memory="1Ti", unschedulable=True)
    d.add_pod(
        NS,
        "busy",
        {m.LABEL_ORIGIN: "broker-a"},
        requests={"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
    )
    d.add_pod("other", "waiting", phase="Pending", requests={"cpu": "500m", "memory": "512Mi"})
    d.add_pod(NS, "done", phase="Succeeded", requests={"cpu": "4", "memory": "4Gi"})
    adapter = cluster.adapter()
    health = run(adapter.health())
    assert health.reachable, health.message
    assert (health.total.cpu, health.total.memory, health.total.gpu) == (12.0, 48 * 2**30, 2)
    assert (health.free.cpu, health.free.memory, health.free.gpu) == (9.5, 48 * 2**30 - 4.5 * 2**30, 1)
    assert health.running == 1  # pods of this broker
    assert adapter.api.served == {"TFJob", "PyTorchJob", "XGBoostJob"}
    # a configured quota replaces the nodes' totals
    quota = cluster.adapter(capacity={"cpu": 4, "memory": "8Gi", "gpu": 1})
    health = run(quota.health())
    assert (health.total.cpu, health.free.cpu, health.free.gpu) == (4.0, 1.5, 0)
    assert d.requests_matching("GET", r"^/version$")


def test_refused_credentials_make_the_cluster_unreachable(cluster: Cluster) -> None:
    adapter = cluster.adapter()
    handle = run(adapter.submit(make_plan(adapter, uid_of(1))))
    for switch in (cluster.double.refuse_credentials, cluster.double.forbid):
        switch()
        health = run(adapter.health())
        assert not health.reachable and "credentials refused" in health.message
        assert TOKEN not in health.message
        with pytest.raises(ClusterUnreachable, match="credentials refused") as info:
            run(adapter.poll([handle]))
        assert TOKEN not in str(info.value)
    cluster.double.restore_credentials()
    assert run(adapter.health()).reachable


def test_the_config_token_replaces_the_kubeconfig_one(cluster: Cluster) -> None:
    cluster.kubeconfig = cluster.double.kubeconfig(cluster.tmp_path / "wrong", cluster.url, NS, token="wrong")
    assert not run(cluster.adapter().health()).reachable
    assert run(cluster.adapter(token=TOKEN).health()).reachable


def test_a_closed_port_is_unreachable(tmp_path: Path) -> None:
    double = KubeApiDouble(token=TOKEN)
    path = double.kubeconfig(tmp_path / "kc", "http://127.0.0.1:9", NS)
    config = KubernetesClusterConfig(name="k1", kubeconfig=str(path), request_timeout=2)
    adapter = KubernetesAdapter(config, data_dir=str(tmp_path))
    adapter.api.client().configuration.retries = 0
    health = run(adapter.health())
    assert not health.reachable and TOKEN not in health.message
    with pytest.raises(ClusterUnreachable):
        run(adapter.poll([Handle("u", {"shape": "job"})]))


def test_pytorchjob_conditions_become_phases(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter()  # auto: the double serves kubeflow.org/v1
    uid = uid_of(2)
    plan = make_plan(adapter, uid)
    assert plan.replica("worker-1").host == "sb-02aabbccddee-worker-1"
    handle = run(adapter.submit(plan))
    assert handle.state["shape"] == "kubeflow" and handle.state["plural"] == "pytorchjobs"
    (job,) = d.objects("pytorchjobs", NS)
    assert job["metadata"]["name"] == "sb-02aabbccddee"
    assert job["metadata"]["labels"] == {
        m.LABEL_ORIGIN: "broker-a",
        m.LABEL_EXPERIMENT: f"experiment-{uid}",
        m.LABEL_UID: uid,
    }
    assert run(adapter.poll([handle]))[uid].phase is Phase.PENDING
    for condition, phase in [
        ("Created", Phase.PENDING),
        ("Running", Phase.RUNNING),
        ("Restarting", Phase.RUNNING),
        ("Running", Phase.RUNNING),
        ("Succeeded", Phase.SUCCEEDED),
    ]:
        d.set_condition("pytorchjobs", NS, "sb-02aabbccddee", condition)
        seen = run(adapter.poll([handle]))[uid]
        assert seen.phase is phase, (condition, seen)
    assert [r.name for r in seen.replicas] == ["master-0", "worker-0", "worker-1"]

    failing = run(adapter.submit(make_plan(adapter, uid_of(3))))
    d.set_condition("pytorchjobs", NS, "sb-03aabbccddee", "Failed", message="1 Worker replica(s) failed.")
    seen = run(adapter.poll([failing]))[uid_of(3)]
    assert (seen.phase, seen.failure_category, seen.message) == (
        Phase.FAILED,
        "exit_code",
        "1 Worker replica(s) failed.",
    )


def test_poll_is_one_list_per_kind(cluster: Cluster) -> None:
    d = cluster.double
    kubeflow = cluster.adapter()
    handles = [run(kubeflow.submit(make_plan(kubeflow, uid_of(i)))) for i in range(3)]
    handles.append(
        run(kubeflow.submit(make_plan(kubeflow, uid_of(3), "tensorflow", {"Worker": {"replicas": 2}})))
    )
    jobs = cluster.adapter(workload_api="job")
    handles += [run(jobs.submit(make_plan(jobs, uid_of(i)))) for i in range(4, 7)]
    d.requests.clear()
    seen = run(kubeflow.poll([*handles, Handle("ghost", {"shape": "job"})]))
    gets = [(r["path"], r["query"].get("labelSelector")) for r in d.requests if r["method"] == "GET"]
    assert sorted(gets) == [
        (f"/apis/batch/v1/namespaces/{NS}/jobs", "submarine-broker/origin=broker-a"),
        (f"/apis/kubeflow.org/v1/namespaces/{NS}/pytorchjobs", "submarine-broker/origin=broker-a"),
        (f"/apis/kubeflow.org/v1/namespaces/{NS}/tfjobs", "submarine-broker/origin=broker-a"),
    ]
    assert len(d.requests) == 3
    assert {seen[h.uid].phase for h in handles} == {Phase.PENDING}
    assert seen["ghost"].phase is Phase.NOT_FOUND


def test_plain_jobs_with_a_headless_service(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter(workload_api="job")
    uid = uid_of(8)
    plan = make_plan(adapter, uid)
    assert plan.replica("master-0").host == "sb-08aabbccddee-master-0.sb-08aabbccddee"
    handle = run(adapter.submit(plan))
    assert handle.state["shape"] == "job"
    assert handle.state["jobs"] == {"master": "sb-08aabbccddee-master", "worker": "sb-08aabbccddee-worker"}
    (service,) = d.objects("services", NS)
    assert service["spec"]["clusterIP"] == "None" and service["metadata"]["name"] == "sb-08aabbccddee"
    made = {j["metadata"]["name"]: j for j in d.objects("jobs", NS)}
    worker = made["sb-08aabbccddee-worker"]["spec"]
    assert worker["completionMode"] == "Indexed" and worker["completions"] == 2
    env = worker["template"]["spec"]["containers"][0]["env"]
    assert env[0]["name"] == "JOB_COMPLETION_INDEX"
    assert worker["template"]["spec"]["subdomain"] == "sb-08aabbccddee"
    assert not d.objects("pytorchjobs")

    assert run(adapter.poll([handle]))[uid].phase is Phase.PENDING
    d.patch_status("jobs", NS, "sb-08aabbccddee-master", {"active": 1, "ready": 1})
    d.patch_status("jobs", NS, "sb-08aabbccddee-worker", {"active": 2, "ready": 2})
    assert run(adapter.poll([handle]))[uid].phase is Phase.RUNNING
    d.patch_status(
        "jobs", NS, "sb-08aabbccddee-worker", {"completedIndexes": "0", "succeeded": 1, "active": 1}
    )
    seen = run(adapter.poll([handle]))[uid]
    assert seen.phase is Phase.RUNNING
    assert {r.name: r.phase for r in seen.replicas}["worker-0"] is Phase.SUCCEEDED
    d.set_condition("jobs", NS, "sb-08aabbccddee-master", "Complete")
    d.set_condition("jobs", NS, "sb-08aabbccddee-worker", "Complete")
    assert run(adapter.poll([handle]))[uid].phase is Phase.SUCCEEDED

    other = run(adapter.submit(make_plan(adapter, uid_of(9))))
    d.set_condition(
        "jobs",
        NS,
        "sb-09aabbccddee-worker",
        "Failed",
        reason="BackoffLimitExceeded",
        message="Job has reached the specified backoff limit",
    )
    seen = run(adapter.poll([other]))[uid_of(9)]
    assert seen.phase is Phase.FAILED and seen.failure_category == "exit_code"
    assert seen.message.startswith("replica worker-0: Job has reached")
    # a Job that disappears is a lost replica
    d.remove("jobs", NS, "sb-08aabbccddee-master")
    seen = run(adapter.poll([handle]))[uid]
    assert seen.phase is Phase.FAILED and seen.failure_category == "cluster_lost"


def test_python_always_runs_as_plain_jobs(cluster: Cluster) -> None:
    adapter = cluster.adapter(workload_api="kubeflow")
    handle = run(adapter.submit(make_plan(adapter, uid_of(10), "python", {"Worker": {"replicas": 2}})))
    assert handle.state["shape"] == "job"
    assert [j["metadata"]["name"] for j in cluster.double.objects("jobs", NS)] == ["sb-10aabbccddee-worker"]


def test_submit_is_idempotent_and_foreign_objects_are_refused(cluster: Cluster) -> None:
    d = cluster.double
    for shape in ("kubeflow", "job"):
        adapter = cluster.adapter(workload_api=shape)
        uid = uid_of(11) if shape == "kubeflow" else uid_of(12)
        plan = make_plan(adapter, uid)
        first = run(adapter.submit(plan))
        again = run(adapter.submit(plan))
        assert first == again
        assert len(d.requests_matching("POST", "/namespaces/")) == (2 if shape == "kubeflow" else 8)
    assert len(d.objects("pytorchjobs", NS)) == 1 and len(d.objects("jobs", NS)) == 2

    # an object with the same name that is not this attempt's
    adapter = cluster.adapter()
    plan = make_plan(adapter, uid_of(13))
    foreign = m.kubeflow_job(plan, origin="someone-else", namespace=NS)
    foreign["metadata"]["labels"][m.LABEL_UID] = "another-uid"
    d.put_object("pytorchjobs", foreign)
    with pytest.raises(SubmitRejected, match="not this attempt's"):
        run(adapter.submit(plan))
    jobs = cluster.adapter(workload_api="job")
    plan = make_plan(jobs, uid_of(14))
    foreign = m.indexed_jobs(plan, origin="someone-else", namespace=NS)[1]
    foreign["metadata"]["labels"][m.LABEL_UID] = "another-uid"
    d.put_object("jobs", foreign)
    with pytest.raises(SubmitRejected, match="not this attempt's"):
        run(jobs.submit(plan))
    # what the refused submit had created is deleted again; the foreign Job stays
    names = {j["metadata"]["name"] for j in d.objects("jobs", NS)}
    assert "sb-14aabbccddee-master" not in names and "sb-14aabbccddee-worker" in names
    assert d.get("services", NS, "sb-14aabbccddee") is None


@pytest.mark.parametrize("cluster", [{"webhook_denials": "403"}], indirect=True)
def test_an_admission_webhook_denial_is_a_refusal(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = cluster.adapter(workload_api="kubeflow")
    plan = make_plan(adapter, uid_of(15), "xgboost", {"Worker": {"replicas": 2}})
    monkeypatch.setattr(m, "kubeflow_problem", lambda plan: None)  # let the operator's webhook judge it
    with pytest.raises(SubmitRejected, match="admission webhook") as info:
        run(adapter.submit(plan))
    assert "credentials" not in str(info.value)
    cluster.double.refused.clear()  # the double recorded the (deliberately) invalid object
    monkeypatch.undo()
    with pytest.raises(SubmitRejected, match="needs a Master"):
        run(adapter.submit(plan))


def test_missing_image_is_refused_before_sending(cluster: Cluster) -> None:
    adapter = cluster.adapter()
    plan = make_plan(adapter, uid_of(16)).model_copy(update={"image": None, "environment": None})
    with pytest.raises(SubmitRejected, match="no image"):
        run(adapter.submit(plan))
    with_default = cluster.adapter(image="site/default:1")
    run(with_default.submit(plan))
    (job,) = cluster.double.objects("pytorchjobs", NS)
    assert job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["image"] == (
        "site/default:1"
    )


def test_logs_primary_first(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter()
    uid = uid_of(17)
    handle = run(adapter.submit(make_plan(adapter, uid)))
    base = {m.LABEL_UID: uid, m.LABEL_ORIGIN: "broker-a"}

    def kf(rtype: str, index: int) -> dict[str, str]:
        return {**base, m.KUBEFLOW_REPLICA_TYPE: rtype, m.KUBEFLOW_REPLICA_INDEX: str(index)}

    d.add_pod(
        NS, "sb-17aabbccddee-worker-1", kf("worker", 1), log_lines=["w1 a", "w1 b"], container="pytorch"
    )
    d.add_pod(NS, "sb-17aabbccddee-worker-0", kf("worker", 0), phase="Pending", container="pytorch")
    d.add_pod(NS, "sb-17aabbccddee-master-0", kf("master", 0), log_lines=["m a", "m b"], container="pytorch")
    d.add_pod(NS, "unrelated", {m.LABEL_UID: "other"}, log_lines=["nope"])
    logs = run(adapter.logs(handle))
    assert [(log.replica, log.lines) for log in logs] == [
        ("master-0", ["m a", "m b"]),
        ("worker-0", []),
        ("worker-1", ["w1 a", "w1 b"]),
    ]
    assert [(log.replica, log.lines) for log in run(adapter.logs(handle, "worker-1", tail=1))] == [
        ("worker-1", ["w1 b"])
    ]
    with pytest.raises(WorkloadNotFound):
        run(adapter.logs(handle, "ps-0"))

    jobs = cluster.adapter(workload_api="job")
    uid = uid_of(18)
    handle = run(jobs.submit(make_plan(jobs, uid)))
    for role, index, lines in [("worker", 0, ["w0"]), ("master", 0, ["m0"])]:
        labels = {m.LABEL_UID: uid, m.LABEL_ROLE: role, m.COMPLETION_INDEX: str(index)}
        d.add_pod(NS, f"sb-18aabbccddee-{role}-{index}-x1", labels, log_lines=lines, container=role)
    logs = run(jobs.logs(handle))
    assert [(log.replica, log.lines) for log in logs] == [
        ("master-0", ["m0"]),
        ("worker-0", ["w0"]),
        ("worker-1", []),
    ]


def test_cancel_deletes_in_the_foreground(cluster: Cluster) -> None:
    d = cluster.double
    kubeflow = cluster.adapter()
    jobs = cluster.adapter(workload_api="job")
    a = run(kubeflow.submit(make_plan(kubeflow, uid_of(19))))
    b = run(jobs.submit(make_plan(jobs, uid_of(20))))
    d.add_pod(
        NS, "sb-20aabbccddee-worker-0-x", {m.LABEL_UID: uid_of(20)}, owner=("jobs", "sb-20aabbccddee-worker")
    )
    run(kubeflow.cancel(a))
    run(jobs.cancel(b))
    assert not d.objects("pytorchjobs") and not d.objects("jobs") and not d.objects("services")
    assert not d.objects("pods")
    assert {x["propagationPolicy"] for x in d.deletions} == {"Foreground"}
    assert sorted(x["name"] for x in d.deletions) == [
        "sb-19aabbccddee",
        "sb-20aabbccddee",
        "sb-20aabbccddee-master",
        "sb-20aabbccddee-worker",
    ]
    run(kubeflow.cancel(a))  # gone already: fine
    run(jobs.cancel(b))
    assert run(kubeflow.poll([a, b])) == {
        a.uid: run(kubeflow.poll([a]))[a.uid],
        b.uid: run(kubeflow.poll([b]))[b.uid],
    }
    assert {o.phase for o in run(kubeflow.poll([a, b])).values()} == {Phase.NOT_FOUND}


def test_owned_finds_our_objects_for_the_orphan_sweep(cluster: Cluster) -> None:
    d = cluster.double
    kubeflow = cluster.adapter()
    jobs = cluster.adapter(workload_api="job")
    run(kubeflow.submit(make_plan(kubeflow, uid_of(21))))
    run(jobs.submit(make_plan(jobs, uid_of(22))))
    plan = make_plan(kubeflow, uid_of(23))
    d.put_object("pytorchjobs", m.kubeflow_job(plan, origin="broker-b", namespace=NS))
    owned = {h.uid: h for h in run(kubeflow.owned())}
    assert set(owned) == {uid_of(21), uid_of(22)}
    assert owned[uid_of(21)].state["shape"] == "kubeflow"
    assert owned[uid_of(21)].state["replicas"] == ["master-0", "worker-0", "worker-1"]
    assert owned[uid_of(22)].state["jobs"] == {
        "master": "sb-22aabbccddee-master",
        "worker": "sb-22aabbccddee-worker",
    }
    for handle in owned.values():  # what the sweep does with them
        run(kubeflow.cancel(handle))
    assert [j["metadata"]["name"] for j in d.objects("pytorchjobs")] == ["sb-23aabbccddee"]
    assert not d.objects("jobs") and not d.objects("services")
    # a handle without state (lost) is found by its uid label
    run(jobs.submit(make_plan(jobs, uid_of(24))))
    run(jobs.cancel(Handle(uid_of(24), {})))
    assert not d.objects("jobs")


def test_auto_without_kubeflow_uses_plain_jobs(tmp_path: Path) -> None:
    double = KubeApiDouble(token=TOKEN, kubeflow=False)
    with serve_in_thread(double.app) as url:
        cluster = Cluster(double, url, tmp_path)
        adapter = cluster.adapter()
        assert run(adapter.health()).reachable
        assert adapter.api.served == set()
        plan = make_plan(adapter, uid_of(25))
        assert plan.replica("worker-0").host.endswith(".sb-25aabbccddee")
        handle = run(adapter.submit(plan))
        assert handle.state["shape"] == "job" and len(double.objects("jobs", NS)) == 2
        assert run(adapter.poll([handle]))[uid_of(25)].phase is Phase.PENDING
    assert not double.refused
