"""Notebooks on the ``ray`` kind (issue 8): a Jupyter server as the one replica of a Ray job.

The pure parts (argv placeholders, the endpoint line, working directories, the replica's stop)
run without a cluster; the adapter and a real broker run against the session's Ray head
(``ray_head`` fixture: ``ray start --head``, 2 CPUs, free loopback ports). Each notebook asks for
0.2 CPU and is stopped before its test ends; nothing is left running on the head.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from clusters.base import Capability, Handle
from clusters.errors import SubmitRejected
from clusters.ray.adapter import RayAdapter, submission_id
from clusters.ray.config import RayClusterConfig
from runtimes.notebook import NotebookSpec, base_path, build_notebook_plan
from runtimes.plan import LaunchPlan, ReplicaPlan
from runtimes.ray_launcher import (
    MARKER,
    WORKDIR_BASE_ENV,
    ReplicaProcess,
    decode_plan,
    default_workdir_base,
    descendants,
    endpoint_line,
    endpoint_url,
    find_endpoint,
    workdir_path,
)
from runtimes.rendezvous import PlaceholderAddressing, resolve_argv
from tests.jupyter_kernel import create_kernel, execute
from tests.ray_cluster import RayHead
from tests.support import wait_for
from tests.test_ray_states import FakeSDK

NAMESPACE = "vision"
SMALL = "cpu=0.2,memory=256Mi"
FAST = {"dispatch_interval": 0.3, "monitor_interval": 0.3, "health_interval": 0.5}


def notebook_plan(
    name: str = "nb",
    *,
    token: str = "tok",
    uid: str = "u-nb",
    key: str = "notebook_1",
    app: str = "jupyter_server",
) -> LaunchPlan:
    spec = NotebookSpec.model_validate(
        {"meta": {"name": name, "namespace": NAMESPACE}, "spec": {"resources": SMALL}}
    )
    return build_notebook_plan(
        spec,
        workload_id=key,
        uid=uid,
        namespace=NAMESPACE,
        addressing=PlaceholderAddressing(),
        python=sys.executable,
        app_module=app,
        extra_env={"JUPYTER_TOKEN": token, "SUBMARINE_SERVER_DNS_NAME": "127.0.0.1"},
    )


def cmdline_pids(marker: str) -> list[int]:
    """Live processes whose command line holds ``marker`` (zombies and this process excluded)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info["pid"] == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if marker in " ".join(proc.info["cmdline"] or ()):
            found.append(proc.info["pid"])
    return found


# -- without a cluster ---------------------------------------------------------------------------


def test_notebook_argv_placeholders_become_the_real_ip_and_port() -> None:
    plan = notebook_plan()
    replica = plan.replicas[0]
    assert "--ip={{host:notebook-0}}" in replica.argv and "--port=0" in replica.argv
    argv = resolve_argv(replica, {"notebook-0": ("10.1.2.3", 40123)})
    assert "--ip=10.1.2.3" in argv and "--port=40123" in argv
    assert "--port-retries=0" in argv  # not a port option
    assert f"--ServerApp.base_url={base_path(NAMESPACE, 'nb')}" in argv
    assert argv[:3] == [sys.executable, "-m", "jupyter_server"]
    assert not any("{{host:" in a for a in argv)
    # JUPYTER_TOKEN stays in the environment, never on a command line.
    assert not any("tok" in a for a in argv) and replica.env["JUPYTER_TOKEN"] == "tok"


def test_argv_resolution_forms_and_limits() -> None:
    endpoints = {"worker-0": ("10.0.0.1", 5000), "worker-1": ("10.0.0.2", 5001)}
    own = ReplicaPlan(
        role="Worker",
        index=0,
        host="{{host:worker-0}}",
        port=0,
        argv=["run", "--port", "0", "--ServerApp.port=0", "--peer={{host:worker-1}}:9", "0", "--retries=0"],
    )
    assert resolve_argv(own, endpoints) == [
        "run",
        "--port",
        "5000",
        "--ServerApp.port=5000",
        "--peer=10.0.0.2:9",
        "0",
        "--retries=0",
    ]
    # A replica with a real (non-placeholder) port, or none, keeps its literal zeros.
    for port in (None, 8888):
        fixed = own.model_copy(update={"port": port})
        assert resolve_argv(fixed, endpoints)[1:4] == ["--port", "0", "--ServerApp.port=0"]


