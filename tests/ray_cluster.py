"""A throwaway single-node Ray cluster (``ray start --head``) on free loopback ports, stopped by pid.

Used by the Ray integration tests (``ray_head`` fixture in tests/conftest.py) and by
``bench/dispatch_overhead.py``. Traps handled here (../shared/reference/run-here.md section 1):

* Ray binds the machine's external address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``;
* an earlier embedded ``ray.init()`` leaves ``~/.ray/auth_token`` behind and a later head turns token
  auth on unless ``RAY_AUTH_MODE=disabled``;
* 6379 (Ray's default GCS port) belongs to Redis here, so every listener gets a free port;
* ``ray stop`` would stop every Ray cluster on the machine: this class stops only the processes
  whose command line names its own temporary folder or GCS port (and their descendants).
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    # Ray gives a raylet 60 s to register with its GCS; on a loaded 2-core host that is not enough
    # and `ray start` fails ("The current node timed out during startup").
    "RAY_raylet_start_wait_time_s": "240",
}
WORKER_PORTS = 200  # one port per worker process; a few dozen are ever alive on 2 CPUs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_range(count: int, taken: set[int]) -> tuple[int, int]:
    """``count`` consecutive free ports below the kernel's ephemeral range (20000-32000)."""
    for _ in range(50):
        low = random.randrange(20000, 32000 - count)
        ports = range(low, low + count)
        if not taken.intersection(ports) and all(_port_is_free(p) for p in ports):
            return low, low + count - 1
    raise RuntimeError(f"no {count} consecutive free ports between 20000 and 32000")


def _ray_cli() -> list[str]:
    beside = Path(sys.executable).with_name("ray")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("ray")
    return [found] if found else [sys.executable, "-m", "ray.scripts.scripts"]


