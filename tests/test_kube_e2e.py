"""Kubernetes end to end through the broker: a real broker subprocess drives the adapter, the adapter
drives the official client, the client talks to the protocol-level API double through a generated
kubeconfig, and every object it sends is validated (core kinds with kubernetes-validate, Kubeflow
kinds with the CRD schemas from ../shared and the operator's rules)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.doubles.kube_api import KubeApiDouble
from tests.support import Broker, python_spec, serve_in_thread, wait_for

FAST = {"dispatch_interval": 0.3, "monitor_interval": 0.3, "health_interval": 0.5}
NS = "ml"


@pytest.fixture
def kube(shared_dir: Path, tmp_path: Path) -> Iterator[tuple[KubeApiDouble, Path]]:
    double = KubeApiDouble(crd_dir=shared_dir / "schemas" / "kubernetes" / "kubeflow-training")
    double.set_node("node-1", cpu="8", memory="32Gi")
    with serve_in_thread(double.app) as url:
        config = tmp_path / "kubeconfig"
        double.kubeconfig(config, url, namespace=NS)
        yield double, config
    assert double.refused == [], f"the adapter sent objects a real API server would refuse: {double.refused}"


def _broker(broker_factory, config: Path, **fields: Any) -> Broker:
    cluster = {
        "kind": "kubernetes",
        "kubeconfig": str(config),
        "context": "double",
        "namespace": NS,
        **fields,
    }
    broker = broker_factory(clusters={"k8s": cluster}, loops=FAST)
    wait_for(
        lambda: broker.client.get("/cluster/k8s").json()["result"]["state"] == "Ready",
        timeout=90,
        what="the Kubernetes cluster to be Ready",
    )
    return broker


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def _pytorch(image: str = "pytorch/pytorch:2.3") -> dict[str, Any]:
    spec = python_spec(
        "print('x')",
        framework="pytorch",
        roles={
            "Master": {"replicas": 1, "resources": "cpu=1,memory=1Gi"},
            "Worker": {"replicas": 1, "resources": "cpu=1,memory=1Gi"},
        },
    )
    spec["environment"] = {"image": image}
    return spec


def test_pytorch_becomes_a_pytorchjob_whose_conditions_drive_the_status(broker_factory, kube) -> None:
    double, config = kube
    broker = _broker(broker_factory, config)
    exp = broker.submit(_pytorch())["experimentId"]
    created = broker.wait_status(exp, "Created")
    [job] = double.objects("pytorchjobs", NS)
    name = job["metadata"]["name"]
    assert job["metadata"]["labels"]["submarine-broker/uid"] == created["uid"]
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"} and specs["Master"]["replicas"] == 1
    master = specs["Master"]["template"]["spec"]["containers"][0]
    assert master["name"] == "pytorch" and master["image"] == "pytorch/pytorch:2.3"
    assert _env(master)["JOB_ID"] == exp and _env(master)["WORLD_SIZE"] == "2"

    double.set_condition("pytorchjobs", NS, name, "Created")
    double.set_condition("pytorchjobs", NS, name, "Running")
    broker.wait_status(exp, "Running")
    labels = {"submarine-broker/uid": created["uid"], "training.kubeflow.org/job-name": name}
    double.add_pod(
        NS,
        f"{name}-worker-0",
        {
            **labels,
            "training.kubeflow.org/replica-type": "worker",
            "training.kubeflow.org/replica-index": "0",
        },
        log_lines=["rank 1"],
    )
    double.add_pod(
        NS,
        f"{name}-master-0",
        {
            **labels,
            "training.kubeflow.org/replica-type": "master",
            "training.kubeflow.org/replica-index": "0",
        },
        log_lines=["rank 0"],
    )
    logs = broker.logs(exp)
    assert list(logs) == [f"{exp}-master-0", f"{exp}-worker-0"]
    assert logs[f"{exp}-master-0"] == ["rank 0"] and logs[f"{exp}-worker-0"] == ["rank 1"]
    double.set_condition("pytorchjobs", NS, name, "Succeeded")
    assert broker.wait_status(exp, "Succeeded")["cluster"] == "k8s"


def test_tensorflow_ps_and_worker_get_tf_config_and_delete_is_foreground(broker_factory, kube) -> None:
    double, config = kube
    broker = _broker(broker_factory, config)
    spec = python_spec(
        "print('x')",
        framework="tensorflow",
        roles={
            "Ps": {"replicas": 1, "resources": "cpu=1"},
            "Worker": {"replicas": 2, "resources": "cpu=1"},
        },
    )
    spec["environment"] = {"image": "tensorflow/tensorflow:2.16"}
    exp = broker.submit(spec)["experimentId"]
    broker.wait_status(exp, "Created")
    [job] = double.objects("tfjobs", NS)
    specs = job["spec"]["tfReplicaSpecs"]
    assert set(specs) == {"PS", "Worker"} and specs["Worker"]["replicas"] == 2
    container = specs["Worker"]["template"]["spec"]["containers"][0]
    assert container["name"] == "tensorflow"
    tf_config = _env(container)["TF_CONFIG"]
    assert "$(SUBMARINE_REPLICA_INDEX)" in tf_config or json.loads(tf_config)["cluster"]["ps"]

    assert broker.client.delete(f"/experiment/{exp}").status_code == 200
    deletions = [d for d in double.deletions if d["plural"] == "tfjobs"]
    assert deletions and deletions[0]["propagationPolicy"] == "Foreground"
    assert double.objects("tfjobs", NS) == []


def test_plain_jobs_path_with_a_headless_service(broker_factory, kube) -> None:
    double, config = kube
    broker = _broker(broker_factory, config, workload_api="job")
    exp = broker.submit(_pytorch())["experimentId"]
    broker.wait_status(exp, "Created")
    jobs = double.objects("jobs", NS)
    services = double.objects("services", NS)
    assert len(jobs) == 2 and len(services) == 1 and services[0]["spec"]["clusterIP"] == "None"
    assert double.objects("pytorchjobs", NS) == []
    for job in jobs:
        assert job["spec"]["completionMode"] == "Indexed"
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    for job in jobs:
        double.set_condition("jobs", NS, job["metadata"]["name"], "Complete")
    assert broker.wait_status(exp, "Succeeded")["cluster"] == "k8s"


def test_a_restarted_broker_adopts_and_creates_nothing_twice(broker_factory, kube) -> None:
    double, config = kube
    broker = _broker(broker_factory, config)
    exp = broker.submit(_pytorch())["experimentId"]
    broker.wait_status(exp, "Created")
    [job] = double.objects("pytorchjobs", NS)
    double.set_condition("pytorchjobs", NS, job["metadata"]["name"], "Running")
    broker.wait_status(exp, "Running")
    broker.kill()
    broker.start()
    double.set_condition("pytorchjobs", NS, job["metadata"]["name"], "Succeeded")
    assert broker.wait_status(exp, "Succeeded")["attempt"] == 1
    assert len(double.objects("pytorchjobs", NS)) == 1, double.deletions
    assert len(double.requests_matching("POST", r"/pytorchjobs$")) == 1


def test_refused_credentials_surface_on_the_cluster(broker_factory, kube) -> None:
    double, config = kube
    broker = _broker(broker_factory, config)
    double.refuse_credentials()
    cluster = wait_for(
        lambda: (c := broker.client.get("/cluster/k8s").json()["result"])["state"] == "Unreachable" and c,
        timeout=20,
        what="the cluster to turn Unreachable",
    )
    assert "credentials refused" in cluster["message"]
    assert "test-token" not in json.dumps(cluster) and "test-token" not in broker.log()
    double.restore_credentials()
    wait_for(
        lambda: broker.client.get("/cluster/k8s").json()["result"]["state"] == "Ready",
        timeout=30,
        what="the cluster to recover",
    )
