"""Environments on the suite's real Slurm through a real broker: the first job builds the venv in
the shared ``work_dir`` (its statusMessage says so while it waits for the build), a second job
reuses it, and a package pip cannot find fails the experiment with category ``environment``.
The package is a wheel the test writes (a name of its own, so the session's cache starts cold)."""

from __future__ import annotations

import fcntl
import os
import secrets
import shlex
from pathlib import Path
from typing import Any

from runtimes.environment import EnvironmentPlan
from tests.slurm_cluster import SlurmCluster
from tests.support import Broker, wait_for
from tests.wheels import offline_pip_args, write_wheel

FAST = {"dispatch_interval": 0.3, "monitor_interval": 0.3, "health_interval": 0.5}
BUILD_TIMEOUT = 240


def spec(name: str, packages: list[str], code: str) -> dict[str, Any]:
    return {
        "meta": {"name": name, "framework": "python", "cmd": f"python -c {shlex.quote(code)}"},
        "environment": {"kernelSpec": {"pipDependencies": packages}},
        "spec": {"Worker": {"replicas": 1, "resources": "cpu=0.5,memory=64Mi"}},
    }


def test_the_first_job_builds_the_venv_on_the_shared_work_dir_and_the_next_reuses_it(
    broker_factory, slurm: SlurmCluster, tmp_path: Path
) -> None:
    package = f"envprobe_{secrets.token_hex(4)}"
    wheels = tmp_path / "wheels"
    write_wheel(wheels, package=package)
    broker: Broker = broker_factory(
        clusters={"hpc": slurm.cluster_config(pip_args=offline_pip_args(wheels))}, loops=FAST
    )
    short = EnvironmentPlan.of("inline", pip=[package]).short_hash
    cache = slurm.work_dir / "environments"
    venv = cache / short
    code = f"import {package}, sys; print({package}.VALUE); print(sys.prefix)"
    cache.mkdir(parents=True, exist_ok=True)

    fd = os.open(cache / f"{short}.lock", os.O_RDWR | os.O_CREAT)  # a build under way elsewhere
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        first = broker.submit(spec("env-1", [package], code))["experimentId"]
        shown = wait_for(
            lambda: _building(broker, first), timeout=60, what="the job to wait for its environment"
        )
        assert shown["statusMessage"] == "building environment inline (1 package) on hpc"
        assert shown["status"] != "Running"
    finally:
        os.close(fd)
    broker.wait_status(first, "Succeeded", timeout=BUILD_TIMEOUT)
    logs = broker.logs(first)
    assert list(logs) == [f"{first}-environment", f"{first}-worker-0"]
    assert logs[f"{first}-worker-0"] == ["42", str(venv)]
    assert sum("building in" in line for line in logs[f"{first}-environment"]) == 1

    second = broker.submit(spec("env-2", [package], code))["experimentId"]
    broker.wait_status(second, "Succeeded", timeout=BUILD_TIMEOUT)
    logs = broker.logs(second)
    assert logs[f"{second}-environment"] == [f"environment inline (1 package): reusing the build in {venv}"]
    assert logs[f"{second}-worker-0"] == ["42", str(venv)]

    bad = broker.submit(spec("env-bad", [f"nosuchpkg-{secrets.token_hex(4)}"], "print('never')"))
    failed = broker.wait_status(bad["experimentId"], "Failed", timeout=BUILD_TIMEOUT)
    assert failed["failureCategory"] == "environment", failed
    assert "could not be built: " in failed["reason"] and "nosuchpkg" in failed["reason"], failed["reason"]
    assert "never" not in broker.logs(bad["experimentId"])[f"{bad['experimentId']}-worker-0"]


def _building(broker: Broker, exp: str) -> dict[str, Any] | None:
    found = broker.experiment(exp)
    return found if "building environment" in (found.get("statusMessage") or "") else None


def test_prepare_builds_ahead_with_a_build_job_and_drop_removes_the_build(
    broker_factory, slurm: SlurmCluster, tmp_path: Path
) -> None:
    import asyncio

    from clusters.slurm.adapter import SlurmAdapter
    from clusters.slurm.config import SlurmClusterConfig

    package = f"envprobe_{secrets.token_hex(4)}"
    wheels = tmp_path / "wheels"
    write_wheel(wheels, package=package)
    config = slurm.cluster_config(pip_args=offline_pip_args(wheels))
    broker: Broker = broker_factory(clusters={"hpc": config}, loops=FAST)
    for name, packages in (("warm", [package]), ("broken", [f"nosuchpkg-{secrets.token_hex(4)}"])):
        made = broker.client.post(
            "/environment", json={"name": name, "kernelSpec": {"pipDependencies": packages}}
        )
        assert made.status_code == 200, made.text
    env_hash = broker.client.get("/environment/warm").json()["result"]["hash"]
    venv = slurm.work_dir / "environments" / env_hash[:16]

    prepared = broker.client.post(
        "/environment/warm/prepare", params={"cluster": "hpc"}, timeout=BUILD_TIMEOUT
    )
    assert prepared.status_code == 200, prepared.text
    assert (venv / ".complete").is_file()
    assert [row for row in slurm.squeue() if row[1] == f"sb-env-{env_hash[:16]}"]  # built by a job

    code = f"import {package}, sys; print({package}.VALUE); print(sys.prefix)"
    exp = broker.submit({**spec("warm-1", [package], code), "environment": {"name": "warm"}})["experimentId"]
    broker.wait_status(exp, "Succeeded", timeout=BUILD_TIMEOUT)
    logs = broker.logs(exp)
    assert logs[f"{exp}-environment"] == [f"environment warm (1 package): reusing the build in {venv}"]
    assert logs[f"{exp}-worker-0"] == ["42", str(venv)]

    failed = broker.client.post(
        "/environment/broken/prepare", params={"cluster": "hpc"}, timeout=BUILD_TIMEOUT
    )
    assert failed.status_code == 422, failed.text
    assert "nosuchpkg" in failed.json()["message"]

    adapter = SlurmAdapter(
        SlurmClusterConfig.model_validate({"name": "hpc", **config}), data_dir=str(tmp_path)
    )
    try:
        assert asyncio.run(adapter.drop_environment(env_hash)) is True
    finally:
        asyncio.run(adapter.close())
    assert not venv.exists()
