"""Notebooks on Kubernetes: the objects built from a notebook plan (StatefulSet + Service, or a
Kubeflow Notebook; the token Secret; the working-directory claim), validated as a real API server
would (kubernetes-validate for core kinds; the Notebook CRD with its validation patch applied);
the adapter against the API double (submit, endpoint, poll, cancel, owned, logs); and one notebook
end to end through a real broker whose only cluster is the double, reached at a real Jupyter server
through the broker's proxy."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clusters.base import Handle, Phase
from clusters.errors import SubmitRejected
from clusters.kubernetes import manifests as m
from clusters.kubernetes import notebooks as nb
from clusters.kubernetes.adapter import KubernetesAdapter
from clusters.kubernetes.config import KubernetesClusterConfig
from runtimes.notebook import NotebookSpec, build_notebook_plan
from runtimes.plan import Addressing, LaunchPlan, StaticAddressing
from tests.doubles import kube_validation as validation
from tests.doubles.kube_api import KubeApiDouble
from tests.jupyter_kernel import execute
from tests.jupyter_server import JupyterServer
from tests.support import serve_in_thread, wait_for
from tests.test_kube_adapter import Cluster  # same namespace (team-a) and origin

NS = "team-a"  # the Kubernetes namespace
NB_NS = "vision"  # the notebook's (Submarine) namespace: part of its URL
TOKEN = "jupyter-token-7f3a9c1e5b"  # the notebook's server token
API_TOKEN = "api-token-for-the-double"
WORKLOAD = "notebook_1700000000000_0001"
IMAGE = "quay.io/jupyter/minimal-notebook:2024-10-07"
PYTHON = "python"  # what the broker plans on image-based clusters (ClusterConfig.notebook_python)

#: Every reason the kubelet gives a waiting container (pkg/kubelet/images/types.go,
#: kuberuntime/kuberuntime_container.go, container/sync_result.go, kubelet_pods.go).
KUBELET_WAITING = {
    "ContainerCreating", "PodInitializing",
    "ErrImagePull", "ImagePullBackOff", "ImageInspectError", "ErrImageNeverPull", "InvalidImageName",
    "RegistryUnavailable",
    "CreateContainerConfigError", "CreateContainerError", "PreCreateHookError", "PreStartHookError",
    "PostStartHookError",
    "CrashLoopBackOff", "RunContainerError", "KillContainerError", "VerifyNonRootError",
    "RunInitContainerError", "CreatePodSandboxError", "ConfigPodSandboxError", "KillPodSandboxError",
}  # fmt: skip


def uid_of(n: int) -> str:
    return f"{n:02d}ffeeddccbbaa00112233445566778899"[:32]


def config(**fields: Any) -> KubernetesClusterConfig:
    return KubernetesClusterConfig(name="k1", in_cluster=True, namespace=NS, origin="broker-a", **fields)


def notebook_plan(
    addressing: Addressing,
    uid: str,
    *,
    name: str = "lab",
    workload_id: str = WORKLOAD,
    image: str | None = IMAGE,
    env: dict[str, str] | None = None,
) -> LaunchPlan:
    spec = NotebookSpec.model_validate(
        {
            "meta": {"name": name, "namespace": NB_NS},
            "environment": {"image": image} if image else {},
            "spec": {"envVars": env or {"GREETING": "hello $(HOME)"}, "resources": "cpu=1,memory=2Gi"},
        }
    )
    return build_notebook_plan(
        spec,
        workload_id=workload_id,
        uid=uid,
        namespace=NB_NS,
        addressing=addressing,
        python=PYTHON,
        extra_env={
            "JUPYTER_TOKEN": TOKEN,
            "SUBMARINE_SERVER_DNS_NAME": "broker",
            "SUBMARINE_SERVER_PORT": "8080",
        },
    )


def unit_plan(uid: str = uid_of(1), **kw: Any) -> LaunchPlan:
    """A plan addressed as the adapter addresses notebooks (its Service, Jupyter's port)."""
    addressing = StaticAddressing(lambda role, index: m.base_name(uid), lambda: nb.JUPYTER_PORT)
    return notebook_plan(addressing, uid, **kw)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# -- objects -----------------------------------------------------------------------------------


def test_statefulset_service_secret_and_claim_from_a_notebook_plan(shared_dir: Path) -> None:
    plan = unit_plan()
    made = nb.objects(plan, config(), origin="broker-a", api=nb.STATEFULSET)
    assert [(what, body["kind"]) for what, body in made] == [
        ("pvc", "PersistentVolumeClaim"),
        ("secret", "Secret"),
        ("svc", "Service"),
        ("sts", "StatefulSet"),
    ]
    claim, secret, service, sts = (body for _, body in made)
    base = "sb-01ffeeddccbb"
    assert [secret["metadata"]["name"], service["metadata"]["name"], sts["metadata"]["name"]] == [base] * 3
    ours = {
        m.LABEL_ORIGIN: "broker-a",
        m.LABEL_UID: uid_of(1),
        nb.LABEL_NOTEBOOK: WORKLOAD,
        m.LABEL_ROLE: "notebook",
    }
    for body in (secret, service, sts):
        assert body["metadata"]["labels"] == ours and body["metadata"]["namespace"] == NS
        assert body["metadata"]["annotations"][m.ANNOTATION_EXPERIMENT] == WORKLOAD
    # The claim outlives attempts: named after the notebook, no uid label.
    assert claim["metadata"]["name"] == "sb-ws-notebook-1700000000000-0001"
    assert claim["metadata"]["labels"] == {m.LABEL_ORIGIN: "broker-a", nb.LABEL_NOTEBOOK: WORKLOAD}
    assert claim["metadata"]["annotations"][nb.ANNOTATION_WORKDIR] == WORKLOAD
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
    # The token lives in the Secret only.
    assert base64.b64decode(secret["data"]["token"]).decode() == TOKEN
    assert (
        TOKEN not in json.dumps(sts) and TOKEN not in json.dumps(service) and TOKEN not in json.dumps(claim)
    )

    spec = sts["spec"]
    assert spec["replicas"] == 1 and spec["serviceName"] == base
    assert spec["selector"]["matchLabels"] == {m.LABEL_UID: uid_of(1)}
    assert spec["template"]["metadata"]["labels"] == ours
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always" and pod["securityContext"] == {"fsGroup": 100}
    assert pod["volumes"] == [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
    ]
    (container,) = pod["containers"]
    assert container["name"] == base and container["image"] == IMAGE
    assert container["command"] == [
        "python",  # the plan's: the image's interpreter
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=0.0.0.0",  # a pod cannot bind its Service's name
        "--port=8888",
        "--port-retries=0",
        f"--ServerApp.base_url=/notebook/{NB_NS}/lab/",  # the broker's prefix, unchanged
        "--ServerApp.root_dir=.",
    ]
    assert container["workingDir"] == "/home/jovyan"
    assert container["volumeMounts"] == [{"name": "workspace", "mountPath": "/home/jovyan"}]
    env = env_of(container)
    assert env["JUPYTER_TOKEN"] == {"secretKeyRef": {"name": base, "key": "token"}}
    assert env["NB_PREFIX"] == f"/notebook/{NB_NS}/lab"
    assert env["GREETING"] == "hello $$(HOME)"  # kept literal: Kubernetes would expand $(HOME)
    assert env["SUBMARINE_NOTEBOOK_ID"] == WORKLOAD and env["SUBMARINE_SERVER_DNS_NAME"] == "broker"
    assert container["ports"] == [{"name": "notebook-port", "containerPort": 8888, "protocol": "TCP"}]
    assert container["readinessProbe"]["tcpSocket"] == {"port": "notebook-port"}
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2048Mi"},
        "limits": {"cpu": "1", "memory": "2048Mi"},
    }
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {m.LABEL_UID: uid_of(1)},
        "ports": [{"name": f"http-{base}", "port": 80, "targetPort": 8888, "protocol": "TCP"}],
    }
    for _, body in made:
        assert validation.validate(body) == [], body["kind"]


