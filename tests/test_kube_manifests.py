"""Kubernetes objects built from launch plans: names, labels, env, resources, restart policies."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from clusters.kubernetes import manifests as m
from runtimes.frameworks import build_plan
from runtimes.plan import LaunchPlan, StaticAddressing
from runtimes.spec import ExperimentSpec

UID = "0123456789abcdef0123456789abcdef"
WORKLOAD = "experiment-1700000000000-0001"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def plan_for(
    framework: str, roles: dict[str, Any], *, shape: str = "kubeflow", image: str | None = "img:1"
) -> LaunchPlan:
    meta = {"name": "job", "framework": framework, "cmd": "python train.py --out $(HOME)"}
    body: dict[str, Any] = {"meta": meta, "spec": roles}
    if image:
        body["environment"] = {"image": image}
    spec = ExperimentSpec.model_validate(body)
    host = m.kubeflow_host if shape == "kubeflow" else m.job_host
    addressing = StaticAddressing(lambda r, i: host(UID, r, i), lambda: m.REPLICA_PORT)
    return build_plan(spec, workload_id=WORKLOAD, uid=UID, namespace="default", addressing=addressing)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def expand(value: str, variables: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: $$ → $, $(known) → its value, anything else unchanged."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
        elif value.startswith("$(", i) and ")" in value[i:]:
            end = value.index(")", i)
            name = value[i + 2 : end]
            out.append(variables.get(name, value[i : end + 1]))
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def pod_env(container: dict[str, Any], index: int) -> dict[str, str]:
    """The env a pod of ``index`` sees, expanded in order as the kubelet does."""
    seen: dict[str, str] = {}
    for entry in container["env"]:
        if "valueFrom" in entry:
            seen[entry["name"]] = str(index)
        else:
            seen[entry["name"]] = expand(entry["value"], seen)
    return seen


def check_common(obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    assert DNS_1035.match(meta["name"]) and len(meta["name"]) <= 63
    assert meta["labels"][m.LABEL_ORIGIN] == "broker-a"
    assert meta["labels"][m.LABEL_EXPERIMENT] == WORKLOAD
    assert meta["labels"][m.LABEL_UID] == UID
    assert meta["annotations"][m.ANNOTATION_EXPERIMENT] == WORKLOAD
    assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in meta["labels"].values())


def test_names_and_label_values() -> None:
    assert m.base_name(UID) == "sb-0123456789ab"
    assert m.base_name("ABC_def.ghi-jkl-mno") == "sb-abc-def-ghi"
    assert m.job_name(UID, "Ps") == "sb-0123456789ab-ps"
    assert m.kubeflow_host(UID, "Worker", 2) == "sb-0123456789ab-worker-2"
    assert m.job_host(UID, "Worker", 2) == "sb-0123456789ab-worker-2.sb-0123456789ab"
    assert m.label_value("-a/b c" + "x" * 80) == ("a-b-c" + "x" * 80)[:62]
    assert m.label_value("exp.1_") == "exp.1"
    with pytest.raises(m.ManifestError):
        m.base_name("---")


def test_quantities() -> None:
    assert m.cpu_quantity(2) == "2" and m.cpu_quantity(0.5) == "500m" and m.cpu_quantity(1.25) == "1250m"
    assert m.memory_quantity(512 * 2**20) == "512Mi" and m.memory_quantity(1_000_000_000) == "1000000000"


def test_tfjob_maps_ps_to_PS_and_keeps_one_spec_per_role() -> None:
    plan = plan_for("tensorflow", {"Ps": {"replicas": 2}, "Worker": {"replicas": 3}, "Chief": {}})
    job = m.kubeflow_job(plan, origin="broker-a", namespace="ns1")
    check_common(job)
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "TFJob"
    assert job["metadata"]["namespace"] == "ns1" and job["metadata"]["name"] == "sb-0123456789ab"
    specs = job["spec"]["tfReplicaSpecs"]
    assert set(specs) == {"Chief", "PS", "Worker"}
    assert [specs[k]["replicas"] for k in ("Chief", "PS", "Worker")] == [1, 2, 3]
    for key, spec in specs.items():
        assert spec["restartPolicy"] == "OnFailure"
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "tensorflow" and container["image"] == "img:1"
        assert container["ports"] == [
            {"name": "tfjob-port", "containerPort": m.REPLICA_PORT, "protocol": "TCP"}
        ]
        assert spec["template"]["metadata"]["labels"][m.LABEL_UID] == UID
        # the replica index comes from the operator's pod label, first in the list
        first = container["env"][0]
        assert first["name"] == "SUBMARINE_REPLICA_INDEX"
        assert first["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.labels['{m.KUBEFLOW_REPLICA_INDEX}']"
        # every pod sees exactly the env its replica has in the plan
        role = {"PS": "Ps"}.get(key, key)
        for replica in (r for r in plan.replicas if r.role == role):
            assert pod_env(container, replica.index) == {**replica.env}
            assert json.loads(pod_env(container, replica.index)["TF_CONFIG"])["task"] == {
                "type": role.lower(),
                "index": replica.index,
            }
        assert container["command"] == ["python", "train.py", "--out", "$$(HOME)"]


def test_pytorchjob_master_worker_with_resources_and_rank_wrapper() -> None:
    plan = plan_for(
        "pytorch",
        {
            "Master": {"resources": "cpu=2,memory=1024M"},
            "Worker": {"replicas": 2, "resources": "cpu=500m,memory=512Mi,gpu=1"},
        },
    )
    job = m.kubeflow_job(plan, origin="broker-a", namespace="default")
    check_common(job)
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"} and specs["Master"]["replicas"] == 1
    master = specs["Master"]["template"]["spec"]["containers"][0]
    worker = specs["Worker"]["template"]["spec"]["containers"][0]
    assert master["name"] == worker["name"] == "pytorch"
    assert master["resources"] == {
        "requests": {"cpu": "2", "memory": "1024000000"},
        "limits": {"cpu": "2", "memory": "1024000000"},
    }
    gpu = {"cpu": "500m", "memory": "512Mi", "nvidia.com/gpu": "1"}
    assert worker["resources"] == {"requests": gpu, "limits": gpu}
    assert master["command"] == ["python", "train.py", "--out", "$$(HOME)"]
    assert env_of(master)["RANK"] == "0" and env_of(master)["MASTER_ADDR"] == "sb-0123456789ab-master-0"
    # worker RANK is index + 1: not a $(VAR) template, so a shell wrapper selects it
    assert "RANK" not in env_of(worker)
    assert worker["command"][:2] == ["/bin/sh", "-c"]
    script = worker["command"][2].replace("$$", "$")
    assert "0) export RANK=1 ;;" in script and "1) export RANK=2 ;;" in script
    assert worker["command"][3:] == ["sh", "python", "train.py", "--out", "$$(HOME)"]


def test_xgboost_and_webhook_rules() -> None:
    plan = plan_for("xgboost", {"Master": {}, "Worker": {"replicas": 2}})
    job = m.kubeflow_job(plan, origin="broker-a", namespace="default")
    assert job["kind"] == "XGBoostJob" and set(job["spec"]["xgbReplicaSpecs"]) == {"Master", "Worker"}
    assert {
        c["name"]
        for s in job["spec"]["xgbReplicaSpecs"].values()
        for c in s["template"]["spec"]["containers"]
    } == {"xgboost"}
    no_master = plan_for("xgboost", {"Worker": {"replicas": 2}})
    assert m.kubeflow_problem(no_master) == "an XGBoostJob needs a Master replica"
    with pytest.raises(m.ManifestError):
        m.kubeflow_job(no_master, origin="broker-a", namespace="default")
    python = plan_for("python", {"Worker": {}})
    assert "no kind" in (m.kubeflow_problem(python) or "")


def test_image_from_config_or_refused() -> None:
    plan = plan_for("pytorch", {"Master": {}}, image=None)
    with pytest.raises(m.ManifestError, match="no image"):
        m.kubeflow_job(plan, origin="broker-a", namespace="default")
    job = m.kubeflow_job(plan, origin="broker-a", namespace="default", image="site/default:1")
    assert job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["image"] == (
        "site/default:1"
    )


def test_indexed_jobs_and_headless_service() -> None:
    plan = plan_for("pytorch", {"Master": {}, "Worker": {"replicas": 3}}, shape="job")
    jobs = m.indexed_jobs(plan, origin="broker-a", namespace="default")
    service = m.headless_service(plan, origin="broker-a", namespace="default")
    for obj in [*jobs, service]:
        check_common(obj)
    assert [j["metadata"]["name"] for j in jobs] == ["sb-0123456789ab-master", "sb-0123456789ab-worker"]
    assert service["metadata"]["name"] == "sb-0123456789ab"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {m.LABEL_UID: UID}
    assert service["spec"]["ports"][0]["port"] == m.REPLICA_PORT
    worker = jobs[1]
    spec = worker["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 3
    assert spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["subdomain"] == "sb-0123456789ab"
    assert spec["template"]["metadata"]["labels"][m.LABEL_ROLE] == "worker"
    (container,) = pod["containers"]
    assert container["name"] == "worker"
    first = container["env"][0]
    assert first["name"] == "JOB_COMPLETION_INDEX"
    assert first["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.annotations['{m.COMPLETION_INDEX}']"
    assert env_of(container)["SUBMARINE_REPLICA_INDEX"] == "$(JOB_COMPLETION_INDEX)"
    assert env_of(container)["MASTER_ADDR"] == "sb-0123456789ab-master-0.sb-0123456789ab"
    for replica in (r for r in plan.replicas if r.role == "Worker"):
        expected = dict(replica.env)
        del expected["RANK"]  # set by the wrapper
        assert pod_env(container, replica.index) == {**expected, "JOB_COMPLETION_INDEX": str(replica.index)}


def test_python_jobs_need_no_wrapper_and_tf_config_is_templated() -> None:
    plan = plan_for("python", {"Worker": {"replicas": 2}}, shape="job")
    (job,) = m.indexed_jobs(plan, origin="broker-a", namespace="default")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "train.py", "--out", "$$(HOME)"]
    assert "ports" not in container
    assert "ports" not in m.headless_service(plan, origin="broker-a", namespace="default")["spec"]
    tf = plan_for("tensorflow", {"Worker": {"replicas": 12}}, shape="job")
    (job,) = m.indexed_jobs(tf, origin="broker-a", namespace="default")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "$(JOB_COMPLETION_INDEX)" in env_of(container)["TF_CONFIG"]
    assert container["command"] == ["python", "train.py", "--out", "$$(HOME)"]
    for replica in tf.replicas:
        assert json.loads(pod_env(container, replica.index)["TF_CONFIG"]) == json.loads(
            replica.env["TF_CONFIG"]
        )


def test_every_object_passes_the_validator(shared_dir: Path) -> None:
    from tests.doubles import kube_validation as validation

    validation.configure(shared_dir / "schemas" / "kubernetes" / "kubeflow-training")

    cases = [
        ("tensorflow", {"Ps": {"replicas": 2}, "Worker": {"replicas": 2}, "Chief": {}, "Evaluator": {}}),
        ("pytorch", {"Master": {}, "Worker": {"replicas": 2, "resources": "cpu=1,memory=1G,gpu=2"}}),
        ("xgboost", {"Master": {}, "Worker": {"replicas": 2}}),
    ]
    for framework, roles in cases:
        plan = plan_for(framework, roles)
        assert validation.validate(m.kubeflow_job(plan, origin="broker-a", namespace="default")) == []
    for framework, roles in [*cases, ("python", {"Worker": {"replicas": 2}})]:
        plan = plan_for(framework, roles, shape="job")
        for obj in [
            *m.indexed_jobs(plan, origin="broker-a", namespace="default"),
            m.headless_service(plan, origin="broker-a", namespace="default"),
        ]:
            assert validation.validate(obj) == [], obj["metadata"]["name"]
