"""Environments on the ``local`` kind: a venv per hash, built once before the replicas start,
reused by later work, its build visible in the attempt's status and logs (real builds, from a
wheel the test writes, with no index)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from clusters.base import Capability, Handle, Observation, Phase
from clusters.errors import EnvironmentBuildFailed
from clusters.local.adapter import LocalAdapter
from clusters.local.config import LocalClusterConfig
from clusters.local.processes import is_ours, read_json
from runtimes import venv_build
from runtimes.environment import EnvironmentPlan
from runtimes.plan import LaunchPlan
from tests.test_local_adapter import observe, plan, terminal
from tests.wheels import offline_pip_args, write_wheel

PROBE = "import envprobe, sys; print('value', envprobe.VALUE); print(sys.prefix)"


async def until(
    probe: Callable[[], Awaitable[Observation]], done: Callable[[Observation], bool]
) -> Observation:
    """Poll ``probe`` until ``done`` holds, for at most 180 s (builds are slow on a busy host)."""
    deadline = time.monotonic() + 180
    while True:
        seen = await probe()
        if done(seen) or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.1)


def with_env(uid: str, env: EnvironmentPlan, code: str = PROBE) -> LaunchPlan:
    """A one-replica plan running ``python -c code`` (``python`` from PATH: the venv's) in ``env``."""
    return plan(uid, ["python", "-c", code]).model_copy(update={"environment": env})


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "wheels"
    write_wheel(folder)
    return folder


@pytest.fixture
def adapter(tmp_path: Path, wheels: Path) -> Iterator[LocalAdapter]:
    config = LocalClusterConfig(name="here", pip_args=offline_pip_args(wheels))
    made = LocalAdapter(config, data_dir=str(tmp_path))
    yield made
    made.cancel_grace = 1.0
    for attempt in made.work_dir.glob("*/"):
        if (attempt / "plan.json").exists():
            asyncio.run(made.cancel(Handle(attempt.name, {"dir": str(attempt)})))
    for pid_file in tmp_path.rglob("*.pid"):
        record = read_json(pid_file)
        if record and is_ours(record):
            with contextlib.suppress(OSError):
                os.killpg(int(record["pid"]), signal.SIGKILL)


def builds(adapter: LocalAdapter) -> list[str]:
    """The venv folders in the cluster's cache."""
    root = adapter.environments
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def env_log(logs: list, name: str = "environment") -> list[str]:
    return next(r.lines for r in logs if r.replica == name)


def test_the_local_kind_keeps_an_environment_cache() -> None:
    assert Capability.ENVIRONMENT_CACHE in LocalAdapter.capabilities


def test_two_attempts_build_one_venv_once_and_a_third_reuses_it(adapter: LocalAdapter) -> None:
    env = EnvironmentPlan.of("probe", pip=["envprobe"])
    venv = adapter.environments / env.short_hash
    adapter.environments.mkdir(parents=True)

    async def scenario() -> None:
        # The test holds the build's lock, as a build under way would: both attempts wait.
        fd = os.open(adapter.environments / f"{env.short_hash}.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            first = await adapter.submit(with_env("env-a", env))
            second = await adapter.submit(with_env("env-b", env))
            for handle in (first, second):
                seen = await until(
                    observe(adapter, handle),
                    lambda o: "waiting for the build" in " ".join(env_log(asyncio_logs(adapter, o.uid))),
                )
                assert seen.phase is Phase.PENDING, seen
                assert seen.message == "building environment probe (1 package) on here"
        finally:
            os.close(fd)
        done = [await until(observe(adapter, h), terminal) for h in (first, second)]
        assert [o.phase for o in done] == [Phase.SUCCEEDED, Phase.SUCCEEDED], done
        built = 0
        for handle in (first, second):
            logs = await adapter.logs(handle)
            assert [r.replica for r in logs] == ["environment", "worker-0"]
            assert env_log(logs, "worker-0") == ["value 42", str(venv)]
            built += sum("building in" in line for line in env_log(logs))
        assert built == 1
        assert builds(adapter) == [env.short_hash]
        assert (venv / venv_build.COMPLETE).is_file()

        third = await adapter.submit(with_env("env-c", env))
        assert (await until(observe(adapter, third), terminal)).phase is Phase.SUCCEEDED
        logs = await adapter.logs(third)
        assert env_log(logs) == [f"environment probe (1 package): reusing the build in {venv}"]
        assert env_log(logs, "worker-0") == ["value 42", str(venv)]
        assert await adapter.logs(third, replica="environment") == [logs[0]]

    asyncio.run(scenario())


def asyncio_logs(adapter: LocalAdapter, uid: str) -> list:
    """The attempt's logs, read synchronously (from a probe's predicate)."""
    return adapter._logs(Handle(uid, {"dir": str(adapter.work_dir / uid)}), None, None)


def test_a_package_pip_cannot_find_fails_the_attempt_with_category_environment(adapter: LocalAdapter) -> None:
    env = EnvironmentPlan.of("broken", pip=["envprobe", "nosuchpkg"])

    async def scenario() -> None:
        handle = await adapter.submit(with_env("env-bad", env, "print('never')"))
        seen = await until(observe(adapter, handle), terminal)
        assert seen.phase is Phase.FAILED
        assert seen.failure_category == "environment"
        # pip's "ERROR: No matching distribution found for nosuchpkg" (uv's "error: ... cause: ...")
        assert seen.message.startswith("environment broken (2 packages) could not be built: ")
        assert seen.message.split(": ", 1)[1].lower().startswith("error: ") and "nosuchpkg" in seen.message
        logs = await adapter.logs(handle)
        assert any(
            line.strip().lower().startswith(("error:", "cause:")) and "nosuchpkg" in line
            for line in env_log(logs)
        )
        assert env_log(logs, "worker-0")[-1].endswith(seen.message.split(": ", 1)[1])
        assert "never" not in env_log(logs, "worker-0")
        assert builds(adapter) == []  # a failed build leaves no venv to be mistaken for one

    asyncio.run(scenario())


def test_prepare_builds_ahead_rebuilds_a_half_built_venv_and_drop_removes_it(adapter: LocalAdapter) -> None:
    env = EnvironmentPlan.of("probe", pip=["envprobe"])
    venv = adapter.environments / env.short_hash
    venv.mkdir(parents=True)
    (venv / "junk").write_text("a build cut short")

    async def scenario() -> None:
        await adapter.prepare_environment(env)
        assert not (venv / "junk").exists()
        assert (venv / venv_build.COMPLETE).is_file()
        log = (adapter.environments / f"{env.short_hash}.log").read_text()
        assert "removing an incomplete build" in log and "built" in log
        handle = await adapter.submit(with_env("env-warm", env))
        assert (await until(observe(adapter, handle), terminal)).phase is Phase.SUCCEEDED
        assert "reusing the build" in env_log(await adapter.logs(handle))[0]

        assert await adapter.drop_environment(env.hash) is True
        assert builds(adapter) == []
        assert await adapter.drop_environment(env.hash) is True  # gone already

        with pytest.raises(EnvironmentBuildFailed, match="nosuchpkg"):
            await adapter.prepare_environment(EnvironmentPlan.of("bad", pip=["nosuchpkg"]))

    asyncio.run(scenario())


def test_environments_the_host_cannot_build_are_refused_with_a_reason(adapter: LocalAdapter) -> None:
    assert adapter.environment_problem(EnvironmentPlan.of("plain", pip=["envprobe"])) is None
    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert adapter.environment_problem(EnvironmentPlan.of("same", pip=["x"], python=mine)) is None
    old = adapter.environment_problem(EnvironmentPlan.of("old", pip=["x"], python="2.6"))
    assert old == "cluster 'here': no Python 2.6 (no python2.6 on PATH)"
    if venv_build.conda_executable() is None:
        conda = adapter.environment_problem(EnvironmentPlan.of("c", conda=["numpy"]))
        assert conda is not None and "no conda or mamba on PATH" in conda and "numpy" in conda


def test_a_plan_without_packages_runs_as_before(adapter: LocalAdapter) -> None:
    async def scenario() -> None:
        handle = await adapter.submit(
            with_env(
                "env-none", EnvironmentPlan.of("image-only", image="x:1"), "import sys; print(sys.prefix)"
            )
        )
        assert (await until(observe(adapter, handle), terminal)).phase is Phase.SUCCEEDED
        logs = await adapter.logs(handle)
        assert [r.replica for r in logs] == ["worker-0"]
        assert builds(adapter) == []

    asyncio.run(scenario())


def test_a_run_as_user_runs_in_the_venv_the_broker_built(wheels: Path) -> None:
    """The venv is the broker's, readable by the run-as users (they cannot change it)."""
    import pwd

    from tests.run_as import ensure_users, is_root, remove_tree, scratch_dir
    from tests.support import kill_replicas

    if not is_root():
        pytest.fail("the run_as tests switch users, which needs root (as CI has)")
    user = ensure_users()[0]
    scratch = scratch_dir()
    config = LocalClusterConfig(
        name="shared", work_dir=scratch / "work", run_as=user, pip_args=offline_pip_args(wheels)
    )
    shared = LocalAdapter(config, data_dir=str(scratch / "data"))
    env = EnvironmentPlan.of("probe", pip=["envprobe"])
    code = (
        "import envprobe, os, sys; print(envprobe.VALUE, os.getuid(), sys.prefix); "
        "print(os.access(envprobe.__file__, os.W_OK))"
    )
    try:

        async def scenario() -> list[str]:
            handle = await shared.submit(with_env("env-user", env, code))
            seen = await until(observe(shared, handle), terminal)
            assert seen.phase is Phase.SUCCEEDED, (seen, await shared.logs(handle))
            return env_log(await shared.logs(handle), "worker-0")

        venv = shared.environments / env.short_hash
        assert asyncio.run(scenario()) == [f"42 {pwd.getpwnam(user).pw_uid} {venv}", "False"]
    finally:
        kill_replicas(scratch)
        remove_tree(scratch)


def test_the_installers_own_line_is_the_reason() -> None:
    pip = [
        "Looking in links: /w",
        "ERROR: Could not find a version that satisfies the requirement nosuchpkg (from versions: none)",
        "ERROR: No matching distribution found for nosuchpkg",
    ]
    assert venv_build.installer_error(pip) == "ERROR: No matching distribution found for nosuchpkg"
    uv = [
        "Using Python 3.11.2 environment at: v",
        "error: No solution found when resolving dependencies",
        "  cause: Because nosuchpkg was not found in the provided package locations and you require "
        "nosuchpkg, we can conclude that your requirements are unsatisfiable.",
    ]
    assert venv_build.installer_error(uv) == (
        "error: No solution found when resolving dependencies: Because nosuchpkg was not found in the "
        "provided package locations and you require nosuchpkg, we can conclude that your requirements "
        "are unsatisfiable."
    )
    assert venv_build.installer_error(["a", "", "killed"]) == "killed"


def test_a_cancel_while_the_environment_is_prepared_starts_nothing(adapter: LocalAdapter) -> None:
    env = EnvironmentPlan.of("probe", pip=["envprobe"])
    adapter.environments.mkdir(parents=True)
    adapter.cancel_grace = 20.0  # the supervisor ends on its own (SIGTERM while it waits): no SIGKILL

    async def scenario() -> None:
        fd = os.open(adapter.environments / f"{env.short_hash}.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            handle = await adapter.submit(with_env("env-cancel", env, "print('started')"))
            await until(
                observe(adapter, handle),
                lambda o: "waiting for the build" in " ".join(env_log(asyncio_logs(adapter, o.uid))),
            )
            await adapter.cancel(handle)
            seen = await until(observe(adapter, handle), terminal)
        finally:
            os.close(fd)
        assert seen.phase is Phase.FAILED and seen.failure_category == "killed", seen
        assert "cancelled while its environment was prepared" in seen.message
        assert "started" not in env_log(await adapter.logs(handle), "worker-0")
        assert builds(adapter) == []

    asyncio.run(scenario())


def test_index_credentials_never_reach_the_build_log() -> None:
    lines: list[str] = []
    with pytest.raises(venv_build.BuildError) as failed:
        venv_build._run(
            [
                sys.executable,
                "-c",
                "print('ERROR: cannot reach https://me:s3cret@pypi.example/simple'); exit(1)",
            ],
            lines.append,
            None,
        )
    assert "s3cret" not in " ".join(lines) and "s3cret" not in failed.value.args[0]
    assert failed.value.args[0] == "ERROR: cannot reach https://***@pypi.example/simple"
    assert (
        venv_build.redact("--index-url https://u:p@h/s --find-links /w")
        == "--index-url https://***@h/s --find-links /w"
    )


def test_model_servers_in_a_venv_see_only_the_runtimes_package_of_the_broker(tmp_path: Path) -> None:
    from clusters.local.environment import runtimes_folder, with_runtimes

    root = tmp_path / "environments"
    folder = runtimes_folder(root)
    assert [p.name for p in folder.iterdir()] == ["runtimes"]
    assert (folder / "runtimes" / "model_server.py").is_file()
    assert runtimes_folder(root) == folder  # made once, found again
    # A broker installed elsewhere since: the link follows it.
    moved = tmp_path / "elsewhere" / "runtimes"
    moved.mkdir(parents=True)
    runtimes_folder(root, moved)
    assert (folder / "runtimes").resolve() == moved.resolve() and len(list(folder.iterdir())) == 1
    assert with_runtimes({"A": "1"}, folder) == {"A": "1", "PYTHONPATH": str(folder)}
    assert with_runtimes({"PYTHONPATH": "/mine"}, folder)["PYTHONPATH"] == f"{folder}{os.pathsep}/mine"