def test_kubeflow_notebook_from_a_notebook_plan_against_the_patched_crd(shared_dir: Path) -> None:
    validation.configure(shared_dir / "schemas" / "kubernetes" / "kubeflow-training")
    plan = unit_plan()
    made = nb.objects(plan, config(), origin="broker-a", api=nb.KUBEFLOW)
    assert [(what, body["kind"]) for what, body in made] == [
        ("pvc", "PersistentVolumeClaim"),
        ("secret", "Secret"),
        ("cr", "Notebook"),
    ]
    notebook = made[2][1]
    assert notebook["apiVersion"] == "kubeflow.org/v1" and notebook["metadata"]["name"] == "sb-01ffeeddccbb"
    assert set(notebook["spec"]) == {"template"} and set(notebook["spec"]["template"]) == {"spec"}
    pod = notebook["spec"]["template"]["spec"]
    assert pod == nb.pod_spec(plan, config())
    # The controller fills status.containerState from the container named like the Notebook, and its
    # Service targets the first container's first port.
    assert pod["containers"][0]["name"] == notebook["metadata"]["name"]
    assert pod["containers"][0]["ports"][0]["containerPort"] == 8888
    assert TOKEN not in json.dumps(notebook)
    for _, body in made:
        assert validation.validate(body) == [], body["kind"]

    # The validation patch is applied: a container needs an image, and there must be one.
    broken = json.loads(json.dumps(notebook))
    del broken["spec"]["template"]["spec"]["containers"][0]["image"]
    assert any("'image' is a required property" in p for p in validation.validate(broken))
    broken["spec"]["template"]["spec"]["containers"] = []
    assert any("should be non-empty" in p or "too short" in p for p in validation.validate(broken))
    # Strict: the CRD's template has no metadata, and an unknown field is refused.
    broken = json.loads(json.dumps(notebook))
    broken["spec"]["template"]["metadata"] = {"labels": {"a": "b"}}
    broken["spec"]["extra"] = 1
    problems = validation.validate(broken)
    assert any("spec.template" in p and "metadata" in p for p in problems), problems
    assert any("extra" in p for p in problems), problems


