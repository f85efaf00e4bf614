"""Helpers shared by the integration tests: free ports, bounded waits, a broker in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    check: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"
) -> T:
    """Call ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last value: {last!r})")


def kill_replicas(work_root: Path) -> None:
    """Kill every replica process group a local cluster under ``work_root`` started (test cleanup)."""
    from clusters.local.processes import is_ours  # the adapter's own test: pid and start time

    for pid_file in work_root.rglob("*.pid"):
        try:
            info = json.loads(pid_file.read_text())
            if is_ours(info):
                os.killpg(int(info["pid"]), signal.SIGKILL)
        except (ValueError, KeyError, OSError):
            continue


class Broker:
    """A real broker (``python -m broker serve``) on a free loopback port, with its own config folder."""

    def __init__(
        self, root: Path, *, clusters: dict[str, dict[str, Any]] | None = None, **settings: Any
    ) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = root / "broker.yaml"
        self.clusters_dir = root / "clusters.d"
        self.data_dir = root / "data"
        self.log_path = root / "broker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.group = False  # True: the process leads a group of its own (a custom start command)
        self.scratch: Path | None = None  # a folder outside root's private temp dir, for run-as users
        self.clusters_dir.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "data_dir": str(self.data_dir),
            "clusters_dir": str(self.clusters_dir),
            "default_policy": str(REPO / "broker" / "defaults" / "policy.csv"),
            "loops": {
                "dispatch_interval": 0.5,
                "monitor_interval": 0.3,
                "health_interval": 1.0,
                "lease_ttl": 6,
            },
        }
        loops = settings.pop("loops", {})
        config["loops"].update(loops)
        config.update(settings)
        self.config_path.write_text(yaml.safe_dump(config))
        if clusters is None:
            local = self._shared_local() if settings.get("auth") == "token" else {}
            clusters = {"local": {"kind": "local", **local}}
        for name, body in clusters.items():
            self.add_cluster(name, **body)
        self.client = httpx.Client(base_url=self.url + "/api/v1", timeout=30)

    def _shared_local(self) -> dict[str, Any]:
        """The local cluster of a broker serving several people (auth: token): see :meth:`shared`."""
        return self.shared("local")

    def shared(self, name: str) -> dict[str, Any]:
        """Settings for a local-kind cluster ``name`` of a broker serving several people (auth: token):
        as root, team nlp's work runs as sbrun-b and everyone else's as sbrun-a, in a work dir under
        a scratch folder they can reach (removed with the broker); otherwise as the broker's own
        user, said explicitly (``run_as: broker``)."""
        from tests.run_as import ensure_users, is_root, replica_python, scratch_dir

        if not is_root():
            return {"run_as": "broker"}
        first, second = ensure_users()
        if self.scratch is None:
            self.scratch = scratch_dir()
        return {
            "work_dir": str(self.scratch / name),
            "run_as": {"nlp": second, "*": first},
            "notebook_python": replica_python(),
        }

    def work_dir(self, cluster: str = "local") -> Path:
        """A local cluster's work directory, from its file (default ``<data_dir>/clusters/<name>``)."""
        body = yaml.safe_load((self.clusters_dir / f"{cluster}.yaml").read_text())
        return Path(body.get("work_dir") or self.data_dir / "clusters" / cluster)

    def add_cluster(self, name: str, **body: Any) -> None:
        (self.clusters_dir / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, **body}))

    def start(
        self,
        *,
        wait: bool = True,
        command: Sequence[str] | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> Broker:
        """Start ``python -m broker serve --config <its broker.yaml>`` in its folder, or ``command``
        (in ``cwd``, with ``env``; it must serve on :attr:`port`) in a process group of its own,
        which :meth:`stop` and :meth:`kill` then end whole."""
        log = self.log_path.open("ab")
        if env is None:
            # The repository on the path, so broker.yaml's extra_kinds can name test doubles.
            path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
        self.group = command is not None
        self.proc = subprocess.Popen(
            list(command or [sys.executable, "-m", "broker", "serve", "--config", str(self.config_path)]),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd or self.root,
            env=dict(env),
            start_new_session=self.group,
        )
        if wait:
            wait_for(self._ready, timeout=timeout, what=f"broker on {self.url} (log: {self.log_path})")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"broker exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return self.client.get("/experiment/ping").status_code == 200
        except httpx.TransportError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _signal(self, signum: int) -> None:
        assert self.proc is not None
        if self.group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the broker alone (its replicas live in their own sessions and keep running)."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s (the whole group of a ``command`` started by :meth:`start`,
        even when its first process has ended)."""
        if self.proc is None:
            return
        if self.group:  # what the command started may outlive its first process
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
                with contextlib.suppress(AssertionError):
                    wait_for(lambda: not self._group_alive(), timeout=15, what="the broker's group to end")
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        elif self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=10)

    def _group_alive(self) -> bool:
        assert self.proc is not None
        self.proc.poll()  # reap the leader: a zombie still counts as a member
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        self.stop()
        kill_replicas(self.data_dir)
        if self.scratch is not None:
            kill_replicas(self.scratch)
            shutil.rmtree(self.scratch, ignore_errors=True)
        self.client.close()

    # REST shortcuts -------------------------------------------------------------------------
    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        answer = self.client.post("/experiment", json=spec)
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        answer = self.client.get(f"/experiment/{experiment_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]

    def wait_status(self, experiment_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until the experiment is in one of ``statuses``; fail early if it ends elsewhere."""
        terminal = {"Succeeded", "Failed", "Deleted"}

        def check() -> dict[str, Any] | None:
            found = self.experiment(experiment_id)
            seen.append(f"{found['status']} ({found.get('statusMessage') or found.get('reason')})")
            if found["status"] in statuses:
                return found
            if found["status"] in terminal:
                raise AssertionError(
                    f"{experiment_id} ended {found['status']} ({found['reason']}), not {statuses}"
                )
            return None

        seen: list[str] = []
        try:
            return wait_for(check, timeout=timeout, what=f"{experiment_id} to reach {'/'.join(statuses)}")
        except AssertionError as late:
            raise AssertionError(f"{late}; last seen: {seen[-1] if seen else 'nothing'}") from None

    def logs(self, experiment_id: str) -> dict[str, list[str]]:
        answer = self.client.get(f"/experiment/logs/{experiment_id}")
        assert answer.status_code == 200, answer.text
        return {entry["podName"]: entry["podLog"] for entry in answer.json()["result"]["logContent"]}

    def events(self, experiment_id: str) -> list[dict[str, Any]]:
        answer = self.client.get(f"/experiment/{experiment_id}/events")
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]


