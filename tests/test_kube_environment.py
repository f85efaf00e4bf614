"""Environments and registry credentials on Kubernetes, through the official client, against the API
double (which validates every object it is sent like an apiserver, with the upstream CRD schemas)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from clusters.errors import SubmitRejected
from clusters.kubernetes import environment as envs
from runtimes.environment import EnvironmentPlan
from runtimes.images import RegistryAuth
from runtimes.plan import LaunchPlan, ReplicaPlan
from tests.doubles.kube_api import KubeApiDouble
from tests.support import serve_in_thread
from tests.test_kube_adapter import NS, TOKEN, Cluster, make_plan, run, uid_of
from tests.wheels import write_wheel

PASSWORD = "pull-pa55word-0123"
TORCH = EnvironmentPlan.of("torch-2", revision=3, image="pytorch/pytorch:2.4", pip=["Tqdm==4.66", "six"])


@pytest.fixture
def kube(tmp_path: Path, shared_dir: Path) -> Iterator[Cluster]:
    """The API double (validating with the upstream CRDs) and adapters for it."""
    double = KubeApiDouble(token=TOKEN, crd_dir=shared_dir / "schemas" / "kubernetes" / "kubeflow-training")
    with serve_in_thread(double.app) as url:
        yield Cluster(double, url, tmp_path)
    assert not double.refused, json.dumps(double.refused, indent=1)[:3000]


def auth(password: str = PASSWORD) -> dict[str, RegistryAuth]:
    return {
        "corp": RegistryAuth(
            registry="corp",
            server="registry.corp.example:5000",
            username="puller",
            password=SecretStr(password),
        )
    }


def with_env(plan: LaunchPlan, env: EnvironmentPlan | None = TORCH, **update: Any) -> LaunchPlan:
    return plan.model_copy(update={"environment": env, **update})


def pods(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list(envs.pod_specs(body))


def docker_config(secret: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))


def check_pod(pod: dict[str, Any], env: EnvironmentPlan, image: str) -> None:
    """The install init container, the node's cache volume, PYTHONPATH and the pull Secret."""
    (init,) = pod["initContainers"]
    assert init["name"] == "sb-env" and init["image"] == image
    assert init["command"][:2] == ["python", "-c"]
    assert "--target" in init["command"][2]
    assert init["command"][3:] == [envs.MOUNT, *env.pip]
    volume = next(v for v in pod["volumes"] if v["name"] == envs.VOLUME)
    assert volume["hostPath"] == {
        "path": f"/var/cache/submarine-broker/envs/{env.short_hash}",
        "type": "DirectoryOrCreate",
    }
    for container in pod["containers"]:
        assert container["image"] == image
        assert {"name": envs.VOLUME, "mountPath": envs.MOUNT, "readOnly": True} in container["volumeMounts"]
        variables = {e["name"]: e.get("value") for e in container["env"]}
        assert variables["PYTHONPATH"] == f"{envs.MOUNT}/site"
    assert pod["imagePullSecrets"] == [{"name": "sb-registry-corp"}]


@pytest.mark.parametrize("shape", ["kubeflow", "job"])
def test_pip_dependencies_are_installed_by_an_init_container_into_a_node_cache(
    kube: Cluster, shape: str
) -> None:
    d = kube.double
    adapter = kube.adapter(workload_api=shape)
    uid = uid_of(1)
    plan = with_env(make_plan(adapter, uid), image=None, registry_auth=auth())
    assert plan.run_image == "pytorch/pytorch:2.4"  # the environment's dockerImage
    run(adapter.submit(plan))
    bodies = d.objects("pytorchjobs", NS) if shape == "kubeflow" else d.objects("jobs", NS)
    assert bodies
    found = [pod for body in bodies for pod in pods(body)]
    assert len(found) == 2  # Master and Worker
    for pod in found:
        check_pod(pod, TORCH, "pytorch/pytorch:2.4")
    (secret,) = d.objects("secrets", NS)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["name"] == "sb-registry-corp"
    assert secret["metadata"]["labels"]["submarine-broker/origin"] == "broker-a"
    entry = docker_config(secret)["auths"]["registry.corp.example:5000"]
    assert entry["username"] == "puller" and entry["password"] == PASSWORD
    assert base64.b64decode(entry["auth"]).decode() == f"puller:{PASSWORD}"


