"""The ``slurm`` kind without a cluster: config, job options, the batch script, parsers, the task entry."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import jsonschema
import pytest

from broker.config.errors import ConfigError
from broker.config.loader import load_cluster_file
from clusters.base import Capability, Handle
from clusters.errors import ClusterUnreachable, SubmitRejected
from clusters.kinds import adapter_class
from clusters.slurm.adapter import SlurmAdapter
from clusters.slurm.backend import NodeRecord, gpu_count, unreachable
from clusters.slurm.cli import parse_sinfo, parse_squeue, sbatch_args
from clusters.slurm.config import SlurmClusterConfig
from clusters.slurm.rest import submission_body
from clusters.slurm.script import comment_fields, job_request, tasks_document, uid_of
from runtimes.frameworks import build_plan
from runtimes.rendezvous import PlaceholderAddressing
from runtimes.slurm_task import substitute
from runtimes.spec import ExperimentSpec

SECRET = "eyJhbGciOiJIUzI1NiJ9.very-secret-jwt"
UID = "0123456789abcdef0123456789abcdef"


def plan_of(framework: str, roles: dict, cmd: str = "python train.py", uid: str = UID):
    spec = ExperimentSpec.model_validate(
        {
            "meta": {"name": "job", "framework": framework, "cmd": cmd},
            "environment": {"image": "python:3.11"},
            "spec": roles,
        }
    )
    return build_plan(
        spec,
        workload_id="experiment-1-0001",
        uid=uid,
        namespace="default",
        addressing=PlaceholderAddressing(),
    )


def test_kind_is_registered_with_its_capabilities() -> None:
    assert adapter_class("slurm") is SlurmAdapter
    assert SlurmAdapter.capabilities == (
        Capability.GPU | Capability.MULTI_NODE | Capability.LISTS_WORK | Capability.ENVIRONMENT_CACHE
    )


def test_config_masks_the_token_and_checks_modes() -> None:
    config = SlurmClusterConfig(
        name="hpc", mode="rest", rest_url="http://h:6820/", user="alice", token=SECRET, partition="gpu"
    )
    assert config.rest_url == "http://h:6820"
    view = config.public_view()
    assert view["token"] == "******" and SECRET not in json.dumps(view)
    assert SlurmClusterConfig(name="hpc").mode == "cli"
    with pytest.raises(ValueError, match="mode rest needs token"):
        SlurmClusterConfig(name="hpc", mode="rest", rest_url="http://h:6820", user="alice")
    with pytest.raises(ValueError, match="are for mode rest"):
        SlurmClusterConfig(name="hpc", token=SECRET)
    with pytest.raises(ValueError):
        SlurmClusterConfig(name="hpc", mode="rest", rest_url="h:6820", user="a", token=SECRET)
    with pytest.raises(ValueError):
        SlurmClusterConfig(name="hpc", partition="two words")
    unix = SlurmClusterConfig(
        name="hpc", mode="rest", rest_url="unix:/run/slurmrestd.sock", user="a", token="t"
    )
    assert unix.rest_url == "unix:/run/slurmrestd.sock"


@pytest.mark.parametrize(
    "body",
    [
        f"mode: rest\nrest_url: http://h:6820\nuser: alice\ntoken: {SECRET}\nbogus: 1\n",
        f"mode: rest\nrest_url: ftp://h\nuser: alice\ntoken: {SECRET}\n",
        f"mode: cli\ntoken: {SECRET}\n",
        f"mode: rest\nrest_url: http://h:6820\ntoken: {SECRET}\n",
    ],
)
def test_cluster_file_errors_name_the_problem_but_not_the_token(tmp_path: Path, body: str) -> None:
    path = tmp_path / "hpc.yaml"
    path.write_text(f"name: hpc\nkind: slurm\n{body}")
    with pytest.raises(ConfigError) as caught:
        load_cluster_file(path)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value.to_json())
    assert str(path) in str(caught.value)


def test_one_replica_asks_mem_and_gres_per_node() -> None:
    plan = plan_of("python", {"Worker": {"replicas": 1, "resources": "cpu=1.5,memory=3Gi,nvidia.com/gpu=2"}})
    request = job_request(
        plan, cluster="hpc", work_dir="/shared/sb", partition="gpu", account="ml", qos="high"
    )
    args = sbatch_args(request)
    assert f"--job-name=sb-{UID}" in args
    assert f"--comment=submarine-broker cluster=hpc uid={UID} experiment=experiment-1-0001" in args
    assert {"--ntasks=1", "--cpus-per-task=2", "--mem=3072M", "--gres=gpu:2"} <= set(args)
    assert {"--partition=gpu", "--account=ml", "--qos=high", "--export=NONE", "--parsable"} <= set(args)
    assert f"--output=/shared/sb/sb-{UID}.out" in args and "--chdir=/shared/sb" in args
    assert not any(a.startswith(("--mem-per-cpu", "--gpus-per-task", "--time")) for a in args)
    body = submission_body(request)["job"]
    assert body["tasks"] == 1 and body["cpus_per_task"] == 2
    assert body["memory_per_node"] == 3072 and body["gres"] == "gpu:2"
    assert (body["partition"], body["account"], body["qos"]) == ("gpu", "ml", "high")
    assert body["name"] == f"sb-{UID}" and "environment" in body


def test_several_replicas_get_uniform_tasks_sized_for_the_largest() -> None:
    plan = plan_of(
        "tensorflow",
        {
            "Ps": {"replicas": 1, "resources": "cpu=1,memory=1Gi"},
            "Worker": {"replicas": 2, "resources": "cpu=3,memory=2Gi,nvidia.com/gpu=1"},
        },
    )
    request = job_request(plan, cluster="hpc", work_dir="/shared/sb", time_limit=90)
    args = sbatch_args(request)
    # 3 tasks of 3 CPUs; memory per CPU so each task gets 2 GiB wherever it lands
    assert {"--ntasks=3", "--cpus-per-task=3", "--mem-per-cpu=683M", "--gpus-per-task=1", "--time=90"} <= set(
        args
    )
    assert not any(a.startswith(("--mem=", "--gres")) for a in args)
    body = submission_body(request)["job"]
    assert (body["tasks"], body["memory_per_cpu"], body["gpus_per_task"], body["time_limit"]) == (
        3,
        683,
        "1",
        90,
    )
    assert "srun --kill-on-bad-exit=1 --ntasks=3 --cpus-per-task=3 --gpus-per-task=1" in request.script


def test_fractional_cpus_round_up_to_whole_cores() -> None:
    plan = plan_of("python", {"Worker": {"replicas": 2, "resources": "cpu=0.1,memory=64Mi"}})
    request = job_request(plan, cluster="hpc", work_dir="/w")
    assert (request.cpus_per_task, request.memory_mb, request.memory_per_cpu) == (1, 64, True)


def test_a_uid_unfit_for_paths_is_refused() -> None:
    plan = plan_of("python", {"Worker": {"replicas": 1}}, uid="a/../b")
    with pytest.raises(ValueError, match="unfit"):
        job_request(plan, cluster="hpc", work_dir="/w")


def test_name_and_comment_lead_back_to_the_attempt() -> None:
    assert uid_of(f"sb-{UID}") == UID and uid_of("other") is None and uid_of("sb-") is None
    assert comment_fields(f"submarine-broker cluster=hpc uid={UID} experiment=e-1") == {
        "cluster": "hpc",
        "uid": UID,
        "experiment": "e-1",
    }
    assert comment_fields("someone else's job") is None and comment_fields(None) is None


def test_the_rest_body_matches_the_v0_0_38_schema(shared_dir: Path) -> None:
    schema = json.loads((shared_dir / "schemas" / "slurm" / "slurm-v0.0.38-openapi.json").read_text())
    submission = {"$ref": "#/components/schemas/v0.0.38_job_submission", "components": schema["components"]}
    validator = jsonschema.Draft202012Validator(submission)
    for roles in (
        {"Worker": {"replicas": 1, "resources": "cpu=1,memory=1Gi,nvidia.com/gpu=1"}},
        {"Master": {"replicas": 1}, "Worker": {"replicas": 2, "resources": "cpu=2,nvidia.com/gpu=1"}},
    ):
        request = job_request(plan_of("pytorch", roles), cluster="hpc", work_dir="/w", qos="q", time_limit=5)
        body = submission_body(request)
        assert not list(validator.iter_errors(body)), list(validator.iter_errors(body))
        properties = schema["components"]["schemas"]["v0.0.38_job_properties"]["properties"]
        assert set(body["job"]) <= set(properties)  # no field v0.0.38 would ignore
    bad = {"script": "#!/bin/bash\n", "job": {"tasks": "two", "environment": {}}}
    assert list(validator.iter_errors(bad))


def test_environments_carry_tokens_the_tasks_fill_in() -> None:
    plan = plan_of(
        "tensorflow",
        {"Chief": {"replicas": 1}, "Worker": {"replicas": 2}, "Ps": {"replicas": 1}},
    )
    document = tasks_document(plan, 60)
    names = [r["name"] for r in document["replicas"]]
    assert names == [r.name for r in plan.replicas] and names[0] == "chief-0"
    assert [r["decides"] for r in document["replicas"]] == [n == "chief-0" for n in names]
    endpoints = {name: (f"node{i}", 20000 + i) for i, name in enumerate(names)}
    worker1 = next(r for r in document["replicas"] if r["name"] == "worker-1")
    assert "{{host:chief-0}}" in worker1["env"]["TF_CONFIG"]
    env = substitute(worker1["env"], endpoints)
    tf = json.loads(env["TF_CONFIG"])
    chief, w0, w1, ps = (
        f"{endpoints[n][0]}:{endpoints[n][1]}" for n in ("chief-0", "worker-0", "worker-1", "ps-0")
    )
    assert tf["cluster"] == {"chief": [chief], "worker": [w0, w1], "ps": [ps]}
    assert tf["task"] == {"type": "worker", "index": 1}
    assert (env["SUBMARINE_ROLE"], env["SUBMARINE_REPLICA_INDEX"], env["JOB_ID"]) == (
        "Worker",
        "1",
        "experiment-1-0001",
    )
    assert not any("{{" in value for value in env.values())

    torch = tasks_document(plan_of("pytorch", {"Master": {"replicas": 1}, "Worker": {"replicas": 2}}), 60)
    worker = substitute(
        torch["replicas"][2]["env"], {"master-0": ("n0", 29500), "worker-0": ("n1", 1), "worker-1": ("n2", 2)}
    )
    assert (worker["MASTER_ADDR"], worker["MASTER_PORT"], worker["RANK"], worker["WORLD_SIZE"]) == (
        "n0",
        "29500",
        "2",
        "3",
    )
    assert all(r["decides"] for r in torch["replicas"])


def test_the_batch_script_is_valid_bash_with_everything_inline(tmp_path: Path) -> None:
    plan = plan_of(
        "pytorch", {"Master": {"replicas": 1}, "Worker": {"replicas": 1}}, cmd="python -c 'print(1)'"
    )
    request = job_request(plan, cluster="hpc", work_dir="/shared/my work", python="/opt/py/bin/python3")
    script = tmp_path / "job.sh"
    script.write_text(request.script)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert f"job_dir='/shared/my work/{UID}'" in request.script
    assert "/opt/py/bin/python3 slurm_task.py" in request.script
    assert "def main(" in request.script and '"argv"' in request.script and "#SBATCH" not in request.script
    # The task entry imports the placeholder scheme from its folder: the script writes both files.
    assert "cat > slurm_task.py <<" in request.script and "cat > rendezvous.py <<" in request.script
    assert "cat > tensorboard_sync.py <<" in request.script and "cat > venv_build.py <<" in request.script
    assert "def render_env(" in request.script


def test_squeue_and_sinfo_parsers() -> None:
    text = (
        "CLUSTER: hpc\n"
        f"12|sb-{UID}|RUNNING|None|vm|submarine-broker cluster=hpc uid={UID} experiment=e-1\n"
        "13|other|PENDING|Resources||comment | with a bar\n"
        "garbage line\n"
    )
    first, second = parse_squeue(text)
    assert (first.job_id, first.state, first.reason, first.nodes) == ("12", "RUNNING", "", "vm")
    assert second.reason == "Resources" and second.comment == "comment | with a bar"
    nodes = parse_sinfo(
        "n1|mixed|2/2/0/4|8000|3000|gpu:a100:2(S:0)|gpu:a100:1(IDX:0)|\n"
        "n2|down*|0/0/8/8|8000|0|(null)|gpu:0|\n"
        "n1|mixed|2/2/0/4|8000|3000|gpu:a100:2(S:0)|gpu:a100:1(IDX:0)|\n"
    )
    assert [n.name for n in nodes] == ["n1", "n2"]
    assert nodes[0] == NodeRecord("n1", "mixed", 4, 2, 8000, 3000, 2, 1)
    assert nodes[0].usable and not nodes[1].usable
    assert not NodeRecord("n", "drained", 1, 0, 1, 0).usable and NodeRecord("n", "idle~", 1, 0, 1, 0).usable
    assert (
        gpu_count("gpu:2,mps:400") == 2
        and gpu_count("gpu:a:1(S:0-1),gpu:b:3") == 4
        and gpu_count("(null)") == 0
    )
    assert unreachable("slurm_load_jobs error: Unable to contact slurm controller (connect failure)")
    assert not unreachable("sbatch: error: Batch job submission failed: Invalid account")


def test_slurmrestd_answers_read_as_unreachable_or_rejected(tmp_path: Path) -> None:
    import asyncio

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-SLURM-USER-TOKEN"] == SECRET
        path = request.url.path
        if path == "/slurm/v0.0.38/nodes":
            return httpx.Response(401, text="Authentication failure")
        if path == "/slurm/v0.0.38/jobs":
            return httpx.Response(502, text="bad gateway")
        if path == "/slurm/v0.0.38/job/submit":
            body = {"errors": [{"error": "Invalid partition name specified", "error_number": 2009}]}
            return httpx.Response(500, json=body)
        return httpx.Response(404)

    config = SlurmClusterConfig(
        name="hpc", mode="rest", rest_url="unix:/run/slurmrestd.sock", user="alice", token=SECRET
    )
    adapter = SlurmAdapter(config, data_dir=str(tmp_path))
    adapter.backend.transport = httpx.MockTransport(answer)  # type: ignore[attr-defined]
    plan = plan_of("python", {"Worker": {"replicas": 1}})

    async def body() -> None:
        health = await adapter.health()
        assert not health.reachable and "refused the credentials" in health.message
        with pytest.raises(ClusterUnreachable, match="HTTP 502"):
            await adapter.poll([Handle(UID, {"job_id": "7", "replicas": ["worker-0"]})])
        with pytest.raises(ClusterUnreachable):  # find_job lists the jobs first
            await adapter.submit(plan)
        with pytest.raises(SubmitRejected, match="Invalid partition name specified") as caught:
            await adapter.submit_job(plan)
        assert SECRET not in str(caught.value)
        await adapter.close()

    asyncio.run(body())


def _run_tasks(
    job_dir: Path, replicas: list[dict], timeout: float = 30, extra: dict | None = None
) -> list[int]:
    """Run the task entry for every replica at once, as the job's srun would (SLURM_PROCID = rank):
    copies of runtimes/slurm_task.py, rendezvous.py, tensorboard_sync.py and venv_build.py in the
    job's folder, run as a file; ``extra`` goes into ``tasks.json``."""
    import os
    import shutil
    import sys

    from runtimes import rendezvous, slurm_task, tensorboard_sync, venv_build

    document = {"rendezvous_timeout": 0.5, "replicas": replicas, **(extra or {})}
    (job_dir / "tasks.json").write_text(json.dumps(document))
    shutil.copy(slurm_task.__file__, job_dir / "slurm_task.py")
    shutil.copy(rendezvous.__file__, job_dir / "rendezvous.py")
    shutil.copy(tensorboard_sync.__file__, job_dir / "tensorboard_sync.py")
    shutil.copy(venv_build.__file__, job_dir / "venv_build.py")
    procs = [
        subprocess.Popen(
            [sys.executable, str(job_dir / "slurm_task.py"), str(job_dir)],
            env={**os.environ, "SLURM_PROCID": str(rank), "SLURMD_NODENAME": "node-a"},
            cwd=job_dir,  # the batch script's `cd "$job_dir"`
            stdout=subprocess.DEVNULL,
        )
        for rank in range(len(replicas))
        if not replicas[rank].get("absent")
    ]
    return [p.wait(timeout) for p in procs]


