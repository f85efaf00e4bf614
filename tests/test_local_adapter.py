"""The ``local`` cluster adapter against real subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import psutil
import pytest

from clusters.base import Capability, Handle, Observation, Phase, ReplicaLog
from clusters.errors import SubmitRejected, WorkloadNotFound
from clusters.kinds import adapter_class
from clusters.local.adapter import LocalAdapter
from clusters.local.config import LocalClusterConfig
from clusters.local.processes import is_ours, read_json, read_lines
from runtimes.plan import LaunchPlan, ReplicaPlan, Resources

PY = sys.executable


def python(code: str) -> list[str]:
    return [PY, "-c", code]


def plan(uid: str, *argvs: list[str], role: str = "Worker", resources: Resources | None = None) -> LaunchPlan:
    """A plan of one ``role`` replica per argv, the role being the success role."""
    replicas = [
        ReplicaPlan(
            role=role,
            index=i,
            argv=argv,
            env={"REPLICA_INDEX": str(i)},
            host="127.0.0.1",
            resources=resources or Resources(),
        )
        for i, argv in enumerate(argvs)
    ]
    return LaunchPlan(
        uid=uid,
        workload_id="experiment-1",
        name="test",
        namespace="default",
        framework="pytorch",
        replicas=replicas,
        success_roles=[role],
    )


def wait_file(path: Path) -> str:
    """Python code that blocks until ``path`` exists."""
    return f"import os, time\nwhile not os.path.exists({str(path)!r}): time.sleep(0.02)\n"


async def until(
    probe: Callable[[], Awaitable[Observation]], done: Callable[[Observation], bool]
) -> Observation:
    """Poll ``probe`` until ``done`` holds, for at most 20 s; returns the last observation."""
    deadline = time.monotonic() + 20
    while True:
        seen = await probe()
        if done(seen) or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.05)


def observe(adapter: LocalAdapter, handle: Handle) -> Callable[[], Awaitable[Observation]]:
    async def probe() -> Observation:
        return (await adapter.poll([handle]))[handle.uid]

    return probe


def terminal(obs: Observation) -> bool:
    return obs.phase.is_terminal


def running(obs: Observation) -> bool:
    return obs.phase is Phase.RUNNING


@pytest.fixture
def make_adapter(tmp_path: Path) -> Iterator[Callable[..., LocalAdapter]]:
    """Adapters over ``tmp_path``; afterwards every attempt is cancelled and any group left is killed."""
    made: list[LocalAdapter] = []

    def make(**capacity: object) -> LocalAdapter:
        adapter = LocalAdapter(LocalClusterConfig(name="here", capacity=capacity), data_dir=str(tmp_path))
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.cancel_grace = 1.0
        for attempt in adapter.work_dir.glob("*/"):
            asyncio.run(adapter.cancel(Handle(attempt.name, {"dir": str(attempt)})))
    for pid_file in tmp_path.rglob("*.pid"):
        record = read_json(pid_file)
        if record and is_ours(record):
            with contextlib.suppress(OSError):
                os.killpg(int(record["pid"]), signal.SIGKILL)


def test_registered_kind(make_adapter: Callable[..., LocalAdapter], tmp_path: Path) -> None:
    assert adapter_class("local") is LocalAdapter
    assert LocalAdapter.capabilities == (
        Capability.ENDPOINTS
        | Capability.LISTS_WORK
        | Capability.RELEASES_WORKDIRS
        | Capability.BROKER_HOST
        | Capability.ENVIRONMENT_CACHE
    )
    assert make_adapter().work_dir == tmp_path / "clusters" / "here"
    custom = LocalAdapter(LocalClusterConfig(name="x", work_dir=tmp_path / "w"), data_dir=str(tmp_path))
    assert custom.work_dir == tmp_path / "w"
    relative = LocalAdapter(LocalClusterConfig(name="x", work_dir=Path("rel")), data_dir="data")
    assert relative.work_dir == Path.cwd() / "rel"


def test_two_replicas_succeed_with_logs_in_order(make_adapter: Callable[..., LocalAdapter]) -> None:
    adapter = make_adapter()
    code = (
        "import os; print('hello', os.environ['REPLICA_INDEX']); print(os.getcwd()); "
        f"print(os.environ['PATH'] == {os.environ['PATH']!r})"
    )
    the_plan = plan("run-ok", python(code), python(code))

    async def scenario() -> None:
        handle = await adapter.submit(the_plan)
        assert handle.state["replicas"] == ["worker-0", "worker-1"]
        assert handle.state["success_roles"] == ["Worker"]
        obs = await until(observe(adapter, handle), terminal)
        assert obs.phase is Phase.SUCCEEDED, obs
        assert [(r.name, r.phase, r.exit_code) for r in obs.replicas] == [
            ("worker-0", Phase.SUCCEEDED, 0),
            ("worker-1", Phase.SUCCEEDED, 0),
        ]
        attempt = handle.state["dir"]
        assert Path(attempt) == adapter.work_dir / "run-ok"
        assert LaunchPlan.model_validate_json(Path(attempt, "plan.json").read_text()) == the_plan
        logs = await adapter.logs(handle)
        assert logs == [
            ReplicaLog("worker-0", ["hello 0", attempt, "True"]),
            ReplicaLog("worker-1", ["hello 1", attempt, "True"]),
        ]
        assert await adapter.logs(handle) == logs  # stable between calls

    asyncio.run(scenario())


def test_replica_env_is_the_allow_list_and_its_own(
    make_adapter: Callable[..., LocalAdapter], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Of the broker's environment a replica gets PATH, HOME, LANG and TZ (and what the cluster file
    passes through); nothing else, PYTHONPATH neither. Its plan's variables are its own."""
    monkeypatch.setenv("PYTHONPATH", "/broker/path")
    monkeypatch.setenv("DATABASE_PASSWORD", "broker-only")
    monkeypatch.setenv("TZ", "Europe/Paris")
    adapter = make_adapter()
    names = ["PYTHONPATH", "DATABASE_PASSWORD", "TZ", "HOME", "REPLICA_INDEX"]
    show = python(f"import os; print([os.environ.get(n) for n in {names!r}])")
    the_plan = plan("run-env", show, show)
    the_plan.replicas[1].env["PYTHONPATH"] = "/custom/path"

    async def scenario() -> None:
        handle = await adapter.submit(the_plan)
        assert (await until(observe(adapter, handle), terminal)).phase is Phase.SUCCEEDED
        logs = await adapter.logs(handle)
        home = os.environ.get("HOME")
        assert logs[0].lines == [str([None, None, "Europe/Paris", home, "0"])]
        assert logs[1].lines == [str(["/custom/path", None, "Europe/Paris", home, "1"])]

    asyncio.run(scenario())


