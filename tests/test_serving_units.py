"""Serving without a broker: the serve plan's model-server contract, placement refusing kinds
without endpoints (Slurm, YARN) with the reason, and what a fetch token reaches."""

from __future__ import annotations

import base64
import dataclasses
import itertools

import pytest
from pydantic import ValidationError

from broker.planner import serve_request
from broker.secret_key import SecretBox
from broker.serving.fetch_tokens import FetchTokens, reaches
from clusters.base import PLACEMENT, Capability
from clusters.local.adapter import LocalAdapter
from clusters.slurm.adapter import SlurmAdapter
from clusters.yarn.adapter import YarnAdapter
from policies.placement import default_engine
from runtimes.plan import LaunchPlan, ModelPlan, StaticAddressing
from runtimes.serving import FETCH_TOKEN_ENV, TOKEN_ENV, ServeSpec, build_serve_plan, default_name, files_url
from tests.test_placement import cluster

UID = "0123456789abcdef0123456789abcdef"


def model() -> ModelPlan:
    return ModelPlan(
        name="Iris Model", version=3, model_key="7", files_url=files_url("http://broker:8080/", "7", 3)
    )


def plan(**fields: object) -> LaunchPlan:
    ports = itertools.count(9000)
    spec = ServeSpec.model_validate({"modelName": "Iris Model", "modelVersion": "3", **fields})
    return build_serve_plan(
        spec,
        model(),
        workload_id="serve_1_0001",
        uid=UID,
        namespace="vision",
        addressing=StaticAddressing(lambda role, index: "127.0.0.1", lambda: next(ports)),
        python="/opt/py/bin/python",
        server_token="server-secret",
        fetch_token="fetch-secret",
        extra_env={TOKEN_ENV: "spoof", "SUBMARINE_SERVER_PORT": "8080"},
    )


def test_the_plan_runs_one_model_server_per_replica() -> None:
    made = plan(replicas=2, resources="cpu=0.5,memory=512Mi", envVars={TOKEN_ENV: "mine", "X": "1"})
    assert made.workload_kind == "serve" and made.name == "iris-model-3"
    assert [r.name for r in made.replicas] == ["server-0", "server-1"]
    assert made.model == model() and made.success_roles == ["Server"]
    url = "http://broker:8080/api/2.0/mlflow-artifacts/artifacts/registry/7/3"
    for replica, port in zip(made.replicas, (9000, 9001), strict=True):
        assert replica.argv == [
            "/opt/py/bin/python",
            "-m",
            "runtimes.model_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model-uri",
            url,
        ]
        assert replica.port == port and replica.resources.cpu == 0.5
        # The broker's tokens win over the spec's and extra_env's, and never reach the argv.
        assert replica.env[TOKEN_ENV] == "server-secret" and replica.env[FETCH_TOKEN_ENV] == "fetch-secret"
        assert replica.env["X"] == "1" and replica.env["SUBMARINE_SERVER_PORT"] == "8080"
        assert not any("secret" in arg for arg in replica.argv)
    assert "secret" not in made.model_dump_json(exclude={"replicas"})


def test_serve_specs() -> None:
    assert default_name("My_Model", 2) == "my-model-2" and default_name("m", None, "champion") == "m-champion"
    assert ServeSpec.model_validate({"modelName": "m", "alias": "champion"}).serve_name == "m-champion"
    for bad in ({"modelName": "m"}, {"modelName": "m", "modelVersion": 1, "alias": "a"}, {"modelVersion": 1}):
        with pytest.raises(ValidationError):
            ServeSpec.model_validate(bad)


@pytest.mark.parametrize("adapter", [SlurmAdapter, YarnAdapter])
def test_kinds_without_endpoints_cannot_serve(adapter: type) -> None:
    spec = ServeSpec.model_validate({"modelName": "m", "modelVersion": 1, "replicas": 2})
    request = serve_request(spec, "vision", "alice")
    assert request.workload_kind == "serve" and request.needs == frozenset({"endpoints"})
    assert request.replicas == 2

    def view(name: str, kind: type) -> object:
        names = frozenset(f.name.lower() for f in Capability if f.name and f in PLACEMENT & kind.capabilities)
        return dataclasses.replace(cluster(name), capabilities=names, kind=kind.kind)

    never = default_engine().place(request, [view("hpc", adapter)], None)
    assert never.chosen is None and never.never_fits
    assert "cannot provide endpoints" in (never.rejection or ""), never.rejection
    chosen = default_engine().place(request, [view("hpc", adapter), view("box", LocalAdapter)], None)
    assert chosen.chosen == "box"


def test_a_fetch_token_reads_its_version_folder_only() -> None:
    tokens = FetchTokens(SecretBox(base64.urlsafe_b64encode(b"k" * 32)))
    token = tokens.issue("serve_1_0001", UID, 7, 3)
    grant = tokens.verify(token)
    assert grant is not None and grant.folder == "registry/7/3"
    assert tokens.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert tokens.verify(token.replace(".7.3.", ".7.4.")) is None  # another version: not signed

    def scope(path: str, query: str = "", method: str = "GET") -> dict[str, object]:
        return {"type": "http", "method": method, "path": path, "query_string": query.encode()}

    base = "/api/2.0/mlflow-artifacts/artifacts"
    assert reaches(scope(f"{base}/registry/7/3/MLmodel"), grant)
    assert reaches(scope(f"{base}/registry/7/3/sub/model.pkl"), grant)
    assert reaches(scope(base, "path=registry/7/3"), grant)
    assert reaches(scope(base, "path=registry%2F7%2F3%2Fsub"), grant)
    assert not reaches(scope(f"{base}/registry/7/4/MLmodel"), grant)
    assert not reaches(scope(f"{base}/registry/7/3/../4/MLmodel"), grant)
    assert not reaches(scope(f"{base}/registry/7/33/MLmodel"), grant)
    assert not reaches(scope(f"{base}/1/abc/artifacts/x"), grant)
    assert not reaches(scope(base, "path=registry/7"), grant)
    assert not reaches(scope(f"{base}/registry/7/3/MLmodel", method="PUT"), grant)
    assert not reaches(scope("/api/2.0/mlflow/registered-models/get"), grant)
