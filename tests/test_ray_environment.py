"""Environments on Ray: the job's runtime_env comes from the plan's environment, and the job's metadata
names the environment, its revision and its hash. The last test runs a job on the suite's real Ray
head whose replica imports a package Ray installed from the environment's pip list (a local wheel,
no index)."""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

from pydantic import SecretStr

from clusters.base import Phase
from clusters.ray.adapter import RayAdapter, submission_id
from clusters.ray.config import RayClusterConfig
from runtimes.environment import EnvironmentPlan
from runtimes.frameworks import build_plan
from runtimes.images import RegistryAuth
from runtimes.plan import LaunchPlan
from runtimes.rendezvous import PlaceholderAddressing
from runtimes.spec import ExperimentSpec
from tests.doubles.ray_sdk import FakeSDK
from tests.ray_cluster import RayHead
from tests.support import wait_for
from tests.wheels import write_wheel

TORCH = EnvironmentPlan.of("torch-2", revision=4, image="pytorch/pytorch:2.4", pip=["Tqdm==4.66", "six"])


def plan_with(
    env: EnvironmentPlan | None, code: str = "print('hi')", uid: str = "u1", **update: object
) -> LaunchPlan:
    spec = ExperimentSpec.model_validate(
        {
            "meta": {"name": "job", "framework": "python", "cmd": f'{sys.executable} -c "{code}"'},
            "spec": {"Worker": {"replicas": 1, "resources": "cpu=0.5,memory=64M"}},
            "environment": {"kernelSpec": {"name": "k", "pipDependencies": ["old-pkg"]}},
        }
    )
    plan = build_plan(
        spec, workload_id="experiment-1", uid=uid, namespace="ns", addressing=PlaceholderAddressing()
    )
    return plan.model_copy(update={"environment": env, **update})


def adapter(tmp_path: Path, **fields: object) -> tuple[RayAdapter, FakeSDK]:
    made = RayAdapter(RayClusterConfig(name="ray", address="http://h:8265", **fields), data_dir=str(tmp_path))
    sdk = FakeSDK()
    made._client = sdk
    return made, sdk


def test_the_job_carries_the_environments_packages_and_identity(tmp_path: Path) -> None:
    ray, sdk = adapter(tmp_path)
    secret = "ray-should-never-see-0123"
    auth = {
        "corp": RegistryAuth(registry="corp", server="r.example", username="u", password=SecretStr(secret))
    }
    plan = plan_with(TORCH, registry_auth=auth)
    asyncio.run(ray.submit(plan))
    job = sdk.jobs[submission_id(plan.uid)]
    assert job.runtime_env["pip"] == ["six", "tqdm==4.66"]  # the environment's, not the spec's kernelSpec
    assert "conda" not in job.runtime_env and "image_uri" not in job.runtime_env
    assert job.metadata["environment"] == "torch-2"
    assert job.metadata["environment_revision"] == "4"
    assert job.metadata["environment_hash"] == TORCH.hash
    assert secret not in str(job.entrypoint) + str(job.runtime_env) + str(job.metadata)


def test_conda_with_channels_and_python_and_the_fallback_to_the_plans_lists(tmp_path: Path) -> None:
    ray, _ = adapter(tmp_path)
    sci = EnvironmentPlan.of("sci", conda=["numpy"], channels=["conda-forge"], pip=["six"], python="3.11")
    env = ray.runtime_env(plan_with(sci))
    assert env["conda"] == {
        "dependencies": ["python=3.11", "numpy", "pip", {"pip": ["six"]}],
        "channels": ["conda-forge"],
    }
    legacy = plan_with(None)
    assert ray.runtime_env(legacy)["pip"] == ["old-pkg"]  # no environment: the plan's own lists
    assert "environment_hash" not in ray.metadata(legacy, "ray")


def test_installs_are_refused_where_the_config_forbids_them(tmp_path: Path) -> None:
    ray, _ = adapter(tmp_path)
    assert ray.environment_problem(TORCH) is None
    closed, _ = adapter(tmp_path, allow_installs=False)
    reason = closed.environment_problem(TORCH) or ""
    assert "allow_installs: false" in reason and "'ray'" in reason
    assert closed.environment_problem(EnvironmentPlan.of("img", image="x:1")) is None


def test_a_real_ray_job_imports_the_package_its_environment_installed(
    ray_head: RayHead, tmp_path: Path
) -> None:
    wheel = write_wheel(tmp_path / "wheels", "sbraydemo", "1.0", value=7)
    env = EnvironmentPlan.of("demo", revision=1, pip=[str(wheel)])
    ray = RayAdapter(RayClusterConfig(name="ray", address=ray_head.address), data_dir=str(tmp_path))
    uid = f"env-{secrets.token_hex(4)}"
    plan = plan_with(env, "import sbraydemo; print(sbraydemo.VALUE)", uid=uid)
    plan = plan.model_copy(
        update={"replicas": [r.model_copy(update={"argv": ["python", *r.argv[1:]]}) for r in plan.replicas]}
    )
    handle = asyncio.run(ray.submit(plan))
    jobs = ray_head.jobs()
    try:
        info = jobs.get_job_info(submission_id(uid))
        assert info.metadata["environment_hash"] == env.hash and info.metadata["environment"] == "demo"
        assert info.runtime_env["pip"]["packages"] == [str(wheel)] or info.runtime_env["pip"] == [str(wheel)]
        wait_for(
            lambda: jobs.get_job_status(submission_id(uid)) in ("SUCCEEDED", "FAILED", "STOPPED"),
            timeout=300,
            what="the Ray job to end",
        )
        logs = asyncio.run(ray.logs(handle))
        assert jobs.get_job_status(submission_id(uid)) == "SUCCEEDED", jobs.get_job_logs(submission_id(uid))[
            -3000:
        ]
        assert logs[0].lines == ["7"]
    finally:
        asyncio.run(ray.cancel(handle))


def test_a_real_ray_job_whose_environment_cannot_install_fails_for_its_environment(
    ray_head: RayHead, tmp_path: Path
) -> None:
    missing = tmp_path / "wheels" / "sbgone-1.0-py3-none-any.whl"
    env = EnvironmentPlan.of("broken", revision=2, pip=[str(missing)])
    ray = RayAdapter(RayClusterConfig(name="ray", address=ray_head.address), data_dir=str(tmp_path))
    uid = f"bad-{secrets.token_hex(4)}"
    handle = asyncio.run(ray.submit(plan_with(env, uid=uid)))
    try:
        seen = wait_for(
            lambda: (o := asyncio.run(ray.poll([handle]))[uid]).phase is Phase.FAILED and o,
            timeout=300,
            interval=1,
            what="the Ray job to fail",
        )
        assert seen.failure_category == "environment"
        assert seen.message.startswith("environment broken could not be installed on ray: ERROR:")
        assert str(missing) in seen.message
    finally:
        asyncio.run(ray.cancel(handle))
