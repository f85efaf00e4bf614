"""Served models on Kubernetes: the objects built from a serve plan (a KServe InferenceService, or a
Deployment + Service; the token Secret), validated as a real API server would (the InferenceService
CRD from ../shared/schemas/kubernetes/kserve plus KServe's webhook rules; kubernetes-validate for
core kinds), and the adapter against the API double: KServe discovered or not, status from the
InferenceService's conditions or the Deployment's available replicas, the endpoint, cancel, and
the orphan sweep."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusters.base import Handle, Phase
from clusters.errors import SubmitRejected
from clusters.kubernetes import manifests as m
from clusters.kubernetes import serving as sv
from clusters.kubernetes.adapter import KubernetesAdapter
from clusters.kubernetes.config import KubernetesClusterConfig
from runtimes.plan import Addressing, LaunchPlan, ModelPlan, StaticAddressing
from runtimes.serving import FETCH_TOKEN_ENV, TOKEN_ENV, ServeSpec, build_serve_plan
from tests.doubles import kube_validation as validation
from tests.doubles.kube_api import KubeApiDouble
from tests.support import serve_in_thread, wait_for
from tests.test_kube_adapter import Cluster  # same namespace (team-a) and origin

NS = "team-a"
API_TOKEN = "api-token-for-the-double"
SERVER_TOKEN = "serve-token-5b1e9c0d7a"
FETCH_TOKEN = "fetch-token-3c8f2a6e91"
WORKLOAD = "serve_1700000000000_0001"
IMAGE = "registry.example.com/model-server:1.0"
FILES = "http://broker.example:8080/api/2.0/mlflow-artifacts/artifacts/registry/iris/3"
MODEL = ModelPlan(name="iris", version=3, model_key="iris", files_url=FILES)


def uid_of(n: int) -> str:
    return f"{n:02d}ffeeddccbbaa00112233445566778899"[:32]


def config(**fields: Any) -> KubernetesClusterConfig:
    return KubernetesClusterConfig(name="k1", in_cluster=True, namespace=NS, origin="broker-a", **fields)


def serve_plan(
    addressing: Addressing, uid: str, *, replicas: int = 2, image: str | None = IMAGE
) -> LaunchPlan:
    spec = ServeSpec.model_validate(
        {
            "modelName": "iris",
            "modelVersion": 3,
            "replicas": replicas,
            "resources": "cpu=1,memory=1Gi",
            "environment": {"image": image} if image else {},
            "envVars": {"GREETING": "hello $(HOME)"},
        }
    )
    return build_serve_plan(
        spec,
        MODEL,
        workload_id=WORKLOAD,
        uid=uid,
        namespace="vision",
        addressing=addressing,
        python="python",
        server_token=SERVER_TOKEN,
        fetch_token=FETCH_TOKEN,
    )


def unit_plan(uid: str = uid_of(1), **kw: Any) -> LaunchPlan:
    addressing = StaticAddressing(lambda role, index: m.base_name(uid), lambda: m.REPLICA_PORT)
    return serve_plan(addressing, uid, **kw)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.fixture
def kserve_crds(shared_dir: Path) -> Path:
    validation.configure(shared_dir / "schemas" / "kubernetes" / "kubeflow-training")
    return shared_dir / "schemas" / "kubernetes" / "kserve"


# -- objects -----------------------------------------------------------------------------------


def test_an_inference_service_and_its_secret_from_a_serve_plan(kserve_crds: Path) -> None:
    plan = unit_plan()
    made = sv.objects(plan, config(), origin="broker-a", api=sv.KSERVE)
    assert [(what, body["kind"]) for what, body in made] == [("secret", "Secret"), ("cr", "InferenceService")]
    secret, isvc = (body for _, body in made)
    base = "sb-01ffeeddccbb"
    assert secret["metadata"]["name"] == isvc["metadata"]["name"] == base
    ours = {
        m.LABEL_ORIGIN: "broker-a",
        m.LABEL_UID: uid_of(1),
        sv.LABEL_SERVE: WORKLOAD,
        m.LABEL_ROLE: "server",
    }
    assert isvc["metadata"]["labels"] == ours == secret["metadata"]["labels"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    notes = isvc["metadata"]["annotations"]
    assert notes[sv.DEPLOYMENT_MODE] == "RawDeployment" and notes[sv.ANNOTATION_MODEL] == FILES
    assert notes[m.ANNOTATION_REPLICAS] == "server-0,server-1"
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] == predictor["maxReplicas"] == 2
    assert predictor["labels"] == ours  # KServe puts them on the predictor's pods
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "mlflow"}
    assert "storageUri" not in model  # the server fetches the files itself (see clusters.kubernetes.serving)
    assert model["image"] == IMAGE
    assert model["command"] == ["python"]
    assert model["args"] == [
        "-m", "runtimes.model_server", "--host", "0.0.0.0", "--port", "23456", "--model-uri", FILES
    ]  # fmt: skip
    env = env_of(model)
    assert env[TOKEN_ENV] == {"secretKeyRef": {"name": base, "key": "serve-token"}}
    assert env[FETCH_TOKEN_ENV] == {"secretKeyRef": {"name": base, "key": "fetch-token"}}
    assert env["GREETING"] == "hello $$(HOME)" and env["SUBMARINE_MODEL_NAME"] == "iris"
    assert "SUBMARINE_REPLICA_INDEX" not in env  # identical pods have no index
    assert model["ports"] == [{"name": "http", "containerPort": 23456, "protocol": "TCP"}]
    assert model["readinessProbe"]["httpGet"] == {"path": "/ping", "port": 23456}
    assert model["resources"]["limits"] == {"cpu": "1", "memory": "1024Mi"}
    # The tokens live in the Secret only.
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"serve-token": SERVER_TOKEN, "fetch-token": FETCH_TOKEN}
    assert SERVER_TOKEN not in json.dumps(isvc) and FETCH_TOKEN not in json.dumps(isvc)
    for _, body in made:
        assert validation.validate(body) == [], body["kind"]


def test_a_deployment_and_service_from_a_serve_plan(kserve_crds: Path) -> None:
    plan = unit_plan(replicas=3)
    made = sv.objects(plan, config(), origin="broker-a", api=sv.DEPLOYMENT)
    assert [(what, body["kind"]) for what, body in made] == [
        ("secret", "Secret"),
        ("svc", "Service"),
        ("deploy", "Deployment"),
    ]
    _, service, deployment = (body for _, body in made)
    base = "sb-01ffeeddccbb"
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {m.LABEL_UID: uid_of(1)},
        "ports": [{"name": "http", "port": 80, "targetPort": 23456, "protocol": "TCP"}],
    }
    spec = deployment["spec"]
    assert spec["replicas"] == 3 and spec["selector"]["matchLabels"] == {m.LABEL_UID: uid_of(1)}
    (container,) = spec["template"]["spec"]["containers"]
    assert container["name"] == base and container["command"] == ["python"]
    assert "--model-uri" in container["args"] and "0.0.0.0" in container["args"]
    assert env_of(container)[TOKEN_ENV] == {"secretKeyRef": {"name": base, "key": "serve-token"}}
    assert SERVER_TOKEN not in json.dumps(deployment) and SERVER_TOKEN not in json.dumps(service)
    for _, body in made:
        assert validation.validate(body) == [], body["kind"]


def test_the_validator_refuses_broken_inference_services(kserve_crds: Path) -> None:
    isvc = sv.inference_service(unit_plan(), config(), origin="broker-a")

    def problems(change: Any) -> list[str]:
        body = json.loads(json.dumps(isvc))
        change(body)
        return validation.validate(body)

    assert any(
        "modelFormat" in p for p in problems(lambda b: b["spec"]["predictor"]["model"].pop("modelFormat"))
    )
    assert any("unknownField" in p for p in problems(lambda b: b["spec"]["predictor"].update(unknownField=1)))
    assert any(
        "storage URI format is invalid" in p
        for p in problems(lambda b: b["spec"]["predictor"]["model"].update(storageUri="mlflow-artifacts:/x"))
    )
    assert any(
        "exactly one of" in p
        for p in problems(lambda b: b["spec"]["predictor"].update(sklearn={"storageUri": "s3://b/m"}))
    )
    assert any(
        "MinReplicas cannot be greater" in p
        for p in problems(lambda b: b["spec"]["predictor"].update(minReplicas=3, maxReplicas=2))
    )
    assert any("DNS-1035" in p for p in problems(lambda b: b["metadata"].update(name="1-isvc")))
    assert any(  # the pod rules apply to the predictor's container
        "env" in p
        for p in problems(
            lambda b: b["spec"]["predictor"]["model"]["env"].append({"name": "1 bad", "value": "x"})
        )
    )
    assert validation.validate({**isvc, "apiVersion": "serving.kserve.io/v1alpha1"})
    deployment = sv.deployment(unit_plan(), config(), origin="broker-a")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["selector"]["matchLabels"] = {"other": "x"}
    assert any("does not match" in p for p in validation.validate(broken))


def test_a_serve_plan_without_an_image_is_refused(kserve_crds: Path) -> None:
    with pytest.raises(m.ManifestError, match="no image"):
        sv.objects(unit_plan(image=None), config(), origin="broker-a", api=sv.KSERVE)


def test_state_from_the_inference_service_conditions() -> None:
    def isvc(*conditions: tuple[str, str, str], transition: str | None = None) -> dict[str, Any]:
        status: dict[str, Any] = {
            "conditions": [
                {"type": t, "status": s, "reason": r, "message": f"{t} says {r}"} for t, s, r in conditions
            ]
        }
        if transition:
            status["modelStatus"] = {
                "transitionStatus": transition,
                "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no MLmodel"},
            }
        return {"status": status}

    assert sv.isvc_state({}, []).phase is Phase.PENDING  # no status yet
    ready = sv.isvc_state(isvc(("PredictorReady", "True", "x"), ("Ready", "True", "x")), [])
    assert ready.phase is Phase.RUNNING
    waiting = sv.isvc_state(
        isvc(("PredictorReady", "False", "MinimumReplicasUnavailable"), ("Ready", "False", "x")), []
    )
    assert waiting.phase is Phase.PENDING
    assert waiting.message == "MinimumReplicasUnavailable: PredictorReady says MinimumReplicasUnavailable"
    failed = sv.isvc_state(isvc(("Ready", "False", "x"), transition="BlockedByFailedLoad"), [])
    assert failed.phase is Phase.FAILED and failed.failure_category == "rejected"
    assert failed.message == "BlockedByFailedLoad: ModelLoadFailed: no MLmodel"
    from clusters.kubernetes import notebooks as nb

    pulled = nb.Reading(Phase.FAILED, "rejected", "ImagePullBackOff: back-off pulling image")
    assert sv.isvc_state(isvc(("Ready", "False", "x")), [pulled]) == pulled
    assert sv.deployment_state({"status": {"availableReplicas": 1}}, []).phase is Phase.RUNNING
    assert sv.deployment_state({"status": {}}, [pulled]) == pulled


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
    plan = serve_plan(adapter.addressing(uid), uid, **kw)
    return plan, run(adapter.submit(plan))


@pytest.mark.parametrize("cluster", [{"kserve": True}], indirect=True)
def test_an_inference_service_when_kserve_is_served(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter()
    plan, handle = submit(adapter, uid_of(2))
    base = "sb-02ffeeddccbb"
    assert (plan.replicas[1].host, plan.replicas[1].port) == (base, m.REPLICA_PORT)
    assert handle.state["shape"] == "serve" and handle.state["api"] == "kserve"
    assert handle.state["replicas"] == ["server-0", "server-1"]
    posts = d.requests_matching("POST", "/namespaces/")
    assert [p["path"] for p in posts] == [
        f"/api/v1/namespaces/{NS}/secrets",
        f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices",
    ]
    assert [o["kind"] for o in d.created] == ["Secret", "InferenceService"]  # validated by the double
    assert d.objects("deployments", NS) == [] and d.objects("services", NS) == []
    assert run(adapter.submit(plan)) == handle  # a retry adopts what the first made
    assert len(d.objects("inferenceservices", NS)) == 1

    # Status from the conditions; the endpoint once Ready.
    seen = run(adapter.poll([handle]))[handle.uid]
    assert seen.phase is Phase.PENDING
    assert run(adapter.endpoint(handle)) is None
    d.set_inference_service_status(NS, base, ready=False, reason="MinimumReplicasUnavailable",
                                   message="Deployment does not have minimum availability.")  # fmt: skip
    seen = run(adapter.poll([handle]))[handle.uid]
    assert seen.phase is Phase.PENDING
    assert seen.message == "MinimumReplicasUnavailable: Deployment does not have minimum availability."
    d.set_inference_service_status(NS, base, ready=True)
    seen = run(adapter.poll([handle]))[handle.uid]
    assert seen.phase is Phase.RUNNING
    assert [(r.name, r.phase) for r in seen.replicas] == [
        ("server-0", Phase.RUNNING),
        ("server-1", Phase.RUNNING),
    ]
    url = f"http://{base}-predictor.{NS}.svc.cluster.local"
    assert run(adapter.endpoint(handle)) == url
    assert run(adapter.endpoints(handle)) == {"server-0": url}

    # The orphan sweep finds it; cancel deletes the InferenceService and the Secret.
    (found,) = run(adapter.owned())
    assert found.uid == handle.uid and found.state["api"] == "kserve" and found.state["shape"] == "serve"
    run(adapter.cancel(handle))
    assert d.objects("inferenceservices", NS) == [] and d.objects("secrets", NS) == []
    assert [(x["kind"], x["propagationPolicy"]) for x in d.deletions] == [
        ("InferenceService", "Foreground"),
        ("Secret", "Foreground"),
    ]
    assert run(adapter.poll([handle]))[handle.uid].phase is Phase.NOT_FOUND


def test_a_deployment_and_service_without_kserve(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter()  # auto: this double serves no KServe
    plan, handle = submit(adapter, uid_of(3), replicas=2)
    base = "sb-03ffeeddccbb"
    assert handle.state["api"] == "deployment"
    assert [o["kind"] for o in d.created] == ["Secret", "Service", "Deployment"]
    (deployment,) = d.objects("deployments", NS)
    assert deployment["spec"]["replicas"] == 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] + container["args"] == [
        "python", "-m", "runtimes.model_server", "--host", "0.0.0.0", "--port", "23456", "--model-uri", FILES
    ]  # fmt: skip
    for plural in ("deployments", "services"):
        assert SERVER_TOKEN not in json.dumps(d.objects(plural, NS)), plural

    assert run(adapter.poll([handle]))[handle.uid].phase is Phase.PENDING
    assert run(adapter.endpoint(handle)) is None
    # A pod that cannot pull its image fails the serve, with the kubelet's reason.
    d.add_pod(
        NS, f"{base}-7d9f-abcde", labels=deployment["spec"]["template"]["metadata"]["labels"], phase="Pending"
    )
    d.patch_status("pods", NS, f"{base}-7d9f-abcde", {"containerStatuses": [{
        "name": base, "image": IMAGE, "imageID": "", "ready": False, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]})  # fmt: skip
    seen = run(adapter.poll([handle]))[handle.uid]
    assert seen.phase is Phase.FAILED and seen.failure_category == "rejected"
    assert seen.message == "ImagePullBackOff: Back-off pulling image"
    d.remove("pods", NS, f"{base}-7d9f-abcde")
    d.set_deployment_available(NS, base, available=1)
    assert run(adapter.poll([handle]))[handle.uid].phase is Phase.RUNNING
    assert run(adapter.endpoint(handle)) == f"http://{base}.{NS}.svc:80"
    outside = cluster.adapter(serve_endpoint="http://{cluster_ip}:{port}/")
    cluster_ip = d.get("services", NS, base)["spec"]["clusterIP"]
    assert run(outside.endpoint(handle)) == f"http://{cluster_ip}:80"

    (found,) = run(adapter.owned())
    assert found.uid == handle.uid and found.state["api"] == "deployment"
    run(adapter.cancel(handle))
    for plural in ("deployments", "services", "secrets"):
        assert d.objects(plural, NS) == [], plural
    assert run(adapter.poll([handle]))[handle.uid].phase is Phase.NOT_FOUND


@pytest.mark.parametrize("cluster", [{"kserve": True}], indirect=True)
def test_serve_api_deployment_overrides_discovery_and_refusals_leave_nothing(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter(serve_api="deployment")
    _, handle = submit(adapter, uid_of(4))
    assert handle.state["api"] == "deployment" and d.objects("inferenceservices", NS) == []
    run(adapter.cancel(handle))
    # The API server refuses the InferenceService: the Secret made before it is deleted again.
    d.fail("POST", "/inferenceservices$", 422)
    with pytest.raises(SubmitRejected, match="refused InferenceService sb-05ffeeddccbb"):
        submit(cluster.adapter(), uid_of(5))
    assert d.objects("secrets", NS) == [] and d.objects("inferenceservices", NS) == []


# -- through a real broker ----------------------------------------------------------------------


def test_a_registered_version_served_through_the_broker_on_kserve(
    broker_factory: Any, shared_dir: Path
) -> None:
    """``POST /api/v1/serve`` places the serve on the only cluster (the double, serving KServe): an
    InferenceService running the broker's model server on the version's files; its conditions
    drive the serve's status; ``DELETE`` removes it."""
    from tests.test_kube_e2e import FAST
    from tests.test_serving import register_sklearn

    double = KubeApiDouble(crd_dir=shared_dir / "schemas" / "kubernetes" / "kubeflow-training", kserve=True)
    double.set_node("node-1", cpu="8", memory="32Gi")
    with serve_in_thread(double.app) as url:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            path = double.kubeconfig(Path(folder) / "kubeconfig", url, namespace=NS)
            cluster = {"kind": "kubernetes", "kubeconfig": str(path), "namespace": NS, "image": IMAGE}
            broker = broker_factory(clusters={"k8s": cluster}, loops=FAST)
            client = broker.client
            wait_for(
                lambda: client.get("/cluster/k8s").json()["result"]["state"] == "Ready",
                timeout=90,
                what="the Kubernetes cluster to be Ready",
            )
            register_sklearn(broker.url, "", "iris")
            created = client.post("/serve", json={"modelName": "iris", "modelVersion": 1})
            assert created.status_code == 200, created.text
            serve = created.json()["result"]
            wait_for(lambda: double.objects("inferenceservices", NS), timeout=60, what="the InferenceService")
            (isvc,) = double.objects("inferenceservices", NS)
            model = isvc["spec"]["predictor"]["model"]
            assert model["modelFormat"] == {"name": "mlflow"} and model["image"] == IMAGE
            argv = model["command"] + model["args"]
            assert argv[1:3] == ["-m", "runtimes.model_server"]
            files = argv[argv.index("--model-uri") + 1]
            assert files.startswith("http") and files.endswith(
                "/api/2.0/mlflow-artifacts/artifacts/registry/1/1"
            )
            assert isvc["metadata"]["labels"][sv.LABEL_SERVE] == serve["id"]

            def status() -> str:
                return str(client.get(f"/serve/{serve['id']}").json()["result"]["status"])

            name = isvc["metadata"]["name"]
            double.set_inference_service_status(NS, name, ready=True)
            wait_for(lambda: status() == "Running", timeout=60, what="the serve to run")
            deleted = client.delete(f"/serve/{serve['id']}")
            assert deleted.status_code == 200, deleted.text
            wait_for(lambda: not double.objects("inferenceservices", NS), timeout=60, what="the delete")
            assert double.objects("secrets", NS) == []
    assert double.refused == [], json.dumps(double.refused, indent=1)[:3000]


def test_logs_of_a_served_models_replicas(cluster: Cluster) -> None:
    d = cluster.double
    adapter = cluster.adapter()
    _, handle = submit(adapter, uid_of(6), replicas=2)
    base = "sb-06ffeeddccbb"
    (deployment,) = d.objects("deployments", NS)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for suffix, line in (("aaaaa", "first pod"), ("bbbbb", "second pod")):
        d.add_pod(NS, f"{base}-5f7c-{suffix}", labels=labels, container=base, log_lines=[line])
    logs = run(adapter.logs(handle))
    assert [(log.replica, log.lines) for log in logs] == [
        ("server-0", ["first pod"]),
        ("server-1", ["second pod"]),
    ]
    (one,) = run(adapter.logs(handle, "server-1"))
    assert one.lines == ["second pod"]
