"""The Kubernetes API double and its validators, driven by the real ``kubernetes`` client."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from tests.doubles import kube_validation  # noqa: E402
from tests.doubles.kube_api import KubeApiDouble, parse_label_selector  # noqa: E402
from tests.support import serve_in_thread  # noqa: E402

NS = "team-a"


@pytest.fixture(scope="module")
def crds(shared_dir: Path) -> Path:
    folder = shared_dir / "schemas" / "kubernetes" / "kubeflow-training"
    kube_validation.configure(folder)
    return folder


@pytest.fixture(scope="module")
def served(crds: Path) -> Iterator[tuple[KubeApiDouble, str]]:
    double = KubeApiDouble(token="s3cret", kubeflow=True, crd_dir=crds)
    with serve_in_thread(double.app) as url:
        yield double, url


@pytest.fixture(scope="module")
def api(served: tuple[KubeApiDouble, str], tmp_path_factory: pytest.TempPathFactory) -> client.ApiClient:
    double, url = served
    path = double.kubeconfig(tmp_path_factory.mktemp("kube") / "config", url, namespace=NS)
    return config.new_client_from_config(config_file=str(path), context="double")


@pytest.fixture(autouse=False)
def double(served: tuple[KubeApiDouble, str]) -> Iterator[KubeApiDouble]:
    d = served[0]
    d.restore_credentials()
    yield d
    d.restore_credentials()


def job(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"submarine/origin": "broker-1", **labels}},
        "spec": {
            "completionMode": "Indexed",
            "completions": 2,
            "parallelism": 2,
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"submarine/origin": "broker-1"}},
                "spec": {
                    "restartPolicy": "Never",
                    "subdomain": name,
                    "containers": [
                        {
                            "name": "worker",
                            "image": "python:3.11",
                            "command": ["python", "-c", "print(1)"],
                            "env": [{"name": "RANK", "value": "0"}],
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "512Mi", "nvidia.com/gpu": "1"},
                                "limits": {"memory": "512Mi", "nvidia.com/gpu": "1"},
                            },
                        }
                    ],
                },
            },
        },
    }


def replica(container: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "replicas": replicas,
        "restartPolicy": "OnFailure",
        "template": {
            "spec": {
                "containers": [
                    {"name": container, "image": "pytorch/pytorch:2.3", "command": ["python", "t.py"]}
                ]
            }
        },
    }


def pytorchjob(name: str, masters: int = 1, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "labels": {"submarine/origin": "broker-1", **labels}},
        "spec": {
            "pytorchReplicaSpecs": {"Master": replica("pytorch", masters), "Worker": replica("pytorch", 2)}
        },
    }


def tfjob(name: str, ps_key: str = "PS") -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": name},
        "spec": {"tfReplicaSpecs": {ps_key: replica("tensorflow"), "Worker": replica("tensorflow", 2)}},
    }


def status_of(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


# -- validators -------------------------------------------------------------------------------------


def test_valid_objects_pass(crds: Path) -> None:
    assert kube_validation.validate(job("train-1")) == []
    assert kube_validation.validate(pytorchjob("pt-1")) == []
    assert kube_validation.validate(tfjob("tf-1")) == []
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "train-1"},
        "spec": {"clusterIP": "None", "selector": {"job-name": "train-1"}},
    }
    assert kube_validation.validate(svc) == []
    xgb = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "XGBoostJob",
        "metadata": {"name": "x"},
        "spec": {"xgbReplicaSpecs": {"Master": replica("xgboost"), "Worker": replica("xgboost", 2)}},
    }
    assert kube_validation.validate(xgb) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda o: o["metadata"].update(name="Train_1"), "metadata.name: Invalid value"),
        (lambda o: o["metadata"]["labels"].update(x="a" * 64), "metadata.labels[x]"),
        (
            lambda o: o["spec"]["template"]["spec"].update(restartPolicy="Always"),
            "spec.template.spec.restartPolicy: Unsupported value",
        ),
        (
            lambda o: o["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"].update(
                memory="512MB"
            ),
            "requests[memory]: Invalid value: '512MB'",
        ),
        (
            lambda o: o["spec"]["template"]["spec"]["containers"][0]["resources"].pop("limits"),
            "limits[nvidia.com/gpu]: Required value",
        ),
        (
            lambda o: o["spec"]["template"]["spec"]["containers"][0].update(resorces={}),
            "'resorces' was unexpected",
        ),
        (lambda o: o["spec"].update(parallelism="two"), "spec.parallelism: 'two' is not of type"),
        (lambda o: o["spec"].pop("completions"), "spec.completions: Required value"),
    ],
    ids=["name", "label-value", "restart-always", "512MB", "gpu-limit", "unknown-field", "type", "indexed"],
)
def test_job_rules(mutate: Any, expected: str) -> None:
    obj = job("train-1")
    mutate(obj)
    problems = kube_validation.validate(obj)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (pytorchjob("pt", masters=2), "Master.replicas: Forbidden"),
        (tfjob("tf", ps_key="Ps"), "tfReplicaSpecs.Ps: Unsupported value"),
        ({**pytorchjob("pt"), "metadata": {"name": "1pt"}}, "DNS-1035"),
        (
            {
                "apiVersion": "kubeflow.org/v1",
                "kind": "XGBoostJob",
                "metadata": {"name": "x"},
                "spec": {"xgbReplicaSpecs": {"Worker": replica("xgboost")}},
            },
            "needs a Master",
        ),
        (
            {
                "apiVersion": "kubeflow.org/v1",
                "kind": "TFJob",
                "metadata": {"name": "t"},
                "spec": {"tfReplicaSpecs": {"Chief": replica("tensorflow"), "Master": replica("tensorflow")}},
            },
            "at most one Chief or Master",
        ),
        (
            {
                "apiVersion": "kubeflow.org/v1",
                "kind": "PyTorchJob",
                "metadata": {"name": "p"},
                "spec": {"pytorchReplicaSpecs": {"Master": replica("main")}},
            },
            "must be named 'pytorch'",
        ),
    ],
    ids=["two-masters", "Ps", "name", "xgb-master", "chief-and-master", "container-name"],
)
def test_kubeflow_rules(crds: Path, obj: dict[str, Any], expected: str) -> None:
    problems = kube_validation.validate(obj)
    assert any(expected in p for p in problems), problems


def test_kubeflow_strict_schema(crds: Path) -> None:
    obj = pytorchjob("pt")
    obj["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["imagee"] = "x"
    obj["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = "one"
    problems = kube_validation.validate(obj)
    assert any("'imagee' was unexpected" in p for p in problems), problems
    assert any("Worker.replicas: 'one' is not of type 'integer'" in p for p in problems), problems
    bad_pod = pytorchjob("pt")
    bad_pod["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"memory": "1GB"}
    }
    assert any("'1GB'" in p for p in kube_validation.validate(bad_pod))


def test_label_selector_parser() -> None:
    labels = {"app": "x", "tier": "web"}
    assert parse_label_selector("app=x,tier in (web, db)")(labels)
    assert parse_label_selector("app==x,!missing,tier")(labels)
    assert not parse_label_selector("app!=x")(labels)
    assert not parse_label_selector("tier notin (web)")(labels)


# -- the double through the real client --------------------------------------------------------------


def test_discovery_with_kubeflow(api: client.ApiClient, double: KubeApiDouble) -> None:
    assert client.VersionApi(api).get_code().git_version == "v1.30.0"
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {
        g.name: [v.group_version for v in g.versions] for g in client.ApisApi(api).get_api_versions().groups
    }
    assert groups["batch"] == ["batch/v1"] and groups["kubeflow.org"] == ["kubeflow.org/v1"]
    names = {r.name for r in client.CustomObjectsApi(api).get_api_resources("kubeflow.org", "v1").resources}
    assert {"tfjobs", "pytorchjobs", "xgboostjobs"} <= names
    assert "jobs" in {r.name for r in client.BatchV1Api(api).get_api_resources().resources}
    assert "pods" in {r.name for r in client.CoreV1Api(api).get_api_resources().resources}


def test_discovery_without_kubeflow(api: client.ApiClient, double: KubeApiDouble) -> None:
    double.kubeflow = False
    try:
        groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
        assert "kubeflow.org" not in groups and "batch" in groups
        with pytest.raises(ApiException) as info:
            client.CustomObjectsApi(api).get_api_resources("kubeflow.org", "v1")
        assert info.value.status == 404 and status_of(info.value)["reason"] == "NotFound"
        with pytest.raises(ApiException) as info:
            client.CustomObjectsApi(api).list_namespaced_custom_object(
                "kubeflow.org", "v1", NS, "pytorchjobs"
            )
        assert info.value.status == 404
    finally:
        double.kubeflow = True


def test_job_crud(api: client.ApiClient, double: KubeApiDouble) -> None:
    batch = client.BatchV1Api(api)
    made = batch.create_namespaced_job(NS, job("crud-1", experiment="e1"))
    assert made.metadata.uid and made.metadata.resource_version and made.metadata.creation_timestamp
    batch.create_namespaced_job(NS, job("crud-2", experiment="e2"))
    with pytest.raises(ApiException) as info:
        batch.create_namespaced_job(NS, job("crud-1"))
    body = status_of(info.value)
    assert info.value.status == 409 and body["reason"] == "AlreadyExists"
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'jobs.batch "crud-1" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "crud-1", "group": "batch", "kind": "jobs"},
        "code": 409,
    }
    assert batch.read_namespaced_job("crud-1", NS).spec.completion_mode == "Indexed"
    listed = batch.list_namespaced_job(NS, label_selector="submarine/origin=broker-1,experiment=e1")
    assert [j.metadata.name for j in listed.items] == ["crud-1"] and listed.metadata.resource_version
    both = batch.list_namespaced_job(NS, label_selector="experiment in (e1,e2)")
    assert {j.metadata.name for j in both.items} >= {"crud-1", "crud-2"}
    double.add_pod(NS, "crud-1-0-abc", {"job-name": "crud-1"}, owner=("jobs", "crud-1"))
    batch.delete_namespaced_job("crud-1", NS, propagation_policy="Foreground")
    last = double.deletions[-1]
    assert last["propagationPolicy"] == "Foreground" and last["dependents"] == ["pods/crud-1-0-abc"]
    assert double.get("pods", NS, "crud-1-0-abc") is None
    with pytest.raises(ApiException) as info:
        batch.read_namespaced_job("crud-1", NS)
    assert info.value.status == 404 and status_of(info.value)["message"] == 'jobs.batch "crud-1" not found'
    batch.delete_namespaced_job("crud-2", NS, body=client.V1DeleteOptions(propagation_policy="Background"))
    assert double.deletions[-1]["propagationPolicy"] == "Background"


def test_service_crud(api: client.ApiClient, double: KubeApiDouble) -> None:
    core = client.CoreV1Api(api)
    svc = client.V1Service(
        metadata=client.V1ObjectMeta(name="svc-1", labels={"experiment": "e9"}),
        spec=client.V1ServiceSpec(cluster_ip="None", selector={"job-name": "svc-1"}),
    )
    core.create_namespaced_service(NS, svc)
    assert core.read_namespaced_service("svc-1", NS).spec.cluster_ip == "None"
    assert [
        s.metadata.name for s in core.list_namespaced_service(NS, label_selector="experiment=e9").items
    ] == ["svc-1"]
    core.delete_namespaced_service("svc-1", NS)
    assert core.list_namespaced_service(NS, label_selector="experiment=e9").items == []


def test_pytorchjob_crud_and_conditions(api: client.ApiClient, double: KubeApiDouble) -> None:
    custom = client.CustomObjectsApi(api)
    made = custom.create_namespaced_custom_object(
        "kubeflow.org", "v1", NS, "pytorchjobs", pytorchjob("pt-1", experiment="e3")
    )
    assert made["metadata"]["uid"] and made["metadata"]["namespace"] == NS
    with pytest.raises(ApiException) as info:
        custom.create_namespaced_custom_object("kubeflow.org", "v1", NS, "pytorchjobs", pytorchjob("pt-1"))
    assert info.value.status == 409 and status_of(info.value)["reason"] == "AlreadyExists"
    double.set_condition("pytorchjobs", NS, "pt-1", "Created")
    double.set_condition("pytorchjobs", NS, "pt-1", "Running")
    got = custom.get_namespaced_custom_object("kubeflow.org", "v1", NS, "pytorchjobs", "pt-1")
    assert [(c["type"], c["status"]) for c in got["status"]["conditions"]] == [
        ("Created", "True"),
        ("Running", "True"),
    ]
    double.set_condition("pytorchjobs", NS, "pt-1", "Succeeded", reason="PyTorchJobSucceeded")
    listed = custom.list_namespaced_custom_object(
        "kubeflow.org", "v1", NS, "pytorchjobs", label_selector="experiment=e3"
    )
    assert listed["kind"] == "PyTorchJobList" and len(listed["items"]) == 1
    conds = {c["type"]: c["status"] for c in listed["items"][0]["status"]["conditions"]}
    assert conds == {"Created": "True", "Running": "False", "Succeeded": "True"}
    custom.delete_namespaced_custom_object(
        "kubeflow.org", "v1", NS, "pytorchjobs", "pt-1", propagation_policy="Foreground"
    )
    assert double.deletions[-1]["propagationPolicy"] == "Foreground"
    with pytest.raises(ApiException) as info:
        custom.get_namespaced_custom_object("kubeflow.org", "v1", NS, "pytorchjobs", "pt-1")
    assert info.value.status == 404


def test_job_conditions(api: client.ApiClient, double: KubeApiDouble) -> None:
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(NS, job("cond-1"))
    double.set_condition("jobs", NS, "cond-1", "Complete")
    status = batch.read_namespaced_job("cond-1", NS).status
    assert status.succeeded == 2 and status.active == 0 and status.conditions[0].type == "Complete"
    batch.delete_namespaced_job("cond-1", NS, propagation_policy="Foreground")


@pytest.mark.parametrize(
    ("plural", "obj", "expected"),
    [
        ("pytorchjobs", pytorchjob("pt-bad", masters=2), "exactly 1 Master"),
        ("tfjobs", tfjob("tf-bad", ps_key="Ps"), "tfReplicaSpecs.Ps"),
        ("jobs", None, "restartPolicy: Unsupported value"),
    ],
    ids=["pytorch-2-masters", "tf-Ps", "job-restart-always"],
)
def test_invalid_objects_get_422(
    api: client.ApiClient, double: KubeApiDouble, plural: str, obj: Any, expected: str
) -> None:
    refused_before = len(double.refused)
    with pytest.raises(ApiException) as info:
        if plural == "jobs":
            bad = job("bad-job")
            bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
            client.BatchV1Api(api).create_namespaced_job(NS, bad)
        else:
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                "kubeflow.org", "v1", NS, plural, obj
            )
    body = status_of(info.value)
    assert info.value.status == 422 and body["reason"] == "Invalid" and body["code"] == 422
    assert expected in body["message"] and body["details"]["causes"]
    assert len(double.refused) == refused_before + 1 and expected in " ".join(double.refused[-1]["errors"])
    assert double.get(plural, NS, (obj or {"metadata": {"name": "bad-job"}})["metadata"]["name"]) is None


def test_webhook_denials_as_403(crds: Path, tmp_path: Path) -> None:
    double = KubeApiDouble(token="t", webhook_denials="403")
    with serve_in_thread(double.app) as url:
        custom = client.CustomObjectsApi(
            config.new_client_from_config(str(double.kubeconfig(tmp_path / "c", url)))
        )
        with pytest.raises(ApiException) as info:
            custom.create_namespaced_custom_object(
                "kubeflow.org", "v1", "default", "tfjobs", tfjob("tf", ps_key="Ps")
            )
        assert info.value.status == 403
        assert status_of(info.value)["message"].startswith(
            'admission webhook "validator.tfjob.training-operator.kubeflow.org" denied'
        )
        bad = tfjob("tf2")
        bad["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = "two"
        with pytest.raises(ApiException) as info:
            custom.create_namespaced_custom_object("kubeflow.org", "v1", "default", "tfjobs", bad)
        assert info.value.status == 422


def test_auth(
    api: client.ApiClient, double: KubeApiDouble, served: tuple[KubeApiDouble, str], tmp_path: Path
) -> None:
    wrong = config.new_client_from_config(str(double.kubeconfig(tmp_path / "c", served[1], token="nope")))
    with pytest.raises(ApiException) as info:
        client.CoreV1Api(wrong).list_namespaced_pod(NS)
    assert info.value.status == 401 and status_of(info.value)["reason"] == "Unauthorized"
    core = client.CoreV1Api(api)
    core.list_namespaced_pod(NS)
    double.forbid()
    assert client.VersionApi(api).get_code().git_version == "v1.30.0"  # discovery stays open
    with pytest.raises(ApiException) as info:
        core.list_namespaced_pod(NS)
    assert info.value.status == 403 and status_of(info.value)["reason"] == "Forbidden"
    double.refuse_credentials()
    with pytest.raises(ApiException) as info:
        client.VersionApi(api).get_code()
    assert info.value.status == 401
    double.restore_credentials()
    core.list_namespaced_pod(NS)


def test_pods_logs_nodes(api: client.ApiClient, double: KubeApiDouble) -> None:
    core = client.CoreV1Api(api)
    double.set_node("node-a", cpu="16", memory="64Gi", gpu=4)
    double.add_pod(
        NS,
        "log-pod",
        {"experiment": "e7"},
        log_lines=[f"line {i}" for i in range(10)],
        requests={"cpu": "2", "nvidia.com/gpu": "1"},
        node="node-a",
    )
    double.add_pod("other", "done-pod", {}, phase="Succeeded", requests={"cpu": "4"})
    assert core.read_namespaced_pod_log("log-pod", NS, tail_lines=3) == "line 7\nline 8\nline 9\n"
    assert core.read_namespaced_pod_log("log-pod", NS).count("\n") == 10
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("nope", NS)
    assert info.value.status == 404
    node = next(n for n in core.list_node().items if n.metadata.name == "node-a")
    assert node.status.allocatable == {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": "4"}
    running = core.list_pod_for_all_namespaces(field_selector="status.phase=Running").items
    assert "log-pod" in {p.metadata.name for p in running} and "done-pod" not in {
        p.metadata.name for p in running
    }
    assert (
        core.list_namespaced_pod(NS, label_selector="experiment=e7")
        .items[0]
        .spec.containers[0]
        .resources.requests["cpu"]
        == "2"
    )


def test_every_accepted_object_was_valid(api: client.ApiClient, double: KubeApiDouble, crds: Path) -> None:
    """What a suite using the double ends with: re-validate everything it accepted."""
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm-1"), data={"TF_CONFIG": "{}"})
    client.CoreV1Api(api).create_namespaced_config_map(NS, cm)
    assert double.created
    for obj in double.created:
        clean = copy.deepcopy(obj)
        assert kube_validation.validate(clean) == [], obj["metadata"]["name"]