def test_cancelled_before_start_never_runs(make_adapter: Callable[..., LocalAdapter], tmp_path: Path) -> None:
    """A supervisor that starts after cancel looked for pid files sees the marker and runs nothing."""
    adapter = make_adapter()
    marks = tmp_path / "marks.txt"
    the_plan = plan("run-late", python(f"open({str(marks)!r}, 'a').write('ran')"))
    (adapter.work_dir / the_plan.uid).mkdir(parents=True)
    (adapter.work_dir / the_plan.uid / "cancelled").touch()

    async def scenario() -> None:
        handle = await adapter.submit(the_plan)
        obs = await until(observe(adapter, handle), terminal)
        assert obs.phase is Phase.FAILED
        assert obs.message == "replica worker-0 failed: cancelled before it started (exit code -15)"
        assert obs.failure_category == "killed"
        assert not marks.exists()

    asyncio.run(scenario())


def test_failing_replica_is_named_with_its_exit_code(make_adapter: Callable[..., LocalAdapter]) -> None:
    adapter = make_adapter()

    async def scenario() -> None:
        handle = await adapter.submit(plan("run-fail", python("pass"), python("import sys; sys.exit(3)")))
        obs = await until(observe(adapter, handle), lambda o: o.phase is Phase.FAILED)
        assert obs.phase is Phase.FAILED
        assert obs.message == "replica worker-1 exited with code 3"
        assert obs.failure_category == "exit_code"
        assert obs.replicas[1].exit_code == 3

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("kind", "code", "reason"),
    [("missing", 127, "command not found"), ("not-executable", 126, "permission denied")],
)
def test_unrunnable_command_fails_with_reason(
    make_adapter: Callable[..., LocalAdapter], tmp_path: Path, kind: str, code: int, reason: str
) -> None:
    adapter = make_adapter()
    command = "nosuchcmd-xyz"
    if kind == "not-executable":
        script = tmp_path / "script.sh"
        script.write_text("#!/bin/sh\necho hi\n")
        script.chmod(0o644)
        command = str(script)

    async def scenario() -> None:
        handle = await adapter.submit(plan(f"run-{kind}", [command, "arg"]))
        obs = await until(observe(adapter, handle), terminal)
        assert obs.phase is Phase.FAILED
        assert obs.message == f"replica worker-0 failed: {reason}: {command!r} (exit code {code})"
        assert obs.replicas[0].exit_code == code
        logs = await adapter.logs(handle)
        assert logs[0].lines == [f"{reason}: {command}"]  # no traceback

    asyncio.run(scenario())