def test_the_same_hash_shares_one_folder_and_a_plan_without_pip_installs_nothing(kube: Cluster) -> None:
    d = kube.double
    adapter = kube.adapter(workload_api="job")
    same = EnvironmentPlan.of("other-name", image="pytorch/pytorch:2.4", pip=["six", "tqdm==4.66"])
    assert same.hash == TORCH.hash
    run(adapter.submit(with_env(make_plan(adapter, uid_of(2)), same)))
    run(adapter.submit(with_env(make_plan(adapter, uid_of(3)), EnvironmentPlan.of("bare", image="x:1"))))
    by_uid: dict[str, list[dict[str, Any]]] = {}
    for job in d.objects("jobs", NS):
        by_uid.setdefault(job["metadata"]["labels"]["submarine-broker/uid"], []).extend(pods(job))
    for pod in by_uid[uid_of(2)]:
        check_pod_paths = [v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v]
        assert check_pod_paths == [f"/var/cache/submarine-broker/envs/{TORCH.short_hash}"]
        assert "imagePullSecrets" not in pod  # no registry with credentials
    for pod in by_uid[uid_of(3)]:
        assert "initContainers" not in pod and "volumes" not in pod
        assert pod["containers"][0]["image"] == "pytorch/pytorch:2.4"  # the plan's own image wins
        assert "PYTHONPATH" not in {e["name"] for e in pod["containers"][0]["env"]}
    assert not d.objects("secrets", NS)


def test_a_plan_pythonpath_comes_after_the_environment(kube: Cluster) -> None:
    adapter = kube.adapter(workload_api="job", environment_cache="/data/envs/", environment_python="python3")
    plan = with_env(make_plan(adapter, uid_of(4)))
    replicas = [r.model_copy(update={"env": {**r.env, "PYTHONPATH": "/code"}}) for r in plan.replicas]
    run(adapter.submit(plan.model_copy(update={"replicas": replicas})))
    for job in kube.double.objects("jobs", NS):
        (pod,) = pods(job)
        assert pod["initContainers"][0]["command"][0] == "python3"
        assert pod["volumes"][0]["hostPath"]["path"] == f"/data/envs/{TORCH.short_hash}"
        values = [e["value"] for e in pod["containers"][0]["env"] if e["name"] == "PYTHONPATH"]
        assert values == [f"{envs.MOUNT}/site:/code"]


def test_the_pull_secret_is_kept_current_and_a_foreign_one_is_never_touched(kube: Cluster) -> None:
    d = kube.double
    adapter = kube.adapter(workload_api="job")
    run(adapter.submit(with_env(make_plan(adapter, uid_of(5)), registry_auth=auth())))
    first = d.get("secrets", NS, "sb-registry-corp")
    assert first is not None
    run(adapter.submit(with_env(make_plan(adapter, uid_of(6)), registry_auth=auth())))
    assert (
        d.get("secrets", NS, "sb-registry-corp")["metadata"]["resourceVersion"]
        == (first["metadata"]["resourceVersion"])
    )  # unchanged credentials: not rewritten
    run(adapter.submit(with_env(make_plan(adapter, uid_of(7)), registry_auth=auth("rotated-pa55word"))))
    current = d.get("secrets", NS, "sb-registry-corp")
    assert docker_config(current)["auths"]["registry.corp.example:5000"]["password"] == "rotated-pa55word"

    d.remove("secrets", NS, "sb-registry-corp")
    d.put_object(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "sb-registry-corp", "namespace": NS},
            "type": "Opaque",
            "data": {"x": base64.b64encode(b"theirs").decode()},
        },
    )
    with pytest.raises(SubmitRejected) as refused:
        run(adapter.submit(with_env(make_plan(adapter, uid_of(8)), registry_auth=auth())))
    assert "sb-registry-corp" in str(refused.value) and "not this broker's" in str(refused.value)
    assert PASSWORD not in str(refused.value)
    assert d.get("secrets", NS, "sb-registry-corp")["data"] == {"x": base64.b64encode(b"theirs").decode()}
    assert not [
        j for j in d.objects("jobs", NS) if j["metadata"]["labels"]["submarine-broker/uid"] == uid_of(8)
    ]