def test_the_validator_refuses_broken_notebook_objects() -> None:
    plan = unit_plan()
    claim, secret, service, sts = (
        body for _, body in nb.objects(plan, config(), origin="o", api=nb.STATEFULSET)
    )
    bad = json.loads(json.dumps(sts))
    bad["spec"]["selector"]["matchLabels"] = {m.LABEL_UID: "someone-else"}
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    container = bad["spec"]["template"]["spec"]["containers"][0]
    container["env"][0]["valueFrom"] = {"secretKeyRef": {"name": "x", "key": "not a key!"}}
    container["volumeMounts"][0]["name"] = "missing"
    container["readinessProbe"] = {"tcpSocket": {"port": "notebook-port"}, "exec": {"command": ["true"]}}
    problems = "\n".join(validation.validate(bad))
    for expected in ("does not match template", "restartPolicy", "secretKeyRef.key", "volumeMounts[0].name",
                     "exactly 1 handler"):  # fmt: skip
        assert expected in problems, (expected, problems)
    del bad["spec"]["serviceName"]
    assert any("serviceName" in p for p in validation.validate(bad))
    assert any("base64" in p for p in validation.validate({**secret, "data": {"token": "%%%"}}))
    no_storage = json.loads(json.dumps(claim))
    no_storage["spec"] = {"accessModes": []}
    assert len(validation.validate(no_storage)) >= 2
    assert validation.validate(
        {**service, "spec": {**service["spec"], "ports": [{"port": 80, "targetPort": 0}]}}
    )