def test_submit_is_idempotent(make_adapter: Callable[..., LocalAdapter], tmp_path: Path) -> None:
    adapter = make_adapter()
    marks = tmp_path / "marks.txt"
    append = python(f"open({str(marks)!r}, 'a').write('ran\\n')")
    the_plan = plan("run-once", append, append)

    async def scenario() -> None:
        first = await adapter.submit(the_plan)
        second = await adapter.submit(the_plan)
        third = await make_adapter().submit(the_plan)  # a restarted broker submitting again
        assert first == second == third
        obs = await until(observe(adapter, first), terminal)
        assert obs.phase is Phase.SUCCEEDED
        await asyncio.sleep(0.3)  # give a wrongly started duplicate the time to write
        assert marks.read_text() == "ran\n" * 2

    asyncio.run(scenario())


def test_fresh_adapter_reattaches_and_sees_the_exit_code(
    make_adapter: Callable[..., LocalAdapter], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    code = wait_file(go) + "import sys; print('done'); sys.exit(7)"

    async def scenario() -> None:
        handle = await make_adapter().submit(plan("run-attach", python(code)))
        stored = Handle.from_json(json.loads(json.dumps(handle.to_json())))  # as the database keeps it
        fresh = make_adapter()
        obs = await until(observe(fresh, stored), running)
        assert obs.phase is Phase.RUNNING
        assert obs.replicas[0].phase is Phase.RUNNING
        go.touch()
        obs = await until(observe(fresh, stored), terminal)
        assert obs.phase is Phase.FAILED
        assert obs.replicas[0].exit_code == 7
        assert obs.message == "replica worker-0 exited with code 7"
        assert (await fresh.logs(stored))[0].lines == ["done"]

    asyncio.run(scenario())


def test_cancel_kills_the_replica_and_its_children(
    make_adapter: Callable[..., LocalAdapter], tmp_path: Path
) -> None:
    adapter = make_adapter()
    child_pid = tmp_path / "child.pid"
    code = (
        "import subprocess\n"
        "p = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(child_pid)!r} + '.tmp', 'w').write(str(p.pid))\n"
        f"import os; os.replace({str(child_pid)!r} + '.tmp', {str(child_pid)!r})\n"
        "p.wait()\n"
    )

    async def scenario() -> None:
        handle = await adapter.submit(plan("run-cancel", python(code)))
        await until(observe(adapter, handle), lambda o: running(o) and child_pid.exists())
        grandchild = psutil.Process(int(child_pid.read_text()))
        assert grandchild.is_running()
        started = time.monotonic()
        await adapter.cancel(handle)
        assert time.monotonic() - started < 4  # SIGTERM sufficed: no wait for the SIGKILL
        obs = (await adapter.poll([handle]))[handle.uid]
        assert obs.phase is Phase.FAILED
        assert obs.replicas[0].exit_code == -signal.SIGTERM
        assert obs.failure_category == "killed"
        with contextlib.suppress(psutil.NoSuchProcess):
            grandchild.wait(timeout=5)  # reparented to init, which reaps it
        assert not grandchild.is_running()
        await adapter.cancel(handle)  # idempotent
        await adapter.cancel(Handle("never-submitted", {}))

    asyncio.run(scenario())


def test_cancel_sigkills_a_replica_that_ignores_sigterm(
    make_adapter: Callable[..., LocalAdapter], tmp_path: Path
) -> None:
    adapter = make_adapter()
    adapter.cancel_grace = 0.5
    ready = tmp_path / "ready"
    code = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(ready)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )

    async def scenario() -> None:
        handle = await adapter.submit(plan("run-stubborn", python(code)))
        await until(observe(adapter, handle), lambda o: running(o) and ready.exists() and ready.read_text())
        replica = psutil.Process(int(ready.read_text()))
        await adapter.cancel(handle)
        with contextlib.suppress(psutil.NoSuchProcess):
            replica.wait(timeout=5)
        assert not replica.is_running()
        obs = (await adapter.poll([handle]))[handle.uid]
        assert obs.phase is Phase.FAILED
        assert obs.message == "replica worker-0 vanished without an exit status (killed)"
        assert obs.failure_category == "killed"

    asyncio.run(scenario())


