"""Serving speed: predictions of a small sklearn model through the broker's ``/serve/...`` proxy
against the same model server called directly, same run, same client load.

Starts, in a temporary folder, on free loopback ports (stopped by pid, their process groups, at
the end, also on error):

* the model: a ``LogisticRegression`` fitted on 150 rows of 4 features, saved as an MLflow model
  (``mlflow.sklearn.save_model``: an ``MLmodel`` file, pyfunc flavour);
* the model server: MLflow's scoring server, ``mlflow models serve -m <model> --env-manager local
  --workers 1``;
* the broker: ``bench/serving_broker.py`` (``python -m broker serve`` as usual, ``auth: token`` as
  in production (``--auth none`` for the loopback default), no clusters, dispatch paused) with that
  model server published as the ready replica of serve ``bench/iris``, as the serving service
  publishes one; the proxy side's clients send the API token of a member of team ``bench``, so
  every request is authenticated and its ``invoke`` permission checked.

Then for ``--rounds`` rounds, the side that goes first alternating, ``--concurrency`` client tasks
(aiohttp on uvloop, one keep-alive session) each send ``POST /invocations`` with one row in
``dataframe_split`` for ``--seconds``, to ``http://127.0.0.1:<model port>/invocations`` (direct)
or ``http://127.0.0.1:<broker port>/serve/bench/iris/invocations`` (proxy); one untimed second per
side first. Any answer but 200 with the prediction exits 1. Figures are over all rounds of a side:
requests per second and the 50th/99th percentile latency. The last line is::

    RESULT proxy_rps=<n> direct_rps=<n> ratio=<proxy/direct> p99_overhead_ms=<proxy p99 - direct p99>

followed by the p50s and the 1-minute load average. Run from the repository root:
``python bench/serving.py [--seconds S --rounds N --concurrency C]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BODY = json.dumps({"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[5.1, 3.5, 1.4, 0.2]]}})


class BenchError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def save_model(folder: Path) -> Path:
    """A small sklearn classifier saved as an MLflow model in ``folder/model``."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = pd.DataFrame(rng.normal(size=(150, 4)), columns=["a", "b", "c", "d"])
    labels = (features["a"] + features["b"] > 0).astype(int)
    path = folder / "model"
    mlflow.sklearn.save_model(LogisticRegression().fit(features, labels), str(path))
    return path