def test_the_task_entry_stops_service_replicas_after_success_and_times_out_alone(tmp_path: Path) -> None:
    import sys

    chief = {
        "name": "chief-0",
        "argv": [sys.executable, "-c", "import os; print(os.environ['PEER'])"],
        "env": {"PEER": "{{host:ps-0}}:{{port:ps-0}}"},
        "decides": True,
    }
    ps = {
        "name": "ps-0",
        "argv": [sys.executable, "-c", "import time; print('serving', flush=True); time.sleep(60)"],
        "env": {},
        "decides": False,
    }
    assert _run_tasks(tmp_path, [chief, ps]) == [0, 0]
    ends = {n: json.loads((tmp_path / f"{n}.exit").read_text()) for n in ("chief-0", "ps-0")}
    assert ends["chief-0"] == {"code": 0}
    assert ends["ps-0"]["stopped"] == "the run finished"
    address = json.loads((tmp_path / "ps-0.addr").read_text())
    assert (tmp_path / "chief-0.log").read_text() == f"node-a:{address['port']}\n"

    alone = tmp_path / "alone"
    alone.mkdir()
    assert _run_tasks(alone, [chief, {**ps, "absent": True}]) == [1]
    assert "replicas ps-0 did not start in time" in (alone / "chief-0.log").read_text()
    assert json.loads((alone / "chief-0.exit").read_text()) == {"code": 1}