def test_leftovers_of_a_finished_replica_are_stopped(
    make_adapter: Callable[..., LocalAdapter], tmp_path: Path
) -> None:
    adapter = make_adapter()
    code = "import subprocess; print(subprocess.Popen(['sleep', '60']).pid)"

    async def scenario() -> None:
        handle = await adapter.submit(plan("run-leftover", python(code)))
        obs = await until(observe(adapter, handle), terminal)
        assert obs.phase is Phase.SUCCEEDED
        leftover = int((await adapter.logs(handle))[0].lines[0])
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(leftover).wait(timeout=5)
        assert not psutil.pid_exists(leftover) or psutil.Process(leftover).status() == psutil.STATUS_ZOMBIE

    asyncio.run(scenario())


def test_recycled_pid_is_not_mistaken_for_ours(
    make_adapter: Callable[..., LocalAdapter], tmp_path: Path
) -> None:
    adapter = make_adapter()
    code = wait_file(tmp_path / "never")

    async def scenario() -> None:
        handle = await adapter.submit(plan("run-recycled", python(code)))
        await until(observe(adapter, handle), running)
        pid_file = Path(handle.state["dir"], "worker-0.pid")
        record = json.loads(pid_file.read_text())
        try:
            pid_file.write_text(json.dumps({**record, "create_time": record["create_time"] - 100}))
            obs = (await adapter.poll([handle]))[handle.uid]
            assert obs.phase is Phase.FAILED
            assert obs.replicas[0].message == "vanished without an exit status (killed)"
            await adapter.cancel(handle)  # must not signal a process that is not ours
            assert is_ours(record)
        finally:
            with contextlib.suppress(OSError):
                os.killpg(record["pid"], signal.SIGKILL)

    asyncio.run(scenario())


def test_launch_without_pid_is_pending_then_vanished(make_adapter: Callable[..., LocalAdapter]) -> None:
    """A broker that died between the launch file and the spawn: pending, then lost, never respawned."""
    adapter = make_adapter()
    the_plan = plan("run-half", python("pass"))
    attempt = adapter.work_dir / the_plan.uid
    attempt.mkdir(parents=True)
    (attempt / "plan.json").write_text(the_plan.model_dump_json())
    launch = attempt / "worker-0.launch"
    launch.touch()
    handle = Handle(the_plan.uid, {"dir": str(attempt)})  # names and roles come from plan.json

    async def scenario() -> None:
        assert (await adapter.poll([handle]))[handle.uid].phase is Phase.PENDING
        old = time.time() - 60
        os.utime(launch, (old, old))
        obs = (await adapter.poll([handle]))[handle.uid]
        assert obs.phase is Phase.FAILED
        assert obs.message == "replica worker-0 vanished without an exit status (killed)"
        await adapter.submit(the_plan)
        assert not (attempt / "worker-0.pid").exists()
        assert (await adapter.poll([handle]))[handle.uid].phase is Phase.FAILED

    asyncio.run(scenario())