def test_image_mount_path_and_storage_options() -> None:
    plan = unit_plan(image=None)
    with pytest.raises(m.ManifestError, match="no image"):
        nb.objects(plan, config(), origin="o", api=nb.STATEFULSET)
    pod = nb.pod_spec(plan, config(image="site/notebook:1", notebook_mount_path="/work"))
    container = pod["containers"][0]
    assert container["image"] == "site/notebook:1" and container["workingDir"] == "/work"
    assert container["volumeMounts"][0]["mountPath"] == "/work"
    # No storage: an emptyDir, and no claim to create.
    made = nb.objects(unit_plan(), config(notebook_storage=None), origin="o", api=nb.STATEFULSET)
    assert [w for w, _ in made] == ["secret", "svc", "sts"]
    assert made[2][1]["spec"]["template"]["spec"]["volumes"] == [{"name": "workspace", "emptyDir": {}}]
    claim = nb.workspace_claim(
        unit_plan(), config(notebook_storage="50Gi", notebook_storage_class="fast-ssd"), origin="o"
    )
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    long_key = "notebook_" + "x" * 80
    name = nb.workspace_name(long_key)
    assert len(name) <= 63 and name != nb.workspace_name(long_key + "y")
    for bad in ({"notebook_endpoint": "http://{svc}/"}, {"notebook_endpoint": "ftp://x"},
                {"notebook_storage": "10GB"}, {"notebook_mount_path": "relative"}):  # fmt: skip
        with pytest.raises(ValueError):
            config(**bad)


def test_waiting_reasons_table_covers_the_kubelet() -> None:
    assert set(nb.WAITING_REASONS) == KUBELET_WAITING
    failing = {r for r, s in nb.WAITING_REASONS.items() if s.phase is Phase.FAILED}
    assert {
        "ImagePullBackOff",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
    } <= failing
    assert {"ContainerCreating", "ErrImagePull"}.isdisjoint(failing)  # the kubelet gets there, or retries
    assert {s.phase for s in nb.WAITING_REASONS.values()} == {Phase.PENDING, Phase.FAILED}
    assert {s.failure_category for s in nb.WAITING_REASONS.values() if s.phase is Phase.FAILED} == {
        "rejected",
        "exit_code",
    }


def test_notebook_state_readings() -> None:
    state = nb.notebook_state
    assert state(1, []).phase is Phase.RUNNING
    assert state(None, []) == nb.Reading(Phase.PENDING, None, "")
    crash = nb.container_state(
        {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}},
        {"terminated": {"exitCode": 2, "reason": "Error"}},
    )
    assert (crash.phase, crash.failure_category) == (Phase.FAILED, "exit_code")
    assert "last exit code 2" in crash.message
    assert state(0, [crash]).phase is Phase.FAILED
    assert state(1, [crash]).phase is Phase.RUNNING  # ready wins: it restarted and answers
    pull = nb.container_state(
        {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}}
    )
    assert (pull.phase, pull.failure_category) == (Phase.FAILED, "rejected")
    odd = nb.container_state({"waiting": {"reason": "SomethingNew"}})
    assert odd.phase is Phase.PENDING and odd.message == "SomethingNew"  # waiting is not running
    assert nb.container_state({"running": {"startedAt": "t"}}).phase is Phase.PENDING  # not ready yet
    assert nb.container_state({"terminated": {"exitCode": 0}}).phase is Phase.PENDING  # restarts: Always
    unschedulable = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 Insufficient cpu."}]}}  # fmt: skip
    seen = state(0, nb.pod_states(unschedulable))
    assert seen.phase is Phase.PENDING and seen.message.startswith("Unschedulable: 0/3 nodes")


# -- the adapter against the double -------------------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path, shared_dir: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    options = getattr(request, "param", {})
    double = KubeApiDouble(
        token=API_TOKEN, crd_dir=shared_dir / "schemas" / "kubernetes" / "kubeflow-training", **options
    )
    with serve_in_thread(double.app) as url:
        yield Cluster(double, url, tmp_path)
    assert double.refused == [], json.dumps(double.refused, indent=1)[:3000]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def submit(adapter: KubernetesAdapter, uid: str, **kw: Any) -> tuple[LaunchPlan, Handle]:
    plan = notebook_plan(adapter.addressing(uid), uid, **kw)
    return plan, run(adapter.submit(plan))


def names(double: KubeApiDouble, plural: str) -> list[str]:
    return [o["metadata"]["name"] for o in double.objects(plural, NS)]


