"""Image registries of broker.yaml: which registry an image comes from, the allowed-registries check at
submit (a 400 naming the image and the allowed registries), the credentials a plan carries, and,
through a real broker driving the Kubernetes API double, the pull Secret kept in the namespace while
the password appears in no response and no line of the broker's log."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from broker.config.models import BrokerConfig, RegistryConfig
from broker.errors import BadRequest
from broker.images import ImageRegistries
from runtimes.environment import EnvironmentPlan
from runtimes.frameworks import build_plan
from runtimes.images import image_host
from runtimes.plan import StaticAddressing
from runtimes.spec import ExperimentSpec
from tests.doubles.kube_api import KubeApiDouble
from tests.support import python_spec, serve_in_thread, wait_for

CORP = RegistryConfig(
    name="corp", url="registry.corp.example:5000/ml", username_env="REG_U", password_env="REG_P"
)
HUB = RegistryConfig(name="hub", url="docker.io/myorg")
PASSWORD = "reg-pa55word-7f3c9e1d"
ENVIRON = {"REG_U": "puller", "REG_P": PASSWORD}


def registries(only: bool = True, environ: dict[str, str] | None = None) -> ImageRegistries:
    return ImageRegistries([CORP, HUB], only=only, environ=ENVIRON if environ is None else environ)


def test_which_registry_an_image_comes_from() -> None:
    images = registries()
    assert images.match("registry.corp.example:5000/ml/torch:2") == (
        CORP,
        "registry.corp.example:5000/ml/torch:2",
    )
    assert images.match("corp/torch:2") == (CORP, "registry.corp.example:5000/ml/torch:2")  # the shorthand
    assert images.match("myorg/tool:1") == (HUB, "myorg/tool:1")  # Docker Hub, written short
    assert images.match("docker.io/myorg/tool:1") == (HUB, "docker.io/myorg/tool:1")
    assert images.match("registry.corp.example:5000/other/x:1") is None  # outside the prefix
    assert images.match("registry.corp.example:5000/mlx/x:1") is None
    assert images.match("python:3.11") is None and images.match("otherorg/x") is None
    assert image_host("localhost/x") == "localhost" and image_host("a/b") == "docker.io"


def test_refusals_name_the_image_and_the_allowed_registries() -> None:
    images = registries()
    reason = images.problem("python:3.11") or ""
    assert "python:3.11" in reason
    assert "corp (registry.corp.example:5000/ml)" in reason and "hub (docker.io/myorg)" in reason
    assert images.problem("corp/torch:2") is None
    assert registries(only=False).problem("python:3.11") is None
    spec = ExperimentSpec.model_validate(
        {
            "meta": {"name": "x", "framework": "tensorflow", "cmd": "python a.py"},
            "environment": {"image": "evil.example/miner:1"},
            "spec": {"Worker": {"replicas": 1, "image": "corp/ok:1"}, "Ps": {"image": "python:3"}},
        }
    )
    with pytest.raises(BadRequest) as refused:
        images.check_spec(spec, "experiment")
    assert refused.value.code == 400
    fields = {p.field: p.problem for p in refused.value.problems}
    assert set(fields) == {"environment.image", "spec.Ps.image"}
    assert "evil.example/miner:1" in fields["environment.image"] and "python:3" in fields["spec.Ps.image"]


def test_a_plan_gets_its_registrys_credentials_and_the_shorthand_resolved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = ExperimentSpec.model_validate(
        {
            "meta": {"name": "x", "framework": "python", "cmd": "python a.py"},
            "environment": {"image": "corp/train:1"},
            "spec": {"Worker": {"replicas": 1}},
        }
    )
    plan = build_plan(
        spec,
        workload_id="e-1",
        uid="u1",
        namespace="ns",
        addressing=StaticAddressing(lambda r, i: "h", lambda: 1),
    )
    env = EnvironmentPlan.of("t", image="corp/base:2", pip=["six"])
    plan = plan.model_copy(update={"environment": env})
    made = registries().for_plan(plan)
    assert made.image == "registry.corp.example:5000/ml/train:1"
    assert made.environment is not None and made.environment.image == "registry.corp.example:5000/ml/base:2"
    assert made.environment.hash == env.hash  # the identity stays the submitted one
    auth = made.registry_auth["corp"]
    assert auth.server == "registry.corp.example:5000" and auth.username == "puller"
    assert auth.password.get_secret_value() == PASSWORD
    assert PASSWORD not in made.model_dump_json() and PASSWORD not in repr(made)
    # A public registry, or credentials missing from the environment: no auth, a warning by name.
    with caplog.at_level(logging.WARNING, logger="broker.images"):
        bare = registries(environ={"REG_U": "puller"}).for_plan(plan)
    assert bare.registry_auth == {} and bare.image == made.image
    assert "REG_P is not set" in caplog.text
    assert (
        registries()
        .for_plan(plan.model_copy(update={"image": "myorg/t:1", "environment": None}))
        .registry_auth
        == {}
    )


def test_the_config_takes_no_credentials_and_checks_its_registries(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not read from broker.yaml"):
        BrokerConfig.model_validate({"registries": [{"name": "a", "url": "r.example", "password": "x"}]})
    with pytest.raises(ValidationError, match="without a scheme"):
        BrokerConfig.model_validate({"registries": [{"name": "a", "url": "https://r.example"}]})
    with pytest.raises(ValidationError, match="both username_env and password_env"):
        BrokerConfig.model_validate({"registries": [{"name": "a", "url": "r.example", "username_env": "U"}]})
    with pytest.raises(ValidationError, match="given twice"):
        BrokerConfig.model_validate(
            {"registries": [{"name": "a", "url": "r.example"}, {"name": "a", "url": "s.x"}]}
        )
    with pytest.raises(ValidationError, match="needs at least one"):
        BrokerConfig.model_validate({"registries_only": True})
    config = BrokerConfig.model_validate({"registries": [{"name": "a", "url": "r.example:5000/p/"}]})
    assert config.registries[0].url == "r.example:5000/p"


# -- through a real broker -----------------------------------------------------------------------

NS = "ml"
FAST = {"dispatch_interval": 0.3, "monitor_interval": 0.3, "health_interval": 0.5}


@pytest.fixture
def kube(shared_dir: Path, tmp_path: Path) -> Iterator[tuple[KubeApiDouble, Path]]:
    double = KubeApiDouble(crd_dir=shared_dir / "schemas" / "kubernetes" / "kubeflow-training")
    double.set_node("node-1", cpu="8", memory="32Gi")
    with serve_in_thread(double.app) as url:
        config = tmp_path / "kubeconfig"
        double.kubeconfig(config, url, namespace=NS)
        yield double, config
    assert double.refused == [], f"the adapter sent objects a real API server would refuse: {double.refused}"


def _spec(image: str, worker_image: str | None = None) -> dict[str, Any]:
    spec = python_spec("print('x')", framework="pytorch", roles={"Master": {"replicas": 1}})
    spec["environment"] = {"image": image}
    if worker_image:
        spec["spec"]["Master"]["image"] = worker_image
    return spec


def test_a_broker_refuses_other_registries_and_keeps_the_pull_secret_without_showing_it(
    broker_factory: Any, kube: tuple[KubeApiDouble, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    double, kubeconfig = kube
    monkeypatch.setenv("SB_TEST_REG_USER", "puller")
    monkeypatch.setenv("SB_TEST_REG_PASS", PASSWORD)
    cluster = {"kind": "kubernetes", "kubeconfig": str(kubeconfig), "context": "double", "namespace": NS}
    broker = broker_factory(
        clusters={"k8s": cluster},
        loops=FAST,
        registries=[
            {
                "name": "corp",
                "url": "registry.corp.example:5000/ml",
                "username_env": "SB_TEST_REG_USER",
                "password_env": "SB_TEST_REG_PASS",
            }
        ],
        registries_only=True,
    )
    wait_for(
        lambda: broker.client.get("/cluster/k8s").json()["result"]["state"] == "Ready",
        timeout=90,
        what="the Kubernetes cluster to be Ready",
    )
    refused = broker.client.post("/experiment", json=_spec("python:3.11"))
    assert refused.status_code == 400, refused.text
    message = refused.json()["message"]
    assert "environment.image" in message and "'python:3.11'" in message
    assert "allowed: corp (registry.corp.example:5000/ml)" in message
    other = broker.client.post("/experiment", json=_spec("corp/train:1", worker_image="quay.io/x/y:1"))
    assert other.status_code == 400 and "spec.Master.image" in other.json()["message"]

    notebook = broker.client.post(
        "/notebook",
        json={
            "meta": {"name": "nb", "namespace": "default"},
            "environment": {"dockerImage": "jupyter/base:1"},
            "spec": {"resources": "cpu=0.2,memory=256Mi"},
        },
    )
    assert notebook.status_code == 400 and "environment.dockerImage" in notebook.json()["message"]
    assert "'jupyter/base:1'" in notebook.json()["message"]
    made = broker.client.post("/environment", json={"name": "outside", "dockerImage": "quay.io/x/y:1"})
    assert made.status_code == 200, made.text
    named = _spec("corp/train:1")
    named["environment"] = {"name": "outside"}
    by_name = broker.client.post("/experiment", json=named)
    assert by_name.status_code == 400, by_name.text
    assert "environment.name" in by_name.json()["message"] and "'quay.io/x/y:1'" in by_name.json()["message"]

    exp = broker.submit(_spec("corp/train:1"))["experimentId"]
    broker.wait_status(exp, "Created")
    [job] = double.objects("pytorchjobs", NS)
    pod = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.corp.example:5000/ml/train:1"
    assert pod["imagePullSecrets"] == [{"name": "sb-registry-corp"}]
    secret = double.get("secrets", NS, "sb-registry-corp")
    assert secret is not None and secret["type"] == "kubernetes.io/dockerconfigjson"
    auths = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
    assert auths["registry.corp.example:5000"]["password"] == PASSWORD

    seen = [
        broker.client.get(f"/experiment/{exp}").text,
        broker.client.get("/experiment").text,
        broker.client.get(f"/experiment/{exp}/events").text,
        broker.client.get(f"/experiment/logs/{exp}").text,
        broker.client.get("/cluster/k8s").text,
        broker.client.get("/cluster").text,
        refused.text,
        other.text,
        by_name.text,
    ]
    for text in seen:
        assert PASSWORD not in text
        assert base64.b64encode(f"puller:{PASSWORD}".encode()).decode() not in text
    broker.stop()
    log = broker.log()
    assert "sb-registry-corp" in json.dumps(double.created) and log  # the broker did run and log
    assert PASSWORD not in log


def test_placement_explain_shows_what_each_kind_cannot_install(
    broker_factory: Any, kube: tuple[KubeApiDouble, Path]
) -> None:
    """Adapters' environment refusals (Kubernetes with allow_installs: false, conda anywhere on
    Kubernetes) are placement filters with their reasons, and a 422 when no cluster can apply them."""
    _, kubeconfig = kube
    base = {"kind": "kubernetes", "kubeconfig": str(kubeconfig), "context": "double", "namespace": NS}
    broker = broker_factory(
        clusters={"closed": {**base, "allow_installs": False}, "open": base},
        loops={**FAST, "dispatch_paused": True},
    )
    for name in ("closed", "open"):
        wait_for(
            lambda name=name: broker.client.get(f"/cluster/{name}").json()["result"]["state"] == "Ready",
            timeout=90,
            what=f"cluster {name} to be Ready",
        )
    spec = _spec("python:3.11")
    spec["environment"]["kernelSpec"] = {"name": "k", "pipDependencies": ["six"]}
    decision = broker.client.post("/placement/explain", json=spec).json()["result"]
    assert decision["chosen"] == "open"
    closed = next(v for v in decision["verdicts"] if v["cluster"] == "closed")
    environment = next(f for f in closed["filters"] if f["name"] == "environment")
    assert environment["passed"] is False and "allow_installs: false" in environment["reason"]

    spec["environment"]["kernelSpec"] = {"name": "k", "condaDependencies": ["numpy"]}
    refused = broker.client.post("/experiment", json=spec)
    assert refused.status_code == 422, refused.text
    message = refused.json()["message"]
    assert "closed:" in message and "open:" in message and "cannot install conda dependencies" in message
