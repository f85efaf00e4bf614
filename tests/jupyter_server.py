"""A real Jupyter server in a subprocess for tests: started on a free loopback port, stopped by its pid."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.support import free_port


class JupyterServer:
    """``python -m jupyter_server`` under ``base_url`` with a known token; a context manager.

    The token goes in through ``JUPYTER_TOKEN``; readiness is the first 200 from ``<base_url>api/status``
    with that token (bounded). Jupyter's config, data and runtime folders and IPython's are kept under
    ``work_dir`` so nothing from the user's home leaks in or is left behind.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        base_url: str = "/notebook/test/nb/",
        token: str | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        assert base_url.startswith("/") and base_url.endswith("/"), "base_url is /…/ (slashes both ends)"
        self.work_dir = work_dir
        self.root_dir = work_dir / "root"
        self.base_url = base_url
        self.token = token or secrets.token_hex(24)
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"  # scheme://host:port, as the proxy's Upstream wants
        self.url = self.origin + base_url  # the server's own prefix, e.g. http://127.0.0.1:5555/notebook/x/y/
        self.log_path = work_dir / "jupyter.log"
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def auth(self) -> dict[str, str]:
        """Headers that authenticate to this server directly (not through a proxy)."""
        return {"Authorization": f"token {self.token}"}

    def start(self) -> JupyterServer:
        """Start the server and wait until it answers; fail with its log if it exits or times out."""
        self.root_dir.mkdir(parents=True, exist_ok=True)
        home = self.work_dir / "home"
        env = {
            **os.environ,
            "JUPYTER_TOKEN": self.token,
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_DATA_DIR": str(home / "data"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "IPYTHONDIR": str(home / "ipython"),
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            sys.executable,
            "-m",
            "jupyter_server",
            "--allow-root",
            "--no-browser",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ServerApp.port_retries=0",
            f"--ServerApp.base_url={self.base_url}",
            f"--ServerApp.root_dir={self.root_dir}",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"jupyter server exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    if client.get(self.url + "api/status", headers=self.auth).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise AssertionError(f"jupyter server not ready after {self.startup_timeout:g}s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM (it shuts its kernels down), SIGKILL to its process group after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session (start_new_session): it and kernels
            self.proc.wait(timeout=10)

    def log(self) -> str:
        """The server's output so far (last 4000 characters)."""
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def __enter__(self) -> JupyterServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