class RayHead:
    """One ``ray start --head`` with 2 CPUs, every listener on 127.0.0.1, in ``/tmp/rt-<random>``."""

    def __init__(
        self, *, num_cpus: int = 2, num_gpus: int | None = None, start_timeout: float = 300.0
    ) -> None:
        # Short: Ray puts unix sockets under the temp dir and socket paths are limited to 107 bytes.
        self.temp_dir = Path(f"/tmp/rt-{secrets.token_hex(4)}")
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.start_timeout = start_timeout
        names = (
            "gcs",
            "dashboard",
            "client",
            "node_manager",
            "object_manager",
            "agent_listen",
            "agent_grpc",
            "runtime_env",
            "metrics",
            "autoscaler_metrics",
            "dashboard_metrics",
        )
        self.ports: dict[str, int] = {}
        while len(self.ports) < len(names):  # distinct ports, each free right now
            port = free_port()
            if port not in self.ports.values():
                self.ports[names[len(self.ports)]] = port
        self.worker_ports = free_port_range(WORKER_PORTS, set(self.ports.values()))
        self.address = f"http://127.0.0.1:{self.ports['dashboard']}"
        self.gcs_address = f"127.0.0.1:{self.ports['gcs']}"
        self.client_address = f"ray://127.0.0.1:{self.ports['client']}"
        self.start_log = self.temp_dir / "ray-start.log"
        self.started_in: float | None = None

    # lifecycle ----------------------------------------------------------------------------------
    def command(self) -> list[str]:
        p = self.ports
        argv = [
            *_ray_cli(),
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={p['gcs']}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={p['dashboard']}",
            f"--ray-client-server-port={p['client']}",
            f"--node-manager-port={p['node_manager']}",
            f"--object-manager-port={p['object_manager']}",
            f"--dashboard-agent-listen-port={p['agent_listen']}",
            f"--dashboard-agent-grpc-port={p['agent_grpc']}",
            f"--runtime-env-agent-port={p['runtime_env']}",
            f"--metrics-export-port={p['metrics']}",
            f"--min-worker-port={self.worker_ports[0]}",
            f"--max-worker-port={self.worker_ports[1]}",
            f"--num-cpus={self.num_cpus}",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]
        if self.num_gpus is not None:
            argv.append(f"--num-gpus={self.num_gpus}")
        return argv

    def env(self) -> dict[str, str]:
        """The environment ``ray start`` runs with (two metrics ports only have environment settings).

        This interpreter's folder goes first on PATH, so a job entrypoint's ``python`` (the ray kind's
        default ``entrypoint_python``) is the one with Ray and this project, also from a
        non-activated virtualenv (``.venv/bin/python -m pytest``).
        """
        path = os.pathsep.join(p for p in (str(Path(sys.executable).parent), os.environ.get("PATH")) if p)
        return {
            **os.environ,
            "PATH": path,
            **RAY_ENV,
            "AUTOSCALER_METRIC_PORT": str(self.ports["autoscaler_metrics"]),
            "DASHBOARD_METRIC_PORT": str(self.ports["dashboard_metrics"]),
        }

    def start(self) -> RayHead:
        """Start the head and wait (bounded) until its job API answers; on failure stop what started."""
        self.temp_dir.mkdir(parents=True, exist_ok=False)
        began = time.monotonic()
        deadline = began + self.start_timeout
        try:
            with self.start_log.open("wb") as log:
                cli = subprocess.Popen(
                    self.command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env(),
                )
                try:
                    code = cli.wait(timeout=self.start_timeout)
                except subprocess.TimeoutExpired:
                    cli.kill()
                    cli.wait(timeout=10)
                    raise RuntimeError(f"`ray start` did not return in {self.start_timeout:g}s") from None
            if code != 0:
                raise RuntimeError(f"`ray start` exited with {code}")
            while not self.answers():
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.address}/api/version not answering after {self.start_timeout:g}s"
                    )
                time.sleep(0.1)
        except Exception as exc:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"Ray head did not start: {exc}\n{tail}") from exc
        self.started_in = time.monotonic() - began
        return self

    def answers(self, timeout: float = 2.0) -> bool:
        """Whether the dashboard's job API answers ``GET /api/version`` with 200."""
        try:
            return httpx.get(f"{self.address}/api/version", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def jobs(self) -> Any:
        """A ``ray.job_submission.JobSubmissionClient`` on this head's job API."""
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.address)

    def processes(self) -> list[psutil.Process]:
        """Every live process of this head, found by pid for :meth:`stop` and :meth:`kill`.

        A Ray process whose command line names this head's temp dir, or whose argument is exactly
        this head's GCS address or port (the Ray Client server has no temp dir in its command line),
        plus all their descendants (dashboard modules, agents, workers, job drivers and replicas).
        Never this process or its ancestors, never a process that does not look like Ray: another
        program that merely mentions the port (``redis-server 127.0.0.1:6379``) is left alone.
        """
        temp = str(self.temp_dir)
        exact = {
            f"--address={self.gcs_address}",
            f"--gcs-address={self.gcs_address}",
            f"--gcs_address={self.gcs_address}",
            f"--gcs_server_port={self.ports['gcs']}",
        }
        spared = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            args = proc.info["cmdline"] or []
            if proc.info["pid"] in spared or not any("ray" in arg for arg in args):
                continue
            if any(temp in arg for arg in args) or exact.intersection(args):
                found[proc.pid] = proc
        for proc in list(found.values()):
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    if child.pid not in spared:
                        found.setdefault(child.pid, child)
        return list(found.values())

    def _signal_all(self, sig: int, procs: list[psutil.Process]) -> None:
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL every process of the head at once (the head dying); the temp dir stays for stop()."""
        for _ in range(3):  # a dying raylet may still fork a worker: sweep until nothing is left
            procs = self.processes()
            if not procs:
                return
            self._signal_all(signal.SIGKILL, procs)
            psutil.wait_procs(procs, timeout=10)

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM every process of this head by pid, SIGKILL what is left after ``grace`` seconds.

        raylet, gcs_server and the autoscaler monitor ignore SIGTERM for longer than 6 s here, so the
        grace is short: nothing of a throwaway head needs a clean shutdown.
        """
        procs = self.processes()
        self._signal_all(signal.SIGTERM, procs)
        _, alive = psutil.wait_procs(procs, timeout=grace)
        self._signal_all(signal.SIGKILL, alive)
        psutil.wait_procs(alive, timeout=10)
        self.kill()  # anything forked meanwhile
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    # diagnostics --------------------------------------------------------------------------------
    def log_tail(self, chars: int = 4000) -> str:
        """The end of ``ray start``'s output and of the head's error logs, for failure messages."""
        parts: list[str] = []
        if self.start_log.exists():
            parts.append(f"--- ray start ---\n{self.start_log.read_text(errors='replace')[-chars:]}")
        logs = self.temp_dir / "session_latest" / "logs"
        for name in (
            "gcs_server.err",
            "gcs_server.out",
            "raylet.err",
            "raylet.out",
            "dashboard.err",
            "dashboard.log",
        ):
            path = logs / name
            if path.exists() and path.stat().st_size:
                parts.append(f"--- {name} ---\n{path.read_text(errors='replace')[-chars // 2 :]}")
        return "\n".join(parts) or f"(no Ray logs under {self.temp_dir})"

    def __enter__(self) -> RayHead:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