def test_the_tasks_build_the_environment_once_per_hash_and_run_in_it(tmp_path: Path) -> None:
    from runtimes import venv_build
    from runtimes.environment import EnvironmentPlan
    from tests.wheels import offline_pip_args, write_wheel

    env = EnvironmentPlan.of("probe", pip=["envprobe"])
    wheels = tmp_path / "wheels"
    write_wheel(wheels)
    the_plan = plan_of("tensorflow", {"Worker": {"replicas": 1}}).model_copy(update={"environment": env})
    document = tasks_document(
        the_plan, 5, environments=str(tmp_path / "environments"), pip_args=offline_pip_args(wheels)
    )
    assert document["environment"]["short_hash"] == env.short_hash
    assert document["environment"]["pip_args"] == offline_pip_args(wheels)
    extra = {k: document[k] for k in ("environment", "environment_root")}
    code = "import envprobe, sys; print(envprobe.VALUE, sys.prefix)"
    replica = {"argv": ["python", "-c", code], "env": {}, "decides": True}
    replicas = [{**replica, "name": "worker-0"}, {**replica, "name": "worker-1"}]
    venv = tmp_path / "environments" / env.short_hash

    first = tmp_path / "job-1"
    first.mkdir()
    assert _run_tasks(first, replicas, timeout=300, extra=extra) == [0, 0]
    for name in ("worker-0", "worker-1"):
        assert (first / f"{name}.log").read_text().splitlines() == [f"42 {venv}"]
    log = (first / "environment.log").read_text()
    assert log.count("building in") == 1, log  # the second task read the first one's outcome
    assert venv_build.read_status(first) == {"state": "ready", "message": ""}

    second = tmp_path / "job-2"  # a later job of the same hash reuses the build
    second.mkdir()
    assert _run_tasks(second, replicas[:1], timeout=300, extra=extra) == [0]
    assert (second / "environment.log").read_text().splitlines() == [
        f"environment probe (1 package): reusing the build in {venv}"
    ]

    bad = tasks_document(
        the_plan.model_copy(update={"environment": EnvironmentPlan.of("bad", pip=["nosuchpkg"])}),
        5,
        environments=str(tmp_path / "environments"),
        pip_args=offline_pip_args(wheels),
    )
    third = tmp_path / "job-3"
    third.mkdir()
    extra = {k: bad[k] for k in ("environment", "environment_root")}
    assert _run_tasks(third, replicas[:1], timeout=300, extra=extra) == [1]
    status = venv_build.read_status(third)
    assert status is not None and status["state"] == "failed" and "nosuchpkg" in status["message"]
    assert "could not be built" in (third / "worker-0.log").read_text()
    assert "42" not in (third / "worker-0.log").read_text()