def hold_code(release: Path, marker: str = "") -> str:
    """Python code that waits for ``release`` to exist, then prints done; ``marker`` ends up in its cmdline."""
    return (
        f"# {marker}\nimport pathlib, time\n"
        f"while not pathlib.Path({str(release)!r}).exists(): time.sleep(0.05)\nprint('done')"
    )


def processes_with(marker: str) -> list[int]:
    """Pids of the processes whose command line holds ``marker``."""
    import psutil

    return [
        p.pid for p in psutil.process_iter(["pid", "cmdline"]) if marker in " ".join(p.info["cmdline"] or ())
    ]


def python_spec(
    code: str,
    *,
    name: str = "job",
    framework: str = "python",
    roles: dict[str, dict[str, Any]] | None = None,
    **meta: Any,
) -> dict[str, Any]:
    """An ExperimentSpec whose command runs ``code`` with this interpreter (or, when run-as users
    cannot start it, one of the same version with the same packages: ``tests.run_as``)."""
    import shlex

    from tests.run_as import replica_python

    cmd = f"{shlex.quote(replica_python())} -c {shlex.quote(code)}"
    return {
        "meta": {"name": name, "framework": framework, "cmd": cmd, **meta},
        "environment": {"image": "python:3.11"},
        "spec": roles or {"Worker": {"replicas": 1, "resources": "cpu=0.1,memory=64M"}},
    }


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL."""
    import threading

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        assert thread.is_alive(), "the test server thread died"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "the test server did not stop"