def test_logs_tail_replica_and_errors(make_adapter: Callable[..., LocalAdapter]) -> None:
    adapter = make_adapter()
    five = python("print('\\n'.join(f'line {i}' for i in range(5)))")
    no_newline = python("import sys; sys.stdout.write('a\\nb')")

    async def scenario() -> None:
        handle = await adapter.submit(plan("run-logs", five, no_newline))
        await until(observe(adapter, handle), terminal)
        assert await adapter.logs(handle, tail=2) == [
            ReplicaLog("worker-0", ["line 3", "line 4"]),
            ReplicaLog("worker-1", ["a", "b"]),
        ]
        assert await adapter.logs(handle, replica="worker-1") == [ReplicaLog("worker-1", ["a", "b"])]
        assert (await adapter.logs(handle, replica="worker-0", tail=0))[0].lines == []
        assert len((await adapter.logs(handle, replica="worker-0", tail=50))[0].lines) == 5
        with pytest.raises(WorkloadNotFound, match="no replica 'worker-9'.*worker-0, worker-1"):
            await adapter.logs(handle, replica="worker-9")
        with pytest.raises(WorkloadNotFound):
            await adapter.logs(Handle("nope", {}))

    asyncio.run(scenario())


def test_read_lines_tail_across_blocks(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    lines = [f"line {i} " + "x" * (i % 7) for i in range(1000)]
    log.write_text("\n".join(lines) + "\n")
    assert read_lines(log) == lines
    for tail in (1, 3, 17, 999, 1000, 5000):
        assert read_lines(log, tail, block=16) == lines[-tail:]
    assert read_lines(tmp_path / "missing.log") == []


def test_health_capacity_and_free_while_running(
    make_adapter: Callable[..., LocalAdapter], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    need = Resources(cpu=1.5, memory=2**30, gpu=1)

    async def scenario() -> None:
        default = await make_adapter().health()
        assert default.reachable
        assert default.total == Resources(cpu=os.cpu_count(), memory=psutil.virtual_memory().total, gpu=0)
        assert default.free == default.total and default.running == 0

        adapter = make_adapter(cpu=4, memory="8Gi", gpu=2)
        total = Resources(cpu=4, memory=8 * 2**30, gpu=2)
        assert (await adapter.health()).total == total
        handle = await adapter.submit(plan("run-busy", python(wait_file(go)), resources=need))
        health = await adapter.health()
        assert health.free == Resources(cpu=2.5, memory=7 * 2**30, gpu=1)
        assert health.running == 1
        go.touch()
        await until(observe(adapter, handle), terminal)
        health = await adapter.health()
        assert (health.free, health.running) == (total, 0)

    asyncio.run(scenario())


def test_free_never_below_zero(make_adapter: Callable[..., LocalAdapter], tmp_path: Path) -> None:
    adapter = make_adapter(cpu=1, memory="1Gi", gpu=0)

    async def scenario() -> None:
        big = Resources(cpu=3, memory=2 * 2**30, gpu=1)
        await adapter.submit(plan("run-big", python(wait_file(tmp_path / "never")), resources=big))
        health = await adapter.health()
        assert health.free == Resources(cpu=0, memory=0, gpu=0)
        assert health.running == 1

    asyncio.run(scenario())


def test_unknown_uid_is_not_found(make_adapter: Callable[..., LocalAdapter]) -> None:
    adapter = make_adapter()
    observations = asyncio.run(
        adapter.poll([Handle("ghost", {}), Handle("ghost-2", {"dir": "/nonexistent/x"})])
    )
    assert observations["ghost"].phase is Phase.NOT_FOUND
    assert observations["ghost-2"].phase is Phase.NOT_FOUND


def test_unwritable_work_dir_rejects_submit(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    adapter = LocalAdapter(LocalClusterConfig(name="here", work_dir=blocker / "sub"), data_dir=str(tmp_path))
    with pytest.raises(SubmitRejected, match="cannot create the attempt folder"):
        asyncio.run(adapter.submit(plan("run-x", python("pass"))))
    assert not asyncio.run(adapter.health()).reachable


def test_addressing_is_loopback_with_stable_free_ports(make_adapter: Callable[..., LocalAdapter]) -> None:
    addressing = make_adapter().addressing("run-addr")
    assert addressing.host("Worker", 1) == "127.0.0.1"
    port = addressing.port("Worker", 0)
    assert 0 < port < 65536
    assert addressing.port("Worker", 0) == port
    assert addressing.port("Worker", 1) != port


def test_a_zombie_is_not_ours() -> None:
    """An ended supervisor not yet reaped (a zombie) must not count as running."""
    child = subprocess.Popen([PY, "-c", "pass"])
    try:
        proc = psutil.Process(child.pid)
        record = {"pid": child.pid, "create_time": proc.create_time()}
        deadline = time.monotonic() + 10
        while proc.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.status() == psutil.STATUS_ZOMBIE
        assert not is_ours(record)
    finally:
        child.wait()
    assert not is_ours(record)


#: Put on a replica's PYTHONPATH: it runs in every Python process that reads that variable. In the
#: supervisor (its argv holds --replica) it records that it ran and, at exit, forges a success.
STEER = """
import atexit, json, os, sys
if "--replica" in sys.argv:
    folder = sys.argv[sys.argv.index("--dir") + 1]
    replica = sys.argv[sys.argv.index("--replica") + 1]
    open(os.path.join({marks!r}, "steered"), "w").write(str(os.getuid()))
    def forge():
        with open(os.path.join(folder, replica + ".exit"), "w") as handle:
            json.dump({{"code": 0}}, handle)
    atexit.register(forge)
"""


def test_replica_env_cannot_steer_the_supervisor(
    make_adapter: Callable[..., LocalAdapter], tmp_path: Path
) -> None:
    """PATH, LD_PRELOAD and PYTHONPATH of a replica are its own: the supervisor, which writes the
    exit record the broker trusts, never sees them, so a failure stays a failure."""
    adapter = make_adapter()
    steer = tmp_path / "steer"
    steer.mkdir()
    (steer / "sitecustomize.py").write_text(STEER.format(marks=str(tmp_path)))
    go = tmp_path / "go"
    the_plan = plan(
        "run-steer", python(wait_file(go) + "import os, sys; print(os.environ['PYTHONPATH']); sys.exit(3)")
    )
    the_plan.replicas[0].env.update(
        {"PYTHONPATH": str(steer), "LD_PRELOAD": str(steer / "nothing.so"), "PATH": str(steer)}
    )

    async def scenario() -> None:
        handle = await adapter.submit(the_plan)
        await until(observe(adapter, handle), running)
        record = read_json(Path(handle.state["dir"], "worker-0.pid"))
        assert record is not None
        supervisor_env = psutil.Process(int(record["pid"])).environ()
        for name in ("PYTHONPATH", "LD_PRELOAD"):
            assert name not in supervisor_env, f"{name} reached the supervisor"
        assert supervisor_env.get("PATH") != str(steer)
        go.touch()
        obs = await until(observe(adapter, handle), terminal)
        assert obs.phase is Phase.FAILED, obs
        assert obs.message == "replica worker-0 exited with code 3"
        assert not (tmp_path / "steered").exists(), "the replica's PYTHONPATH ran code in the supervisor"
        assert (await adapter.logs(handle))[0].lines[-1] == str(steer)  # the replica got its own

    asyncio.run(scenario())