def test_submit_makes_each_object_once_and_is_idempotent(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter()  # auto: this double does not serve notebooks → StatefulSet
    plan, handle = submit(adapter, uid_of(2))
    assert (plan.replicas[0].host, plan.replicas[0].port) == ("sb-02ffeeddccbb", 8888)
    assert handle.state == {
        "shape": "notebook",
        "api": "statefulset",
        "namespace": NS,
        "name": "sb-02ffeeddccbb",
        "service": "sb-02ffeeddccbb",
        "secret": "sb-02ffeeddccbb",
        "claim": "sb-ws-notebook-1700000000000-0001",
        "replicas": ["notebook-0"],
        "success_roles": ["Notebook"],
    }
    posts = d.requests_matching("POST", "/namespaces/")
    assert [p["path"].rsplit("/", 1)[1] for p in posts] == [
        "persistentvolumeclaims",
        "secrets",
        "services",
        "statefulsets",
    ]
    assert run(adapter.submit(plan)) == handle  # a retry adopts what the first made
    assert len(d.requests_matching("POST", "/namespaces/")) == 8  # one POST per object per submit
    for plural in ("persistentvolumeclaims", "secrets", "services", "statefulsets"):
        assert len(d.objects(plural, NS)) == 1, plural
    (sts,) = d.objects("statefulsets", NS)
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    assert env_of(container)["JUPYTER_TOKEN"] == {"secretKeyRef": {"name": "sb-02ffeeddccbb", "key": "token"}}
    for plural in ("statefulsets", "services", "persistentvolumeclaims"):
        assert TOKEN not in json.dumps(d.objects(plural, NS)), plural


def test_endpoint_is_none_until_ready_then_the_service_dns_name(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter()
    _, handle = submit(adapter, uid_of(3))
    assert run(adapter.endpoint(handle)) is None
    d.set_statefulset_ready(NS, "sb-03ffeeddccbb", ready=0)
    assert run(adapter.endpoint(handle)) is None
    d.set_statefulset_ready(NS, "sb-03ffeeddccbb")
    assert run(adapter.endpoint(handle)) == f"http://sb-03ffeeddccbb.{NS}.svc:80"
    # Outside the cluster: a template naming the route; {cluster_ip} reads the Service.
    outside = cluster.adapter(notebook_endpoint="http://{cluster_ip}:{port}/")
    cluster_ip = d.get("services", NS, "sb-03ffeeddccbb")["spec"]["clusterIP"]
    assert run(outside.endpoint(handle)) == f"http://{cluster_ip}:80"
    assert run(adapter.endpoint(Handle("x", {"shape": "job"}))) is None  # not a notebook
    d.remove("statefulsets", NS, "sb-03ffeeddccbb")
    assert run(adapter.endpoint(handle)) is None


def test_poll_reads_readiness_and_the_pods_waiting_reasons(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter()
    _, handle = submit(adapter, uid_of(4))
    name = "sb-04ffeeddccbb"
    uid = uid_of(4)

    def seen() -> Any:
        return run(adapter.poll([handle]))[uid]

    d.requests.clear()
    assert seen().phase is Phase.PENDING
    gets = sorted((r["path"], r["query"].get("labelSelector")) for r in d.requests if r["method"] == "GET")
    assert gets == [
        (f"/api/v1/namespaces/{NS}/pods", f"{m.LABEL_ORIGIN}=broker-a,{nb.LABEL_NOTEBOOK}"),
        (f"/apis/apps/v1/namespaces/{NS}/statefulsets", f"{m.LABEL_ORIGIN}=broker-a"),
    ]
    d.add_statefulset_pod(
        NS, ("statefulsets", name), container_state={"waiting": {"reason": "ContainerCreating"}}
    )
    pending = seen()
    assert (pending.phase, pending.message) == (Phase.PENDING, "ContainerCreating")
    d.patch_status("pods", NS, f"{name}-0", {"containerStatuses": [{"name": name, "ready": False, "restartCount": 0,
        "image": IMAGE, "imageID": "", "state": {"waiting": {"reason": "ImagePullBackOff",
                                                             "message": f'Back-off pulling image "{IMAGE}"'}}}]})  # fmt: skip
    failed = seen()
    assert (failed.phase, failed.failure_category) == (Phase.FAILED, "rejected")
    assert failed.message == f'replica notebook-0: ImagePullBackOff: Back-off pulling image "{IMAGE}"'
    # The pod is still there: the replica reads PENDING, so the broker stops what is left.
    assert [(r.name, r.phase) for r in failed.replicas] == [("notebook-0", Phase.PENDING)]
    d.set_statefulset_ready(NS, name)
    d.requests.clear()
    running = seen()
    assert running.phase is Phase.RUNNING and [r.phase for r in running.replicas] == [Phase.RUNNING]
    assert len(d.requests) == 1  # ready: no pod list
    d.set_statefulset_ready(NS, name, ready=0)
    d.patch_status("pods", NS, f"{name}-0", {"containerStatuses": [{"name": name, "ready": False, "restartCount": 4,
        "image": IMAGE, "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]})  # fmt: skip
    crashed = seen()
    assert (crashed.phase, crashed.failure_category) == (Phase.FAILED, "exit_code")
    assert "last exit code 1" in crashed.message
    d.remove("statefulsets", NS, name)
    assert seen().phase is Phase.NOT_FOUND


@pytest.mark.parametrize("cluster", [{"notebooks": True}], indirect=True)
def test_a_kubeflow_notebook_when_the_controller_is_served(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter()
    assert run(adapter.health()).reachable
    assert adapter.api.served == {"TFJob", "PyTorchJob", "XGBoostJob", "Notebook"}
    _, handle = submit(adapter, uid_of(5))
    name = "sb-05ffeeddccbb"
    assert handle.state["api"] == "kubeflow"
    assert names(d, "notebooks") == [name] and names(d, "secrets") == [name]
    assert names(d, "persistentvolumeclaims") == ["sb-ws-notebook-1700000000000-0001"]
    assert d.objects("statefulsets") == [] and d.objects("services") == []  # the controller's to make
    (cr,) = d.objects("notebooks", NS)
    assert (
        env_of(cr["spec"]["template"]["spec"]["containers"][0])["JUPYTER_TOKEN"]["secretKeyRef"]["name"]
        == name
    )
    assert TOKEN not in json.dumps(cr)

    uid = uid_of(5)
    assert run(adapter.poll([handle]))[uid].phase is Phase.PENDING
    assert run(adapter.endpoint(handle)) is None
    d.set_notebook_status(
        NS, name, ready=0, container_state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
    )
    assert run(adapter.poll([handle]))[uid].phase is Phase.FAILED  # from the controller's containerState
    d.set_notebook_status(NS, name, ready=1)
    assert run(adapter.poll([handle]))[uid].phase is Phase.RUNNING
    assert run(adapter.endpoint(handle)) == f"http://{name}.{NS}.svc:80"  # the controller's Service
    d.add_statefulset_pod(NS, ("notebooks", name), phase="Running", container_state={"running": {"startedAt": "t"}},
                          log_lines=["[I ServerApp] Jupyter Server is running at:"])  # fmt: skip
    logs = run(adapter.logs(handle))
    assert [(log.replica, log.lines) for log in logs] == [
        ("notebook-0", ["[I ServerApp] Jupyter Server is running at:"])
    ]
    owned = {h.uid: h for h in run(adapter.owned())}
    assert owned[uid].state["shape"] == "notebook" and owned[uid].state["api"] == "kubeflow"

    run(adapter.cancel(handle))
    assert d.objects("notebooks") == [] and d.objects("secrets") == [] and d.objects("pods") == []
    assert names(d, "persistentvolumeclaims") == ["sb-ws-notebook-1700000000000-0001"]
    assert {x["plural"]: x["propagationPolicy"] for x in d.deletions} == {
        "notebooks": "Foreground",
        "secrets": "Foreground",
    }
    # workload_api: job keeps to plain objects even where the controller is served.
    _, plain = submit(cluster.adapter(workload_api="job"), uid_of(6))
    assert plain.state["api"] == "statefulset" and names(d, "statefulsets") == ["sb-06ffeeddccbb"]


def test_cancel_keeps_the_claim_owned_finds_notebooks_and_a_new_attempt_adopts_the_claim(
    cluster: Cluster,
) -> None:
    d = cluster.double
    adapter = cluster.adapter()
    _, first = submit(adapter, uid_of(7))
    _, other = submit(adapter, uid_of(8), name="other", workload_id="notebook_1700000000000_0002")
    d.add_statefulset_pod(NS, ("statefulsets", "sb-07ffeeddccbb"), phase="Running",
                          container_state={"running": {"startedAt": "t"}}, log_lines=["hello from lab"])  # fmt: skip
    assert [(log.replica, log.lines) for log in run(adapter.logs(first))] == [
        ("notebook-0", ["hello from lab"])
    ]
    assert (
        d.requests_matching("GET", "/pods/sb-07ffeeddccbb-0/log")[0]["query"]["container"]
        == "sb-07ffeeddccbb"
    )

    owned = {h.uid: h for h in run(adapter.owned())}
    assert set(owned) == {uid_of(7), uid_of(8)}
    assert owned[uid_of(7)].state["shape"] == "notebook" and owned[uid_of(7)].state["api"] == "statefulset"
    assert owned[uid_of(7)].state["replicas"] == ["notebook-0"]
    run(adapter.cancel(owned[uid_of(7)]))  # what the orphan sweep does
    run(adapter.cancel(Handle(uid_of(8), {})))  # a handle without state: found by its uid label
    for plural in ("statefulsets", "services", "secrets", "pods"):
        assert d.objects(plural) == [], plural
    assert {x["propagationPolicy"] for x in d.deletions} == {"Foreground"}
    assert not any(x["plural"] == "persistentvolumeclaims" for x in d.deletions)
    claims = names(d, "persistentvolumeclaims")
    assert claims == ["sb-ws-notebook-1700000000000-0001", "sb-ws-notebook-1700000000000-0002"]
    assert run(adapter.owned()) == []  # claims are no attempt's
    run(adapter.cancel(first))  # gone already: fine

    # The notebook's next attempt mounts the same claim (adopted, not made again).
    _, again = submit(adapter, uid_of(9))
    assert again.state["claim"] == claims[0] and names(d, "persistentvolumeclaims") == claims
    assert d.objects("statefulsets", NS)[0]["spec"]["template"]["spec"]["volumes"][0][
        "persistentVolumeClaim"
    ] == {"claimName": claims[0]}
    # A claim of that name that is another notebook's (or another broker's) is not adopted; nothing is left.
    foreign = nb.workspace_claim(
        unit_plan(workload_id="notebook_1700000000000_0003"), config(), origin="broker-b"
    )
    d.put_object("persistentvolumeclaims", foreign)
    with pytest.raises(SubmitRejected, match="not ours"):
        submit(adapter, uid_of(10), workload_id="notebook_1700000000000_0003")
    assert names(d, "statefulsets") == ["sb-09ffeeddccbb"] and "sb-10ffeeddccbb" not in names(d, "secrets")

    # Deleting a notebook releases its claim; another installation's claim is never deleted.
    assert run(adapter.release("notebook_1700000000000_0002")) is True
    assert "sb-ws-notebook-1700000000000-0002" not in names(d, "persistentvolumeclaims")
    assert run(adapter.release("notebook_1700000000000_0002")) is True  # gone already: fine
    assert run(adapter.release("notebook_1700000000000_0003")) is False
    assert "sb-ws-notebook-1700000000000-0003" in names(d, "persistentvolumeclaims")
    assert d.refused == []


# -- end to end through a broker ---------------------------------------------------------------

FAST = {"dispatch_interval": 0.3, "monitor_interval": 0.3, "health_interval": 0.5}


def test_a_notebook_through_the_broker_runs_on_the_kubernetes_double(
    broker_factory, shared_dir: Path, tmp_path: Path
) -> None:
    double = KubeApiDouble(crd_dir=shared_dir / "schemas" / "kubernetes" / "kubeflow-training")
    double.set_node("node-1", cpu="8", memory="32Gi")
    name = "k8s-lab"
    # The Service's DNS name does not resolve here: the cluster's endpoint template points the broker at
    # a real Jupyter server on loopback instead, started with what the objects carry (token, base URL).
    jupyter = JupyterServer(tmp_path / "jupyter", base_url=f"/notebook/{NB_NS}/{name}/")
    with serve_in_thread(double.app) as url:
        kubeconfig = double.kubeconfig(tmp_path / "kubeconfig", url, namespace=NS)
        cluster = {"kind": "kubernetes", "kubeconfig": str(kubeconfig), "context": "double", "namespace": NS,
                   "notebook_endpoint": jupyter.origin}  # fmt: skip
        broker = broker_factory(clusters={"k8s": cluster}, loops=FAST,
                                notebooks={"check_interval": 0.3, "idle_timeout": 0})  # fmt: skip
        wait_for(lambda: broker.client.get("/cluster/k8s").json()["result"]["state"] == "Ready", timeout=90,
                 what="the Kubernetes cluster to be Ready")  # fmt: skip
        spec = {"meta": {"name": name, "namespace": NB_NS}, "environment": {"image": IMAGE},
                "spec": {"envVars": {"GREETING": "hello"}, "resources": "cpu=0.5,memory=1Gi"}}  # fmt: skip
        answer = broker.client.post("/notebook", json=spec)
        assert answer.status_code == 200, answer.text
        notebook_id = answer.json()["result"]["notebookId"]

        def status() -> dict[str, Any]:
            return broker.client.get(f"/notebook/{notebook_id}").json()["result"]

        sts = wait_for(lambda: double.objects("statefulsets", NS), timeout=20, what="the StatefulSet")[0]
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        base = sts["metadata"]["name"]
        assert sts["metadata"]["labels"][m.LABEL_UID] == status()["uid"]
        assert sts["metadata"]["labels"][nb.LABEL_NOTEBOOK] == m.label_value(notebook_id)
        assert sts["metadata"]["labels"][m.LABEL_ORIGIN] == "k8s"
        assert container["image"] == IMAGE and container["command"][:3] == [
            "python",
            "-m",
            container["command"][2],
        ]
        assert f"--ServerApp.base_url=/notebook/{NB_NS}/{name}/" in container["command"]
        env = env_of(container)
        assert (
            env["JUPYTER_TOKEN"] == {"secretKeyRef": {"name": base, "key": "token"}}
            and env["GREETING"] == "hello"
        )
        (secret,) = double.objects("secrets", NS)
        token = base64.b64decode(secret["data"]["token"]).decode()
        assert token and token not in json.dumps(double.objects("statefulsets", NS))
        assert names(double, "services") == [base]
        (claim,) = double.objects("persistentvolumeclaims", NS)
        assert claim["metadata"]["labels"][nb.LABEL_NOTEBOOK] == m.label_value(notebook_id)

        # Not ready: creating, and the proxy says so.
        assert status()["status"] == "creating"
        proxied = httpx.get(f"{broker.url}/notebook/{NB_NS}/{name}/api/status", timeout=10)
        assert proxied.status_code == 503 and "not running" in proxied.json()["message"]

        jupyter.token = token  # the server the pod would run: the token from the Secret
        with jupyter:
            double.set_statefulset_ready(NS, base)
            wait_for(lambda: status()["status"] == "running", timeout=30, what="the notebook to run")
            prefix = f"{broker.url}/notebook/{NB_NS}/{name}/"
            assert httpx.get(prefix + "api/status", timeout=10).status_code == 200
            kernel = httpx.post(prefix + "api/kernels", json={"name": "python3"}, timeout=30)
            assert kernel.status_code == 201, kernel.text
            ws = f"ws://127.0.0.1:{broker.port}/notebook/{NB_NS}/{name}/api/kernels/{kernel.json()['id']}/channels"
            assert asyncio.run(execute(ws, "1+1")) == "2"

            assert broker.client.delete(f"/notebook/{notebook_id}").status_code == 200
            for plural in ("statefulsets", "services", "secrets"):
                assert double.objects(plural, NS) == [], plural
            assert names(double, "persistentvolumeclaims") == []  # deleting the notebook frees its files
            assert {x["propagationPolicy"] for x in double.deletions} == {"Foreground"}
        assert len(double.requests_matching("POST", r"/statefulsets$")) == 1
    assert double.refused == [], double.refused
