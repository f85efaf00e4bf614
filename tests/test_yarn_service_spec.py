"""The YARN Service built from a launch plan: components, containers, resources, artifacts, env, commands.

The last tests run what YARN would run: the token substitution of the ApplicationMaster
(``${COMPONENT_ID}``) and the NodeManager's launch script (``export K="V"`` lines and
``exec /bin/bash -c "<launch_command>"``), with real bash, and check that each replica's process
sees exactly the environment of its plan replica.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clusters.yarn import service_spec as spec
from clusters.yarn.adapter import YarnAdapter
from clusters.yarn.config import YarnClusterConfig
from runtimes.frameworks import build_plan
from runtimes.plan import LaunchPlan, ReplicaPlan, Resources
from runtimes.spec import ExperimentSpec
from tests.doubles import yarn_validation

UID = "0123456789abcdef0123456789abcdef"


def config(**fields: Any) -> YarnClusterConfig:
    base = {"name": "yc", "rm_url": "http://rm:8088", "user": "alice", "dns_domain": "yc.example.com"}
    return YarnClusterConfig(**{**base, **fields})


def plan_for(
    framework: str, roles: dict[str, Any], cmd: str = "python train.py", **fields: Any
) -> LaunchPlan:
    cfg = config(**fields)
    experiment = ExperimentSpec.model_validate(
        {
            "meta": {"name": "job", "framework": framework, "cmd": cmd},
            "spec": roles,
            "environment": {"image": "registry.example.com/train:1"},
        }
    )
    adapter = YarnAdapter(cfg, data_dir="/tmp")
    return build_plan(
        experiment, workload_id="experiment-7", uid=UID, namespace="ns", addressing=adapter.addressing(UID)
    )


@pytest.fixture(autouse=True)
def _schema(yarn_schema_dir: Path) -> None:
    """Every body built here is checked against the swagger file too."""


def valid(body: dict[str, Any]) -> dict[str, Any]:
    problems = yarn_validation.validate_service(body)
    assert problems == [], problems
    return body


def test_names_follow_yarns_rules() -> None:
    assert spec.service_name(UID) == f"sb-{UID}"
    assert spec.uid_of(f"sb-{UID}") == UID and spec.uid_of("other") is None
    assert spec.service_name("ABC_def") == "sb-abc-def" and spec.uid_of("sb-abc-def") == "abc-def"
    assert spec.uid_of("sb-abc--def") is None  # would not read back exactly
    assert len(spec.service_name("x" * 100)) == 63
    with pytest.raises(spec.ServiceSpecError):
        spec.service_name("___")
    assert spec.component_name("Worker") == "worker" and spec.component_name("Ps") == "ps"
    assert spec.component_name("9lives") == "r-9lives"
    assert (
        spec.replica_host(UID, "Worker", 1, "Alice", "yc.example.com")
        == f"worker-1.sb-{UID}.alice.yc.example.com"
    )
    assert spec.replica_host(UID, "Ps", 0, "alice", None) == f"ps-0.sb-{UID}.alice"


def test_one_component_per_role_with_its_replicas_resources_and_policy() -> None:
    plan = plan_for(
        "tensorflow",
        {
            "Ps": {"replicas": 1, "resources": "cpu=0.5,memory=500M"},
            "Worker": {"replicas": 3, "resources": "cpu=2,memory=4Gi,gpu=2"},
        },
        queue="ml",
    )
    body = valid(spec.build_service(plan, config(queue="ml")))
    assert body["name"] == f"sb-{UID}" and body["version"] == "1" and body["queue"] == "ml"
    assert body["description"] == "submarine-broker origin=yc"
    by_name = {c["name"]: c for c in body["components"]}
    assert list(by_name) == ["worker", "ps"]  # plan order: the primary role first
    assert by_name["ps"]["number_of_containers"] == 1 and by_name["worker"]["number_of_containers"] == 3
    # vcores are whole (0.5 rounds up), memory is MiB as a string (500M = 476.8 MiB rounds up)
    assert by_name["ps"]["resource"] == {"cpus": 1, "memory": "477"}
    assert by_name["worker"]["resource"] == {
        "cpus": 2,
        "memory": "4096",
        "additional": {"yarn.io/gpu": {"value": 2, "unit": ""}},
    }
    for component in body["components"]:
        assert component["restart_policy"] == "NEVER"
        assert component["artifact"] == {"id": "registry.example.com/train:1", "type": "DOCKER"}
        assert "containers" not in component and "restartPolicy" not in component
    assert "lifetime" not in body
    body = valid(spec.build_service(plan, config(restart_policy="ON_FAILURE", lifetime=3600, origin="east")))
    assert {c["restart_policy"] for c in body["components"]} == {"ON_FAILURE"}
    assert body["lifetime"] == 3600 and body["description"] == "submarine-broker origin=east"


def test_artifacts_docker_tarball_none() -> None:
    plan = plan_for("python", {"Worker": {"replicas": 1}})
    assert spec.artifact(plan, config()) == {"id": "registry.example.com/train:1", "type": "DOCKER"}
    tarball = config(artifact="tarball", tarball="hdfs:///envs/py311.tgz")
    body = valid(spec.build_service(plan, tarball))
    assert body["components"][0]["artifact"] == {"id": "hdfs:///envs/py311.tgz", "type": "TARBALL"}
    bare = valid(spec.build_service(plan, config(artifact="none")))
    assert "artifact" not in bare["components"][0] and bare["components"][0]["launch_command"]
    no_image = plan.model_copy(update={"image": None, "environment": None})
    assert spec.artifact(no_image, config(image="python:3.11"))["id"] == "python:3.11"
    with pytest.raises(spec.ServiceSpecError, match="no image"):
        spec.build_service(no_image, config())
    with pytest.raises(ValueError, match="tarball"):
        config(artifact="tarball")
    with pytest.raises(ValueError, match="tarball"):
        config(tarball="hdfs:///x.tgz")


def test_env_is_templated_on_the_component_index_and_the_rest_goes_to_a_case() -> None:
    plan = plan_for(
        "pytorch", {"Master": {"replicas": 1}, "Worker": {"replicas": 3}}, docker_network="overlay-a"
    )
    body = valid(spec.build_service(plan, config(docker_network="overlay-a")))
    worker = body["components"][1]
    env = worker["configuration"]["env"]
    assert env["SUBMARINE_REPLICA_INDEX"] == "${COMPONENT_ID}"
    assert env["WORLD_SIZE"] == "4" and env["JOB_ID"] == "experiment-7"
    assert env["MASTER_ADDR"] == f"master-0.sb-{UID}.alice.yc.example.com"
    assert env[spec.DOCKER_NETWORK_ENV] == "overlay-a"
    assert "RANK" not in env  # worker i has rank i+1: selected by the launch command
    assert worker["launch_command"].startswith(
        "case ${COMPONENT_ID} in 0) export RANK=1 ;; 1) export RANK=2 ;;"
    )
    assert worker["launch_command"].endswith("esac; exec python train.py")
    master = body["components"][0]
    assert (
        master["launch_command"] == "exec python train.py" and master["configuration"]["env"]["RANK"] == "0"
    )
    tf = valid(spec.build_service(plan_for("tensorflow", {"Worker": {"replicas": 2}}), config()))
    tf_config = tf["components"][0]["configuration"]["env"]["TF_CONFIG"]
    assert '\\"index\\":${COMPONENT_ID}' in tf_config and "$" not in tf_config.replace("${COMPONENT_ID}", "")


def test_plans_yarn_cannot_express_are_refused() -> None:
    plan = plan_for("pytorch", {"Master": {"replicas": 1}, "Worker": {"replicas": 1}})
    with pytest.raises(spec.ServiceSpecError, match="dns_domain"):
        spec.build_service(plan, config(dns_domain=None))
    single = plan_for("python", {"Worker": {"replicas": 1}})
    valid(spec.build_service(single, config(dns_domain=None)))  # a lone replica needs no DNS
    master, worker = plan.replicas
    bigger = worker.model_copy(update={"index": 1, "resources": Resources(cpu=3)})
    with pytest.raises(spec.ServiceSpecError, match="differ"):
        spec.build_service(plan.model_copy(update={"replicas": [master, worker, bigger]}), config())
    gap = plan.model_copy(
        update={"replicas": [plan.replicas[0], plan.replicas[1].model_copy(update={"index": 2})]}
    )
    with pytest.raises(spec.ServiceSpecError, match="indexes"):
        spec.build_service(gap, config())


def test_the_validator_refuses_what_yarn_would() -> None:
    body = valid(spec.build_service(plan_for("python", {"Worker": {"replicas": 2}}), config()))

    def problems(change: Any) -> list[str]:
        bad = json.loads(json.dumps(body))
        change(bad)
        return yarn_validation.validate_service(bad)

    def camel(b: dict[str, Any]) -> None:
        b["components"][0]["restartPolicy"] = b["components"][0].pop("restart_policy")

    assert problems(camel), "restartPolicy is not what Hadoop reads"
    assert problems(lambda b: b.pop("version"))
    assert problems(lambda b: b.update(name="Bad_Name"))
    assert problems(lambda b: b.update(name="9lives"))
    assert problems(lambda b: b.update(state="RUNNING"))  # not a ServiceState
    assert problems(lambda b: b["components"][0]["resource"].update(cpus=0.5))
    assert problems(lambda b: b["components"][0]["resource"].update(memory=1024))
    assert problems(lambda b: b["components"][0].update(containers=[{"id": "c1"}]))
    assert problems(lambda b: b["components"][0]["artifact"].update(type="RPM"))
    assert problems(lambda b: b["components"].append(dict(b["components"][0])))  # duplicate name
    assert problems(
        lambda b: b["components"][0].update(launch_command=None, artifact={"id": "x", "type": "TARBALL"})
    )
    assert yarn_validation.validate_service({"state": "STOPPED"}, partial=True) == []
    assert yarn_validation.validate_service({"state": "STOPPED"})  # a POST needs name and version


def yarn_runs(component: dict[str, Any], index: int, tmp_path: Path) -> dict[str, str]:
    """What one container of ``component`` sees, launched the way YARN launches it."""
    tokens = {"${COMPONENT_ID}": str(index), "${COMPONENT_INSTANCE_NAME}": f"{component['name']}-{index}"}

    def substitute(text: str) -> str:  # ProviderUtils.substituteStrWithTokens
        for token, value in tokens.items():
            text = text.replace(token, value)
        return text

    lines = ["#!/bin/bash"]
    for key, value in component["configuration"]["env"].items():
        lines.append(f'export {key}="{substitute(value)}"')  # UnixShellScriptBuilder.env
    out = tmp_path / f"stdout-{index}.txt"
    command = f"{substitute(component['launch_command'])} 1>{out} 2>{tmp_path / 'stderr.txt'}"
    lines.append(f'exec /bin/bash -c "{command}"')  # UnixShellScriptBuilder.command
    script = tmp_path / f"launch_container-{index}.sh"
    script.write_text("\n".join(lines) + "\n")
    subprocess.run(["bash", str(script)], check=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    return json.loads(out.read_text())


def test_each_container_sees_exactly_its_replicas_environment(tmp_path: Path) -> None:
    show = "import json, os, sys; print(json.dumps(dict(os.environ, ARGV=json.dumps(sys.argv[1:]))))"
    cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(show)} 'it'\"'\"'s' '$HOME' '`x`' 'a\\b' '\"q\"'"
    plan = plan_for("pytorch", {"Master": {"replicas": 1}, "Worker": {"replicas": 3}}, cmd=cmd)
    tricky = {"TRICKY": 'say "hi" to $USER `now` \\ back\\slash ${SHELL} !x'}
    plan = plan.model_copy(
        update={"replicas": [r.model_copy(update={"env": {**r.env, **tricky}}) for r in plan.replicas]}
    )
    body = valid(spec.build_service(plan, config()))
    tf = plan_for("tensorflow", {"Ps": {"replicas": 1}, "Worker": {"replicas": 2}}, cmd=cmd)
    tf_body = valid(spec.build_service(tf, config()))
    for the_plan, the_body in ((plan, body), (tf, tf_body)):
        for component in the_body["components"]:
            for replica in [r for r in the_plan.replicas if spec.component_name(r.role) == component["name"]]:
                seen = yarn_runs(component, replica.index, tmp_path)
                for key, value in replica.env.items():
                    assert seen.get(key) == value, (replica.name, key, seen.get(key), value)
                assert json.loads(seen["ARGV"]) == ["it's", "$HOME", "`x`", "a\\b", '"q"']


def test_replica_plan_argv_round_trips_through_the_launch_command(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-c",
        "import sys, json; print(json.dumps({'ARGV': json.dumps(sys.argv[1:])}))",
        "x y",
        "$$",
    ]
    replica = ReplicaPlan(role="Worker", index=0, argv=argv, host="h", env={})
    plan = LaunchPlan(
        uid=UID, workload_id="e", name="n", namespace="ns", framework="python", image="i",
        replicas=[replica], success_roles=["Worker"],
    )  # fmt: skip
    component = valid(spec.build_service(plan, config()))["components"][0]
    assert json.loads(yarn_runs(component, 0, tmp_path)["ARGV"]) == ["x y", "$$"]