def test_the_plan_json_and_repr_never_carry_the_password(kube: Cluster) -> None:
    plan = with_env(make_plan(kube.adapter(), uid_of(9)), registry_auth=auth())
    assert PASSWORD not in plan.model_dump_json() and PASSWORD not in repr(plan)
    assert "registry_auth" not in plan.model_dump()


def test_environments_the_cluster_cannot_apply_are_refused_with_a_reason(kube: Cluster) -> None:
    adapter = kube.adapter()
    assert adapter.environment_problem(TORCH) is None
    conda = EnvironmentPlan.of("sci", conda=["numpy"])
    assert "cannot install conda dependencies" in (adapter.environment_problem(conda) or "")
    closed = kube.adapter(allow_installs=False)
    reason = closed.environment_problem(TORCH) or ""
    assert "allow_installs: false" in reason and "'k1'" in reason
    assert closed.environment_problem(EnvironmentPlan.of("img", image="x:1")) is None


def test_a_notebook_pod_gets_the_install_and_the_pull_secret(kube: Cluster) -> None:
    adapter = kube.adapter(workload_api="job")
    uid = uid_of(10)
    replica = ReplicaPlan(
        role="Notebook",
        index=0,
        argv=["python", "-m", "jupyter_server", "--ip=sb-10aabbccddee", "--port=8888"],
        env={"JUPYTER_TOKEN": "tok-123456"},
        host="sb-10aabbccddee",
        port=8888,
    )
    plan = LaunchPlan(
        uid=uid,
        workload_id="notebook_1",
        workload_kind="notebook",
        name="nb",
        namespace=NS,
        framework="notebook",
        replicas=[replica],
        success_roles=["Notebook"],
        workdir="notebook_1",
        environment=TORCH,
        registry_auth=auth(),
    )
    run(adapter.submit(plan))
    (sts,) = kube.double.objects("statefulsets", NS)
    (pod,) = pods(sts)
    check_pod(pod, TORCH, "pytorch/pytorch:2.4")
    # The workspace claim's volume stays beside the environment's.
    assert {v["name"] for v in pod["volumes"]} == {"workspace", envs.VOLUME}