class Process:
    """A server subprocess leading its own process group, its output in ``log``."""

    def __init__(self, label: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.label = label
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                start_new_session=True,
            )

    def wait_ready(self, url: str, timeout: float = 180.0, token_file: Path | None = None) -> None:
        """Until ``url`` answers 200 (asked with the token in ``token_file``, once written)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.label} exited with {self.proc.returncode}:\n{self.tail()}")
            headers = {}
            if token_file is not None:
                if not token_file.exists():
                    time.sleep(0.2)
                    continue
                headers["Authorization"] = f"Bearer {token_file.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=5, headers=headers).status_code == 200:
                    return
            time.sleep(0.2)
        raise BenchError(f"{self.label} not ready after {timeout:g}s:\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and its children (mlflow's uvicorn worker)."""
        total = 0.0
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(self.proc.pid)
            for each in [process, *process.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = each.cpu_times()
                    total += times.user + times.system
        return total

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def stop(self) -> None:
        """SIGTERM to its group, SIGKILL after 15 s."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):  # children may outlive the leader for a moment
            os.killpg(self.proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def servers(
    root: Path, profile: str | None = None, auth: str = "token"
) -> Iterator[tuple[str, str, Process, Process, dict[str, str]]]:
    """The model server and the broker proxying to it: (direct URL, proxy URL) of ``/invocations``,
    the model server's and the broker's process, the headers the proxy side sends."""
    model = save_model(root)
    model_port, broker_port = free_port(), free_port()
    started: list[Process] = []
    try:
        mlflow_bin = Path(sys.executable).with_name("mlflow")
        argv = [str(mlflow_bin), "models", "serve", "-m", str(model), "--env-manager", "local"]
        argv += ["-h", "127.0.0.1", "-p", str(model_port), "--workers", "1"]
        path = {"PATH": f"{mlflow_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # its uvicorn
        model_server = Process("model server", argv, root / "model-server.log", env=path)
        started.append(model_server)
        direct = f"http://127.0.0.1:{model_port}"
        (root / "clusters.d").mkdir()
        config = {
            "host": "127.0.0.1",
            "port": broker_port,
            "data_dir": str(root / "data"),
            "clusters_dir": str(root / "clusters.d"),
            "default_policy": str(REPO / "broker" / "defaults" / "policy.csv"),
            "auth": auth,
            "loops": {"dispatch_paused": True},
        }
        (root / "broker.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
        argv = [sys.executable, str(HERE / "serving_broker.py"), "--config", str(root / "broker.yaml")]
        if profile:  # cProfile of the broker, written when it stops
            argv[1:1] = ["-m", "cProfile", "-o", profile]
        argv += ["--serve", f"bench/iris={direct}"]
        token_file = root / "caller.token"
        if auth == "token":
            argv += ["--caller-token-file", str(token_file)]
        broker = Process("broker", argv, root / "broker.log")
        started.append(broker)
        model_server.wait_ready(direct + "/ping")
        proxy = f"http://127.0.0.1:{broker_port}/serve/bench/iris"
        broker.wait_ready(proxy + "/ping", token_file=token_file if auth == "token" else None)
        headers = {"Authorization": f"Bearer {token_file.read_text()}"} if auth == "token" else {}
        yield direct + "/invocations", proxy + "/invocations", model_server, broker, headers
    finally:
        for process in reversed(started):
            process.stop()


async def load(
    url: str, seconds: float, concurrency: int, extra: dict[str, str] | None = None
) -> tuple[int, list[float]]:
    """``concurrency`` tasks posting to ``url`` for ``seconds`` (with ``extra`` headers):
    (requests done, latencies in s)."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    headers = {"Content-Type": "application/json", **(extra or {})}
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + seconds

        async def client() -> None:
            while (start := time.perf_counter()) < stop_at:
                async with session.post(url, data=BODY, headers=headers) as answer:
                    text = await answer.text()
                if answer.status != 200 or "predictions" not in text:
                    raise BenchError(f"{url}: HTTP {answer.status}: {text[:300]}")
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return round(len(latencies) / elapsed), latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per side per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile-broker", metavar="FILE", help="write the broker's cProfile stats to FILE")
    parser.add_argument("--auth", choices=["token", "none"], default="token", help="the broker's auth mode")
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    with (
        tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp,
        servers(Path(tmp), args.profile_broker, args.auth) as (
            direct,
            proxy,
            model_server,
            broker,
            proxy_headers,
        ),
    ):
        urls = {"direct": direct, "proxy": proxy}
        headers = {"direct": {}, "proxy": proxy_headers}
        for side, url in urls.items():
            asyncio.run(load(url, 1.0, args.concurrency, headers[side]))  # warm-up: connections, predictions
        done = {side: 0 for side in urls}
        took = {side: 0.0 for side in urls}
        latencies: dict[str, list[float]] = {side: [] for side in urls}
        broker_cpu = model_cpu = 0.0  # CPU seconds of each server during the proxy side's rounds
        for number in range(args.rounds):
            order = ["direct", "proxy"] if number % 2 == 0 else ["proxy", "direct"]
            for side in order:
                began, cpu = time.perf_counter(), (broker.cpu_seconds(), model_server.cpu_seconds())
                _, found = asyncio.run(load(urls[side], args.seconds, args.concurrency, headers[side]))
                took[side] += time.perf_counter() - began
                if side == "proxy":
                    broker_cpu += broker.cpu_seconds() - cpu[0]
                    model_cpu += model_server.cpu_seconds() - cpu[1]
                done[side] += len(found)
                latencies[side] += found
                print(f"round {number + 1} {side}: {len(found) / args.seconds:.0f} req/s", flush=True)
    rps = {side: done[side] / took[side] for side in urls}
    p50 = {side: percentile(latencies[side], 0.50) * 1000 for side in urls}
    p99 = {side: percentile(latencies[side], 0.99) * 1000 for side in urls}
    for side in urls:
        print(
            f"{side}: {rps[side]:.0f} req/s, p50 {p50[side]:.2f} ms, p99 {p99[side]:.2f} ms ({done[side]} requests)"
        )
    per = max(done["proxy"], 1) / 1000
    print(f"CPU per proxied request: broker {broker_cpu / per:.2f} ms, model server {model_cpu / per:.2f} ms")
    print(
        f"RESULT proxy_rps={rps['proxy']:.0f} direct_rps={rps['direct']:.0f} "
        f"ratio={rps['proxy'] / rps['direct']:.3f} p99_overhead_ms={p99['proxy'] - p99['direct']:.2f} "
        f"proxy_p50_ms={p50['proxy']:.2f} direct_p50_ms={p50['direct']:.2f} load1={os.getloadavg()[0]:.2f} "
        f"auth={args.auth}"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        sys.exit(1)