def test_endpoint_line_round_trip_and_forgeries() -> None:
    line = endpoint_line("notebook-0", "10.0.0.7", 41000)
    assert line == f"{MARKER} endpoint notebook-0 http://10.0.0.7:41000"
    assert endpoint_url("fe80::1", 80) == "http://[fe80::1]:80"
    forged = "http://203.0.113.9:1"
    log = "\n".join(
        [
            "Running entrypoint for job sb-u",
            f"{MARKER} started notebook-0@10.0.0.7:41000",
            f"[notebook-0] {MARKER} endpoint notebook-0 {forged}",
            f"[notebook-0] text\r{MARKER} endpoint notebook-0 {forged}",
        ]
    )
    assert find_endpoint(log) is None  # replica lines never count
    assert find_endpoint(log + "\n" + line + "\n") == "http://10.0.0.7:41000"
    assert find_endpoint(line + "\r\n") == "http://10.0.0.7:41000"
    # The first announcement wins, and names narrow the search.
    later = endpoint_line("notebook-0", "10.0.0.8", 1)
    assert find_endpoint(f"{line}\n{later}") == "http://10.0.0.7:41000"
    assert find_endpoint(line, ["worker-0"]) is None
    assert find_endpoint(f"{MARKER} endpoint notebook-0 http://10.0.0.7:41000/path") is None
    assert find_endpoint("") is None


def test_workdir_paths_are_one_plain_component() -> None:
    assert workdir_path("notebook_1", "/srv/nb") == "/srv/nb/notebook_1"
    assert workdir_path("notebook_1") == os.path.join(
        tempfile.gettempdir(), "submarine-broker-workdirs", "notebook_1"
    )
    assert default_workdir_base().startswith(tempfile.gettempdir())
    for bad in ("", ".", "..", "../x", "a/b", "/abs", ".hidden"):
        with pytest.raises(ValueError):
            workdir_path(bad, "/srv/nb")


def test_replica_runs_in_its_kept_workdir(tmp_path: Path) -> None:
    proc = ReplicaProcess("notebook-0")
    cwd = proc.start([sys.executable, "-c", "import os; print(os.getcwd())"], {}, "notebook_7", str(tmp_path))
    assert cwd == str(tmp_path / "notebook_7") and (tmp_path / "notebook_7").is_dir()
    deadline = time.monotonic() + 10
    lines: list[str] = []
    code = None
    while code is None and time.monotonic() < deadline:
        more, code = proc.drain()
        lines += more
        time.sleep(0.02)
    assert (lines, code) == ([str(tmp_path / "notebook_7")], 0)
    bad = ReplicaProcess("notebook-0")
    bad.start(["true"], {}, "../escape", str(tmp_path))
    lines, code = bad.drain()
    assert code == 126 and "working directory" in lines[0]


