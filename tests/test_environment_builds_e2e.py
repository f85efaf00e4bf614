"""Environments built on a real broker's ``local`` cluster: a registered environment's venv is
built once for two experiments submitted together, their statusMessage says so meanwhile, both
import its package, a third reuses it, a package pip cannot find fails with category
``environment``, and the build's output is in the experiment's logs (REST and CLI). The package
is a wheel the test writes; pip installs from its folder with no index."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from tests.support import Broker, wait_for
from tests.test_cli_e2e import cli
from tests.wheels import offline_pip_args, write_wheel

PROBE = "import envprobe, sys; print(envprobe.VALUE); print(sys.prefix)"
BUILD_TIMEOUT = 240


def spec(name: str, environment: dict[str, Any], code: str = PROBE) -> dict[str, Any]:
    """An experiment running ``python -c code``: ``python`` is the one its environment puts first."""
    import shlex

    return {
        "meta": {"name": name, "framework": "python", "cmd": f"python -c {shlex.quote(code)}"},
        "environment": environment,
        "spec": {"Worker": {"replicas": 1, "resources": "cpu=0.1,memory=64M"}},
    }


def test_one_build_for_two_experiments_then_reuse_then_a_failed_build(broker_factory, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    write_wheel(wheels)
    broker: Broker = broker_factory(
        clusters={"local": {"kind": "local", "pip_args": offline_pip_args(wheels)}}
    )
    made = broker.client.post(
        "/environment",
        json={"name": "probe", "dockerImage": "python:3.11", "kernelSpec": {"pipDependencies": ["envprobe"]}},
    )
    assert made.status_code == 200, made.text
    short = made.json()["result"]["hash"][:16]
    cache = broker.work_dir("local") / "environments"
    venv = cache / short
    cache.mkdir(parents=True)

    # The test holds the build's lock, as a build under way would: both experiments wait for it.
    fd = os.open(cache / f"{short}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        first = broker.submit(spec("env-a", {"name": "probe"}))["experimentId"]
        second = broker.submit(spec("env-b", {"name": "probe"}))["experimentId"]
        for exp in (first, second):
            shown = wait_for(
                lambda exp=exp: _building(broker, exp), timeout=60, what=f"{exp} to say it builds"
            )
            assert shown["status"] != "Running", shown
            assert shown["statusMessage"] == "building environment probe (1 package) on local"
    finally:
        os.close(fd)

    built = 0
    for exp in (first, second):
        broker.wait_status(exp, "Succeeded", timeout=BUILD_TIMEOUT)
        logs = broker.logs(exp)
        assert list(logs) == [f"{exp}-environment", f"{exp}-worker-0"]
        assert logs[f"{exp}-worker-0"] == ["42", str(venv)]
        built += sum("building in" in line for line in logs[f"{exp}-environment"])
    assert built == 1
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [short]

    third = broker.submit(spec("env-c", {"name": "probe"}))["experimentId"]
    broker.wait_status(third, "Succeeded", timeout=BUILD_TIMEOUT)
    assert broker.logs(third)[f"{third}-environment"] == [
        f"environment probe (1 package): reusing the build in {venv}"
    ]
    shown = cli(broker, "experiment", "logs", third)
    assert shown.returncode == 0, shown.stderr
    assert "reusing the build" in shown.stdout and "42" in shown.stdout

    bad = broker.submit(spec("env-bad", {"kernelSpec": {"pipDependencies": ["nosuchpkg"]}}, "print('never')"))
    failed = broker.wait_status(bad["experimentId"], "Failed", timeout=BUILD_TIMEOUT)
    assert failed["failureCategory"] == "environment", failed
    assert "nosuchpkg" in failed["reason"] and "error:" in failed["reason"].lower(), failed["reason"]
    build_log = broker.logs(bad["experimentId"])[f"{bad['experimentId']}-environment"]
    assert any(
        line.strip().lower().startswith(("error:", "cause:")) and "nosuchpkg" in line for line in build_log
    )


def _building(broker: Broker, exp: str) -> dict[str, Any] | None:
    found = broker.experiment(exp)
    return found if "building environment" in (found.get("statusMessage") or "") else None


def test_prepare_builds_ahead_and_the_next_experiment_starts_warm(broker_factory, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    write_wheel(wheels)
    broker: Broker = broker_factory(
        clusters={"local": {"kind": "local", "pip_args": offline_pip_args(wheels)}}
    )
    for name, packages in (("probe", ["envprobe"]), ("broken", ["nosuchpkg"])):
        made = broker.client.post(
            "/environment", json={"name": name, "kernelSpec": {"pipDependencies": packages}}
        )
        assert made.status_code == 200, made.text
    short = made.json()["result"]["hash"][:16]

    prepared = broker.client.post(
        "/environment/probe/prepare", params={"cluster": "local"}, timeout=BUILD_TIMEOUT
    )
    assert prepared.status_code == 200, prepared.text
    venv = broker.work_dir("local") / "environments" / prepared.json()["result"]["hash"][:16]
    assert (venv / ".complete").is_file()

    exp = broker.submit(spec("warm", {"name": "probe"}))["experimentId"]
    broker.wait_status(exp, "Succeeded", timeout=BUILD_TIMEOUT)
    logs = broker.logs(exp)
    assert logs[f"{exp}-environment"] == [f"environment probe (1 package): reusing the build in {venv}"]
    assert logs[f"{exp}-worker-0"] == ["42", str(venv)]

    failed = broker.client.post(
        "/environment/broken/prepare", params={"cluster": "local"}, timeout=BUILD_TIMEOUT
    )
    assert failed.status_code == 422, failed.text
    assert "nosuchpkg" in failed.json()["message"]
    assert not (broker.work_dir("local") / "environments" / short).exists()
