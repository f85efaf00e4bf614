"""Environments and registry credentials on YARN: the image as the DOCKER artifact, the Docker client
config of the broker's registries, and what YARN cannot install; every service body checked against
the Services API swagger file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from clusters.yarn import service_spec as spec
from clusters.yarn.adapter import YarnAdapter
from clusters.yarn.config import YarnClusterConfig
from runtimes.environment import EnvironmentPlan
from runtimes.frameworks import build_plan
from runtimes.images import RegistryAuth
from runtimes.plan import LaunchPlan
from runtimes.spec import ExperimentSpec
from tests.doubles import yarn_validation

UID = "0123456789abcdef0123456789abcdef"
CLIENT_CONFIG = "hdfs:///user/yarn/docker/config.json"
TORCH = EnvironmentPlan.of("torch-2", revision=2, image="registry.corp.example:5000/ml/torch:2", pip=["six"])
AUTH = {
    "corp": RegistryAuth(
        registry="corp", server="registry.corp.example:5000", username="u", password=SecretStr("pw-0123456")
    )
}


@pytest.fixture(autouse=True)
def _schema(yarn_schema_dir: Path) -> None:
    """Every body built here is checked against the swagger file."""


def config(**fields: Any) -> YarnClusterConfig:
    base = {"name": "yc", "rm_url": "http://rm:8088", "user": "alice", "dns_domain": "yc.example.com"}
    return YarnClusterConfig(**{**base, **fields})


def plan(env: EnvironmentPlan | None = TORCH, image: str | None = None, **update: Any) -> LaunchPlan:
    body: dict[str, Any] = {
        "meta": {"name": "job", "framework": "tensorflow", "cmd": "python train.py"},
        "spec": {"Worker": {"replicas": 1}},
    }
    if image:
        body["environment"] = {"image": image}
    adapter = YarnAdapter(config(), data_dir="/tmp")
    built = build_plan(
        ExperimentSpec.model_validate(body),
        workload_id="experiment-1",
        uid=UID,
        namespace="ns",
        addressing=adapter.addressing(UID),
    )
    return built.model_copy(update={"environment": env, **update})


def valid(body: dict[str, Any]) -> dict[str, Any]:
    problems = yarn_validation.validate_service(body)
    assert problems == [], problems
    return body


def test_the_environments_image_is_the_docker_artifact() -> None:
    body = valid(spec.build_service(plan(), config()))
    assert body["components"][0]["artifact"] == {"id": TORCH.image, "type": "DOCKER"}
    assert "docker_client_config" not in body
    own = valid(spec.build_service(plan(image="own:1"), config()))
    assert own["components"][0]["artifact"]["id"] == "own:1"  # a spec's own image comes first


def test_a_registry_image_names_the_docker_client_config() -> None:
    body = valid(spec.build_service(plan(registry_auth=AUTH), config(docker_client_config=CLIENT_CONFIG)))
    assert body["docker_client_config"] == CLIENT_CONFIG
    assert "pw-0123456" not in str(body)
    # Without credentials on the plan, or on a cluster without a client config: nothing named.
    assert "docker_client_config" not in spec.build_service(
        plan(), config(docker_client_config=CLIENT_CONFIG)
    )
    assert "docker_client_config" not in spec.build_service(plan(registry_auth=AUTH), config())
    with pytest.raises(ValueError, match="URI"):
        config(docker_client_config="/local/path.json")


def test_dependencies_are_refused_unless_the_images_have_them() -> None:
    adapter = YarnAdapter(config(), data_dir="/tmp")
    reason = adapter.environment_problem(TORCH) or ""
    assert "installs no pip dependencies" in reason and "images_have_dependencies: true" in reason
    conda = EnvironmentPlan.of("sci", conda=["numpy"], pip=["six"])
    assert "pip and conda" in (adapter.environment_problem(conda) or "")
    assert adapter.environment_problem(EnvironmentPlan.of("img", image="x:1")) is None
    trusting = YarnAdapter(config(images_have_dependencies=True), data_dir="/tmp")
    assert trusting.environment_problem(TORCH) is None