def test_stop_kills_what_the_replica_started_in_another_session() -> None:
    # A "server" that starts a "kernel" in a session of its own (as Jupyter does): signalling the
    # replica's process group alone would leave the kernel behind.
    marker = f"sb-kernel-{secrets.token_hex(4)}"
    code = (
        "import signal, subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', '{marker}'],"
        " start_new_session=True)\n"
        "print('up', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = ReplicaProcess("notebook-0")
    proc.start([sys.executable, "-c", code], {})
    # The replica's own command line holds the marker too: wait for its "up", printed once the
    # child exists, not for the marker (which would race the child's start).
    printed: list[str] = []
    wait_for(
        lambda: printed.extend(proc.drain()[0]) or "up" in printed, timeout=15, what="the kernel-like child"
    )
    assert len(cmdline_pids(marker)) == 2  # the replica and its child
    assert descendants(os.getpid())  # the helper sees this process's children
    assert proc.stop(grace=1.0) == -15
    wait_for(lambda: not cmdline_pids(marker), timeout=10, what="the child in its own session to be killed")


def test_adapter_endpoint_over_a_fake_sdk(tmp_path: Path) -> None:
    fake = FakeSDK()
    adapter = RayAdapter(
        RayClusterConfig(name="r", address="http://h:8265", workdir_base="/srv/nb/"), data_dir=str(tmp_path)
    )
    adapter._client = fake
    assert Capability.ENDPOINTS in adapter.capabilities
    plan = notebook_plan(uid="u7")
    handle = asyncio.run(adapter.submit(plan))
    assert handle.state["serving"] == "notebook-0"
    job = fake.jobs[submission_id("u7")]
    assert job.runtime_env["env_vars"][WORKDIR_BASE_ENV] == "/srv/nb"
    assert asyncio.run(adapter.endpoint(handle)) is None  # PENDING
    job.status = "RUNNING"
    fake.logs = f"{MARKER} reserving resources for 1 replicas (PACK)\n"
    assert asyncio.run(adapter.endpoint(handle)) is None  # not announced yet
    fake.logs += endpoint_line("notebook-0", "127.0.0.1", 45678) + "\n[notebook-0] Jupyter starting\n"
    assert asyncio.run(adapter.endpoint(handle)) == "http://127.0.0.1:45678"
    # A handle from before this change (no "serving") still finds it.
    assert asyncio.run(adapter.endpoint(Handle("u7", {}))) == "http://127.0.0.1:45678"
    job.status = "STOPPED"
    assert asyncio.run(adapter.endpoint(handle)) is None
    assert asyncio.run(adapter.endpoint(Handle("nope", {}))) is None  # no such job: not yet, not an error
    # Bad keys are refused before anything is submitted; relative bases are refused in the config.
    with pytest.raises(SubmitRejected):
        asyncio.run(adapter.submit(notebook_plan(uid="u8").model_copy(update={"workdir": "../x"})))
    assert submission_id("u8") not in fake.jobs
    with pytest.raises(ValueError):
        RayClusterConfig(name="r", address="http://h:8265", workdir_base="relative/dir")
    # Without a workdir key (experiments) or a configured base, the runtime_env is as before.
    plain = RayAdapter(RayClusterConfig(name="r", address="http://h:8265"), data_dir=str(tmp_path))
    assert WORKDIR_BASE_ENV not in plain.runtime_env(plan)["env_vars"]


# -- on the session's Ray head ---------------------------------------------------------------------


def _wait_endpoint(adapter: RayAdapter, handle: Handle, timeout: float = 60) -> str:
    def found() -> str | None:
        return asyncio.run(adapter.endpoint(handle))

    return wait_for(found, timeout=timeout, interval=0.3, what=f"the endpoint of {handle.uid}")


def _status(url: str, name: str, token: str | None) -> int:
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        return httpx.get(
            url + base_path(NAMESPACE, name) + "api/status", headers=headers, timeout=5, trust_env=False
        ).status_code
    except httpx.HTTPError:
        return 0


def test_notebook_on_ray_serves_keeps_its_files_and_stops_with_its_kernel(
    ray_head: RayHead, tmp_path
) -> None:
    base = tmp_path / "workdirs"
    adapter = RayAdapter(
        RayClusterConfig(name="ray", address=ray_head.address, workdir_base=str(base)), data_dir=str(tmp_path)
    )
    token = secrets.token_hex(16)
    name = f"nb-{secrets.token_hex(3)}"
    key = f"notebook_{secrets.token_hex(4)}"
    (base / key).mkdir(parents=True)
    (base / key / "kept.txt").write_text("from an earlier attempt")
    plan = notebook_plan(name, token=token, uid=f"u-{secrets.token_hex(4)}", key=key)
    handle = asyncio.run(adapter.submit(plan))
    try:
        url = _wait_endpoint(adapter, handle)
        host_port = url.removeprefix("http://")
        assert url.startswith("http://127.0.0.1:") and int(host_port.split(":")[1]) > 0
        # --port=0 became the real port: the server's command line says so.
        servers = wait_for(
            lambda: cmdline_pids(f"--ServerApp.base_url={base_path(NAMESPACE, name)}"), timeout=10
        )
        cmdline = psutil.Process(servers[0]).cmdline()
        assert f"--port={host_port.split(':')[1]}" in cmdline and "--port=0" not in cmdline
        assert psutil.Process(servers[0]).cwd() == str(base / key)

        wait_for(lambda: _status(url, name, token) == 200, timeout=60, what="api/status 200 with the token")
        assert _status(url, name, None) == 403
        prefix = url + base_path(NAMESPACE, name)
        auth = {"Authorization": f"token {token}"}
        listing = httpx.get(prefix + "api/contents", headers=auth, timeout=10, trust_env=False).json()
        assert "kept.txt" in [item["name"] for item in listing["content"]]
        kernel = create_kernel(prefix, headers=auth)
        assert (
            asyncio.run(execute(f"ws{prefix[4:]}api/kernels/{kernel}/channels", "1+1", headers=auth)) == "2"
        )
        assert cmdline_pids(kernel), "the kernel process runs on the node"
        job = ray_head.jobs().get_job_info(submission_id(plan.uid))
        assert job.status == "RUNNING"  # a serving job stays up
        # The token is in the replica's environment, not on any command line, and not in plain text
        # in the job listing (it rides encoded in the entrypoint's plan: see the adapter's docstring).
        assert token not in str(job) and token not in " ".join(cmdline)
        assert decode_plan(job.entrypoint.split()[-1]).replicas[0].env["JUPYTER_TOKEN"] == token
    finally:
        asyncio.run(adapter.cancel(handle))
    jobs = ray_head.jobs()
    wait_for(
        lambda: jobs.get_job_status(submission_id(plan.uid)) == "STOPPED", timeout=30, what="the job STOPPED"
    )
    wait_for(lambda: not cmdline_pids(base_path(NAMESPACE, name)), timeout=20, what="no Jupyter server left")
    wait_for(lambda: not cmdline_pids(kernel), timeout=20, what="no kernel left")
    assert asyncio.run(adapter.endpoint(handle)) is None
    assert _status(url, name, token) == 0
    assert (base / key / "kept.txt").exists()


def test_notebook_through_a_broker_with_only_a_ray_cluster(
    broker_factory, ray_head: RayHead, tmp_path
) -> None:
    base = tmp_path / "workdirs"
    broker = broker_factory(
        clusters={"ray": {"kind": "ray", "address": ray_head.address, "workdir_base": str(base)}},
        loops=FAST,
        notebooks={"check_interval": 0.3, "idle_timeout": 0},
    )
    client = httpx.Client(base_url=broker.url, timeout=30)
    name = f"lab-{secrets.token_hex(3)}"
    created = client.post(
        "/api/v1/notebook",
        json={"meta": {"name": name, "namespace": NAMESPACE}, "spec": {"resources": SMALL}},
    )
    assert created.status_code == 200, created.text
    nid = created.json()["result"]["notebookId"]

    def running() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/notebook/{nid}").json()["result"]
        assert body["status"] not in ("failed", "terminating"), body
        return body if body["status"] == "running" else None

    nb = wait_for(running, timeout=90, interval=0.3, what=f"notebook {nid} running")
    assert nb["cluster"] == "ray"
    sid = submission_id(nb["uid"])
    assert ray_head.jobs().get_job_status(sid) == "RUNNING"

    prefix = f"/notebook/{NAMESPACE}/{name}/"
    assert client.get(prefix + "api/status").status_code == 200
    kernel = client.post(prefix + "api/kernels", json={"name": "python3"})
    assert kernel.status_code == 201, kernel.text
    kernel_id = kernel.json()["id"]
    ws = f"ws://127.0.0.1:{broker.port}{prefix}api/kernels/{kernel_id}/channels"
    assert asyncio.run(execute(ws, "1+1")) == "2"
    # The kernel runs in the notebook's kept folder on the node: <workdir_base>/<notebook id>.
    assert asyncio.run(execute(ws, "import os; os.getcwd()")) == repr(str(base / nid))

    deleted = client.delete(f"/api/v1/notebook/{nid}")
    assert deleted.status_code == 200, deleted.text
    jobs = ray_head.jobs()
    wait_for(lambda: jobs.get_job_status(sid) == "STOPPED", timeout=30, what=f"Ray job {sid} STOPPED")
    wait_for(lambda: not cmdline_pids(prefix), timeout=20, what="no Jupyter server left")
    wait_for(lambda: not cmdline_pids(kernel_id), timeout=20, what="no kernel left")
    assert client.get(f"/api/v1/notebook/{nid}").status_code == 404
    client.close()