def test_the_init_script_installs_once_and_a_second_pod_reuses_the_folder(tmp_path: Path) -> None:
    """The init container's program, run here with a local wheel folder (no index)."""
    import subprocess
    import sys

    wheels = tmp_path / "wheels"
    write_wheel(wheels, "sbenvdemo", "1.0", value=42)
    root = tmp_path / "cache" / "abc"
    env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "PATH": "/usr/bin:/bin"}
    first = subprocess.run(
        [sys.executable, "-c", envs.INSTALL_SCRIPT, str(root), "sbenvdemo==1.0"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert first.returncode == 0, first.stderr
    assert (root / "site" / "sbenvdemo" / "__init__.py").is_file()
    assert [p.name for p in root.iterdir()] == ["site"]  # no temporary folder left
    again = subprocess.run(
        [sys.executable, "-c", envs.INSTALL_SCRIPT, str(root), "sbenvdemo==1.0"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert again.returncode == 0 and "already installed" in again.stdout
    imported = subprocess.run(
        [sys.executable, "-c", "import sbenvdemo; print(sbenvdemo.VALUE)"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root / "site")},
    )
    assert imported.stdout.strip() == "42"
    missing = subprocess.run(
        [sys.executable, "-c", envs.INSTALL_SCRIPT, str(tmp_path / "cache" / "bad"), "no-such-pkg-xyz"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert missing.returncode != 0 and "no-such-pkg-xyz" in missing.stderr + missing.stdout
    assert not (tmp_path / "cache" / "bad" / "site").exists()


def test_the_install_log_comes_first_in_the_replicas_log(kube: Cluster) -> None:
    """The init container's output is part of the replica's log; a failed install, whose replica
    never started, shows pip's error line there."""
    from clusters.kubernetes import manifests as m

    d = kube.double
    adapter = kube.adapter(workload_api="job")
    uid = uid_of(11)
    handle = run(adapter.submit(with_env(make_plan(adapter, uid))))

    def pod(role: str, phase: str, logs: dict[str, list[str]]) -> None:
        labels = {m.LABEL_UID: uid, m.LABEL_ROLE: role, m.COMPLETION_INDEX: "0"}
        name = f"sb-11aabbccddee-{role}-0-x1"
        made = d.add_pod(NS, name, labels, phase=phase, container=role)
        made["spec"]["initContainers"] = [{"name": envs.INIT_CONTAINER, "image": "pytorch/pytorch:2.4"}]
        d.put_object("pods", made)
        d.set_logs(NS, name, logs)

    pod(
        "master", "Running", {"sb-env": ["submarine-broker: environment already installed"], "master": ["m0"]}
    )
    pod("worker", "Pending", {"sb-env": ["Collecting six", "ERROR: No matching distribution found for six"]})
    logs = {log.replica: log.lines for log in run(adapter.logs(handle))}
    assert logs["master-0"] == ["submarine-broker: environment already installed", "m0"]
    assert logs["worker-0"] == ["Collecting six", "ERROR: No matching distribution found for six"]
    assert [log.lines for log in run(adapter.logs(handle, "master-0", tail=1))] == [["m0"]]


def test_an_install_under_way_says_so_and_a_failed_one_fails_the_attempt_for_its_environment(
    kube: Cluster,
) -> None:
    from clusters.base import Phase
    from clusters.kubernetes import manifests as m

    d = kube.double
    adapter = kube.adapter(workload_api="kubeflow")
    uid = uid_of(12)
    handle = run(adapter.submit(with_env(make_plan(adapter, uid))))
    assert handle.state["environment"]["hash"] == TORCH.short_hash
    assert run(adapter.poll([handle]))[uid].phase is Phase.PENDING

    def pod(rtype: str, index: int, init: dict[str, Any]) -> str:
        labels = {
            m.LABEL_UID: uid,
            m.LABEL_ORIGIN: "broker-a",
            m.KUBEFLOW_REPLICA_TYPE: rtype,
            m.KUBEFLOW_REPLICA_INDEX: str(index),
        }
        name = f"sb-12aabbccddee-{rtype}-{index}"
        made = d.add_pod(NS, name, labels, phase="Pending", container="pytorch")
        made["spec"]["initContainers"] = [{"name": envs.INIT_CONTAINER, "image": "pytorch/pytorch:2.4"}]
        made["status"]["initContainerStatuses"] = [{"name": envs.INIT_CONTAINER, **init}]
        d.put_object("pods", made)
        return name

    pod("master", 0, {"state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}})
    seen = run(adapter.poll([handle]))[uid]
    assert seen.phase is Phase.PENDING
    assert seen.message == "building environment torch-2 (2 packages) on k1"

    worker = pod(
        "worker",
        0,
        {
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
        },
    )
    d.set_logs(
        NS,
        worker,
        {"sb-env": ["Collecting tqdm==4.66", "ERROR: No matching distribution found for tqdm==4.66"]},
    )
    seen = run(adapter.poll([handle]))[uid]
    assert seen.phase is Phase.FAILED and seen.failure_category == "environment"
    assert seen.message == (
        "environment torch-2 (2 packages) could not be installed on k1: "
        "ERROR: No matching distribution found for tqdm==4.66"
    )
    # The failed replica, and the rest still pending: the broker stops what is left of the gang.
    assert {r.name: r.phase for r in seen.replicas} == {
        "master-0": Phase.PENDING,
        "worker-0": Phase.FAILED,
        "worker-1": Phase.PENDING,
    }
