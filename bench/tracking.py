"""Tracking speed: the broker's MLflow-compatible tracking API against a real ``mlflow server``.

Both servers run as subprocesses on free loopback ports, started here and stopped here by pid
(their process groups), each with its own database of the same kind (SQLite files in a temporary
folder by default; ``--database postgres`` makes two throwaway databases on a PostgreSQL server
with trust auth, 127.0.0.1:5432 unless ``--pg-admin-url`` says otherwise):

* MLflow: ``mlflow server --backend-store-uri <db> --artifacts-destination <tmp> --workers 1``
  from this venv, with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` and uvicorn's access log off
  (the broker logs no access either);
* the broker: ``python -m broker serve`` with ``auth: none``, no clusters, dispatch paused.

The same client load goes to each, one server at a time, the order alternating between rounds:

1. **batch**: one client sends ``runs/log-batch`` of 1,000 metrics (10 keys x 100 steps, built in
   the loop) for ``--seconds``; points/s.
2. **single**: 8 client processes (``--clients``), each with its own HTTP session, send
   ``runs/log-metric`` (one key each, in one run) for ``--seconds``; calls/s.
3. **history**: a run holding 100,000 points of one key (``--history-points``) is read whole
   through ``metrics/get-history`` with ``max_results=25000`` and page tokens, as
   ``MlflowClient.get_metric_history`` does; median seconds per full read of ``--reps``.
4. **search**: an experiment of 10,000 runs (``--search-runs``) with 10 metrics each;
   ``runs/search`` with ``filter "metrics.m0 > 0.5"``, ``order_by ["metrics.m1 DESC"]``,
   ``max_results 1000``, then a page-through of every run 1,000 at a time (the client's default
   page); median seconds of each over ``--reps``, the search time being their sum.

``--client raw`` (default) sends with ``requests.Session`` exactly the JSON the mlflow client
sends (checked against the client's own encoder at start), which keeps client CPU low on a
2-core machine; ``--client mlflow`` calls ``MlflowClient`` (``log_batch``, ``log_metric``,
``get_metric_history``, ``search_runs``) instead, so client-side object building counts too.

Seeding (untimed, its time printed) gives both sides the same runs and points. By default each
server's database is seeded through its own store code, since MLflow's API would take minutes for
10,000 runs: MLflow's ``SqlAlchemyStore`` creates run 0 and its tags, the other runs and tags are
copies of its rows and the points are bulk rows in ``metrics``/``latest_metrics``; the broker's
tracking store functions (``runs.create``, ``metrics.log_points``) write each run as its API
would, in one transaction (in a subprocess importing the broker being measured). ``--seed api``
seeds both through the API instead (``runs/create`` + ``log-batch``, 8 threads for search).

Nothing that a server drops can win: after each workload, the points (and runs) in each
database must equal what the client sent and was answered 200 for, and history reads and search
results must be complete and equal on both sides; any mismatch or non-200 answer exits 1.

``--peer-only`` runs a second MLflow server in the broker's place (to debug the bench; the ratios
should come out near 1). ``--quick`` is a smoke run with small sizes.

The last line is::

    RESULT batch_ratio=<n> single_ratio=<n> history_ratio=<n> search_ratio=<n> ...

each broker / MLflow, higher is better (rates: broker/mlflow; times: mlflow/broker), followed by
the raw figures and the 1-minute load average. Run from the repository root:
``python bench/tracking.py [--seconds S --reps N --quick --peer-only --database postgres]``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
API = "/api/2.0/mlflow/"
MLFLOW_VERSION = importlib.metadata.version("mlflow")
#: What the mlflow client sends on every call (requests adds Content-Type for ``json=``).
CLIENT_HEADERS = {
    "User-Agent": f"mlflow-python-client/{MLFLOW_VERSION}",
    "X-MLflow-Client-Version": MLFLOW_VERSION,
}
HISTORY_PAGE = 25000  # mlflow.store.tracking.GET_METRIC_HISTORY_MAX_RESULTS
SEARCH_PAGE = 1000  # MlflowClient.search_runs' default max_results
SEARCH_FILTER = "metrics.m0 > 0.5"
SEARCH_ORDER = ["metrics.m1 DESC"]
BATCH_KEYS, BATCH_STEPS = 10, 100
SEARCH_KEYS = 10
BASE_TIME = 1_700_000_000_000  # fixed epoch ms, so seeded data is the same on both sides
RUN_TAGS = {"mlflow.user": "bench", "mlflow.source.name": "bench/tracking.py", "mlflow.source.type": "LOCAL"}

# The client must fail fast, not retry a 5xx for minutes (--client mlflow).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load1() -> float:
    return os.getloadavg()[0]


class BenchError(Exception):
    """A server answered something other than 200, or stored something other than it was sent."""


# --------------------------------------------------------------------------------------------
# Servers


#: Where each server kind keeps runs and metric points.
SCHEMA = {
    "mlflow": {"run": "runs", "run_id": "run_uuid", "metric": "metrics", "experiment": "experiment_id"},
    "broker": {
        "run": "tracking_run",
        "run_id": "run_id",
        "metric": "tracking_metric",
        "experiment": "experiment_id",
    },
}


@dataclass
class Server:
    """One server subprocess (leading its own process group), its URL, database and log."""

    side: str  # "mlflow" or "broker": its column in the tables and RESULT
    kind: str  # "mlflow" or "broker": which schema its database has (--peer-only: both mlflow)
    argv: list[str]
    env: dict[str, str]
    url: str
    db_url: str
    log_path: Path
    cwd: Path = REPO  # python -m puts it first on the path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def label(self) -> str:
        return f"{self.side} (mlflow peer)" if self.side == "broker" and self.kind == "mlflow" else self.side

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,  # mlflow server runs uvicorn as a child: stop the group
            )

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Poll ``experiments/get`` of experiment 0 until it answers 200; the seconds it took."""
        assert self.proc is not None
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.label} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                answer = requests.get(
                    f"{self.url}{API}experiments/get", params={"experiment_id": "0"}, timeout=5
                )
                if answer.status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.2)
        raise BenchError(f"{self.label} not ready after {timeout:g}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the group it leads, SIGKILL after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # mlflow's uvicorn child may outlive its parent for a moment
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its children (mlflow's uvicorn worker)."""
        assert self.proc is not None
        total = 0.0
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(self.proc.pid)
            for each in [process, *process.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = each.cpu_times()
                    total += times.user + times.system
        return total

    def rss_mb(self) -> float:
        assert self.proc is not None
        total = 0
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(self.proc.pid)
            for each in [process, *process.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += each.memory_info().rss
        return total / 2**20

    def log_errors(self) -> list[str]:
        """Lines of its log that report an error or a traceback."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if " ERROR " in line or line.startswith(("ERROR", "Traceback"))]

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    # ---- what its database holds (read by the bench, not through the server)

    def _scalar(self, sql: str, **params: Any) -> int:
        engine = sa.create_engine(self.db_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.text(sql), params).scalar_one())
        finally:
            engine.dispose()

    def points(self, run_id: str) -> int:
        s = SCHEMA[self.kind]
        return self._scalar(f"SELECT count(*) FROM {s['metric']} WHERE {s['run_id']} = :r", r=run_id)

    def experiment_counts(self, experiment_id: str) -> tuple[int, int]:
        """(runs, metric points) in an experiment."""
        s = SCHEMA[self.kind]
        runs = self._scalar(
            f"SELECT count(*) FROM {s['run']} WHERE {s['experiment']} = :e", e=int(experiment_id)
        )
        points = self._scalar(
            f"SELECT count(*) FROM {s['metric']} m JOIN {s['run']} r ON m.{s['run_id']} = r.{s['run_id']} "
            f"WHERE r.{s['experiment']} = :e",
            e=int(experiment_id),
        )
        return runs, points


def mlflow_server(side: str, root: Path, db_url: str) -> Server:
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    launcher = [str(mlflow_bin)] if mlflow_bin.exists() else [sys.executable, "-m", "mlflow"]
    argv = [
        *launcher,
        "server",
        "--backend-store-uri",
        db_url,
        "--artifacts-destination",
        str(root / f"{side}-mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--uvicorn-opts",
        "--no-access-log",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONUNBUFFERED": "1"}
    return Server(side, "mlflow", argv, env, f"http://127.0.0.1:{port}", db_url, root / f"{side}.log")


def broker_server(root: Path, db_url: str, source: Path | None = None) -> Server:
    port = free_port()
    folder = root / "broker"
    (folder / "clusters.d").mkdir(parents=True)
    config = {
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(folder / "data"),
        "database_url": db_url,
        "clusters_dir": str(folder / "clusters.d"),
        "default_policy": str((source or REPO) / "broker" / "defaults" / "policy.csv"),
        "auth": "none",
        "loops": {"dispatch_paused": True},
    }
    (folder / "broker.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    argv = [sys.executable, "-m", "broker", "serve", "--config", str(folder / "broker.yaml")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    url = f"http://127.0.0.1:{port}"
    return Server("broker", "broker", argv, env, url, db_url, root / "broker.log", cwd=source or REPO)


class Databases:
    """Two empty databases of one kind: SQLite files, or throwaway PostgreSQL databases."""

    def __init__(self, kind: str, root: Path, admin_url: str) -> None:
        self.kind = kind
        self.root = root
        self.admin_url = admin_url
        self.created: list[str] = []

    def make(self, side: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.root / f'{side}.db'}"
        name = f"bench_tracking_{side}_{os.getpid()}"
        self._admin(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return sa.engine.make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop(self) -> None:
        for name in self.created:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()

    def _admin(self, *statements: str) -> None:
        engine = sa.create_engine(self.admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                for statement in statements:
                    conn.execute(sa.text(statement))
        finally:
            engine.dispose()


# --------------------------------------------------------------------------------------------
# The client side: the JSON the mlflow client sends, through requests or through MlflowClient


class Api:
    """A keep-alive ``requests.Session`` speaking the tracking API as the mlflow client does
    (POST with ``json=``, GET with the fields as query parameters); anything but 200 raises."""

    def __init__(self, url: str) -> None:
        self.base = url + API
        self.session = requests.Session()
        self.session.headers.update(CLIENT_HEADERS)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._answer("POST", path, self.session.post(self.base + path, json=body, timeout=120))

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._answer("GET", path, self.session.get(self.base + path, params=params, timeout=120))

    @staticmethod
    def _answer(method: str, path: str, answer: requests.Response) -> dict[str, Any]:
        if answer.status_code != 200:
            raise BenchError(f"{method} {path}: HTTP {answer.status_code}: {answer.text[:300]}")
        return answer.json() if answer.content else {}

    def close(self) -> None:
        self.session.close()


def batch_body(run_id: str, call: int, timestamp: int) -> dict[str, Any]:
    """Call ``call``'s 1,000 points: keys m0..m9, steps call*100 .. call*100+99 (never repeated,
    so no point is a duplicate the server may store once)."""
    first = call * BATCH_STEPS
    metrics = [
        {"key": f"m{k}", "value": (first + s) * 0.001 + k, "timestamp": timestamp, "step": first + s}
        for k in range(BATCH_KEYS)
        for s in range(BATCH_STEPS)
    ]
    return {"run_id": run_id, "metrics": metrics}


def metric_body(run_id: str, key: str, value: float, timestamp: int, step: int) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "run_uuid": run_id,
        "key": key,
        "value": value,
        "timestamp": timestamp,
        "step": step,
    }


def history_params(run_id: str, key: str, token: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "run_id": run_id,
        "run_uuid": run_id,
        "metric_key": key,
        "max_results": HISTORY_PAGE,
    }
    if token:
        params["page_token"] = token
    return params


def search_body(
    experiment_id: str, filter_string: str, order_by: list[str], token: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "experiment_ids": [experiment_id],
        "run_view_type": "ACTIVE_ONLY",
        "max_results": SEARCH_PAGE,
    }
    if filter_string:
        body["filter"] = filter_string
    if order_by:
        body["order_by"] = order_by
    if token:
        body["page_token"] = token
    return body


def check_client_json() -> None:
    """The raw client's bodies are what the mlflow client's own encoder makes for the same calls."""
    from mlflow.entities import Metric
    from mlflow.protos.service_pb2 import GetMetricHistory, LogBatch, LogMetric, SearchRuns
    from mlflow.utils.proto_json_utils import message_to_json

    run = uuid.uuid4().hex
    body = batch_body(run, 3, BASE_TIME)
    proto = LogBatch(
        run_id=run,
        metrics=[Metric(m["key"], m["value"], m["timestamp"], m["step"]).to_proto() for m in body["metrics"]],
    )
    pairs: list[tuple[str, Any, Any]] = [("log-batch", body, json.loads(message_to_json(proto)))]
    body = metric_body(run, "loss1", 0.5, BASE_TIME, 7)
    proto = LogMetric(run_id=run, run_uuid=run, key="loss1", value=0.5, timestamp=BASE_TIME, step=7)
    pairs.append(("log-metric", body, json.loads(message_to_json(proto))))
    body = history_params(run, "h", "tok")
    proto = GetMetricHistory(
        run_id=run, run_uuid=run, metric_key="h", max_results=HISTORY_PAGE, page_token="tok"
    )
    pairs.append(("get-history", body, json.loads(message_to_json(proto))))
    body = search_body("7", SEARCH_FILTER, SEARCH_ORDER, "tok")
    proto = SearchRuns(
        experiment_ids=["7"],
        filter=SEARCH_FILTER,
        run_view_type=1,
        max_results=SEARCH_PAGE,
        order_by=SEARCH_ORDER,
        page_token="tok",
    )
    pairs.append(("search", body, json.loads(message_to_json(proto))))
    for name, ours, clients in pairs:
        if ours != clients:
            raise BenchError(f"the raw {name} body differs from the mlflow client's:\n{ours}\n{clients}")


@dataclass
class Window:
    """What one timed window of a write workload saw."""

    side: str
    unit: str  # "points" or "calls"
    per_call: int  # units per successful call
    ok: int = 0
    failed: int = 0
    warm: int = 0  # successful untimed calls (they store points too)
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    load: float = 0.0
    first_failure: str | None = None

    @property
    def rate(self) -> float:
        return self.ok * self.per_call / self.elapsed if self.elapsed else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000

    def line(self) -> str:
        return (
            f"{self.side:>7}: {self.rate:9.1f} {self.unit}/s  {self.ok} calls ok, {self.failed} failed in "
            f"{self.elapsed:.2f} s  p50 {self.pct(50):.1f} ms  p90 {self.pct(90):.1f} ms  p99 {self.pct(99):.1f} ms  "
            f"server cpu {self.server_cpu:.0%}  client cpu {self.client_cpu:.0%}  load {self.load:.1f}"
        )


def create_experiment(api: Api, name: str) -> str:
    return str(api.post("experiments/create", {"name": name})["experiment_id"])


def create_run(api: Api, experiment_id: str, name: str, start_time: int) -> str:
    tags = [{"key": k, "value": v} for k, v in {**RUN_TAGS, "mlflow.runName": name}.items()]
    body = {
        "experiment_id": experiment_id,
        "user_id": "bench",
        "run_name": name,
        "start_time": start_time,
        "tags": tags,
    }
    return str(api.post("runs/create", body)["run"]["info"]["run_id"])


# --------------------------------------------------------------------------------------------
# 1. batch


def batch_window(server: Server, run_id: str, seconds: float, client: str) -> Window:
    window = Window(server.side, "points", BATCH_KEYS * BATCH_STEPS)
    send = _batch_sender(server.url, run_id, client)
    call = 0
    for _ in range(3):  # warm-up: connection, caches
        send(call)
        call += 1
        window.warm += 1
    window.load = load1()
    cpu_before, client_before = server.cpu_seconds(), time.process_time()
    started = time.perf_counter()
    end = started + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        try:
            send(call)
        except Exception as exc:  # noqa: BLE001 - a failed call is counted and reported
            window.failed += 1
            window.first_failure = window.first_failure or f"{type(exc).__name__}: {exc}"
        else:
            window.ok += 1
            window.latencies.append(time.perf_counter() - now)
        call += 1
    window.elapsed = time.perf_counter() - started
    window.server_cpu = (server.cpu_seconds() - cpu_before) / window.elapsed
    window.client_cpu = (time.process_time() - client_before) / window.elapsed
    return window


def _batch_sender(url: str, run_id: str, client: str) -> Callable[[int], None]:
    if client == "raw":
        api = Api(url)

        def send(call: int) -> None:
            api.post("runs/log-batch", batch_body(run_id, call, int(time.time() * 1000)))

        return send
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    mlflow_client = MlflowClient(tracking_uri=url)

    def send_client(call: int) -> None:
        body = batch_body(run_id, call, int(time.time() * 1000))
        metrics = [Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in body["metrics"]]
        mlflow_client.log_batch(run_id, metrics=metrics, synchronous=True)

    return send_client


# --------------------------------------------------------------------------------------------
# 2. single: --clients processes, each its own session and key, one shared run


def _single_client(
    url: str, run_id: str, key: str, start_at: float, seconds: float, client: str, out: Any
) -> None:
    result: dict[str, Any] = {"ok": 0, "failed": 0, "warm": 0, "latencies": [], "first_failure": None}
    try:
        if client == "raw":
            api = Api(url)

            def send(step: int) -> None:
                api.post(
                    "runs/log-metric", metric_body(run_id, key, step * 0.5, int(time.time() * 1000), step)
                )

        else:
            from mlflow.tracking import MlflowClient

            mlflow_client = MlflowClient(tracking_uri=url)

            def send(step: int) -> None:
                mlflow_client.log_metric(
                    run_id, key, step * 0.5, timestamp=int(time.time() * 1000), step=step, synchronous=True
                )

        send(0)  # warm-up: the connection
        result["warm"] = 1
        step = 1
        time.sleep(max(0.0, start_at - time.time()))
        cpu_before = time.process_time()
        end = start_at + seconds
        while time.time() < end:
            began = time.perf_counter()
            try:
                send(step)
            except Exception as exc:  # noqa: BLE001
                result["failed"] += 1
                result["first_failure"] = result["first_failure"] or f"{type(exc).__name__}: {exc}"
            else:
                result["ok"] += 1
                result["latencies"].append(time.perf_counter() - began)
            step += 1
        result["finished_at"] = time.time()
        result["cpu"] = time.process_time() - cpu_before
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        result["first_failure"] = result["first_failure"] or f"{type(exc).__name__}: {exc}"
        result.setdefault("finished_at", time.time())
        result.setdefault("cpu", 0.0)
    out.put(result)


def single_window(server: Server, run_id: str, seconds: float, clients: int, client: str) -> Window:
    window = Window(server.side, "calls", 1)
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    start_at = time.time() + 2.0  # every client connected and warmed by then
    processes = [
        context.Process(
            target=_single_client,
            args=(server.url, run_id, f"loss{i}", start_at, seconds, client, out),
            daemon=True,
        )
        for i in range(clients)
    ]
    try:
        for process in processes:
            process.start()
        time.sleep(max(0.0, start_at - time.time()))
        window.load = load1()
        cpu_before = server.cpu_seconds()
        results = [out.get(timeout=seconds + 180) for _ in processes]
        cpu_after = server.cpu_seconds()
        for process in processes:
            process.join(timeout=10)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
    window.elapsed = max(r["finished_at"] for r in results) - start_at
    for result in results:
        window.ok += result["ok"]
        window.failed += result["failed"]
        window.warm += result["warm"]
        window.latencies += result["latencies"]
        window.client_cpu += result["cpu"]
        window.first_failure = window.first_failure or result["first_failure"]
    window.client_cpu /= window.elapsed
    window.server_cpu = (cpu_after - cpu_before) / window.elapsed
    return window


# --------------------------------------------------------------------------------------------
# Seeding (untimed): the same runs and points on both sides


def history_values(points: int) -> list[float]:
    rng = random.Random(16)
    return [rng.random() for _ in range(points)]


def search_values(runs: int) -> list[list[float]]:
    rng = random.Random(1016)
    return [[rng.random() for _ in range(SEARCH_KEYS)] for _ in range(runs)]


@dataclass
class SeedRun:
    """One run to seed: its name, start time and points as (key, value, timestamp, step)."""

    name: str
    start: int
    points: list[tuple[str, float, int, int]]


def dataset(what: str, count: int) -> list[SeedRun]:
    """``history``: one run of ``count`` points of key "h"; ``search``: ``count`` runs with one
    point of each of m0..m9. The same on both sides, whichever way they are seeded."""
    if what == "history":
        values = history_values(count)
        return [SeedRun("history", BASE_TIME, [("h", values[s], BASE_TIME + s, s) for s in range(count)])]
    return [
        SeedRun(
            f"run-{i:05d}", BASE_TIME + i, [(f"m{k}", v[k], BASE_TIME + i, 0) for k in range(SEARCH_KEYS)]
        )
        for i, v in enumerate(search_values(count))
    ]


SEED_HOW = {
    "api": "through the API (runs/create, then log-batch of up to 1,000 points; {threads} thread(s))",
    "mlflow": "through MLflow's SqlAlchemyStore (create_run, then bulk copies of its rows and bulk metric rows)",
    "broker": "through the broker's tracking store (tracking.runs.create + tracking.metrics.log_points, a transaction per 500 runs)",
}


def seed(server: Server, experiment_id: str, what: str, count: int, mode: str) -> tuple[list[str], str]:
    """Seed ``dataset(what, count)`` into ``experiment_id``: the run ids and how it was done."""
    runs = dataset(what, count)
    if mode == "api":
        threads = 1 if len(runs) == 1 else 8
        return seed_api(server, experiment_id, runs, threads), SEED_HOW["api"].format(threads=threads)
    if server.kind == "mlflow":
        return seed_mlflow_store(server, experiment_id, runs), SEED_HOW["mlflow"]
    return seed_broker_store(server, experiment_id, what, count), SEED_HOW["broker"]


def seed_api(server: Server, experiment_id: str, runs: list[SeedRun], threads: int) -> list[str]:
    local = threading.local()

    def one(run: SeedRun) -> str:
        if not hasattr(local, "api"):
            local.api = Api(server.url)
        run_id = create_run(local.api, experiment_id, run.name, run.start)
        for first in range(0, len(run.points), 1000):
            metrics = [
                {"key": k, "value": v, "timestamp": t, "step": s}
                for k, v, t, s in run.points[first : first + 1000]
            ]
            local.api.post("runs/log-batch", {"run_id": run_id, "metrics": metrics})
        return run_id

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, runs))


class MlflowStoreSeeder:
    """Seeds an MLflow database through MLflow's own ``SqlAlchemyStore``: run 0 is made by
    ``store.create_run`` (MLflow's own columns, tags and artifact URI), the other runs are copies
    of its rows with their own id, name and start time, and metric points are inserted in bulk into
    ``metrics`` and ``latest_metrics`` as ``store.log_batch`` would leave them."""

    def __init__(self, db_url: str) -> None:
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun, SqlTag
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        self.store = SqlAlchemyStore(db_url, "mlflow-artifacts:/")
        self.runs, self.tags = SqlRun.__table__, SqlTag.__table__
        self.metrics, self.latest = SqlMetric.__table__, SqlLatestMetric.__table__

    def close(self) -> None:
        self.store.engine.dispose()

    def create_runs(self, experiment_id: str, names: list[str], starts: list[int]) -> list[str]:
        from mlflow.entities import RunTag

        first = self.store.create_run(
            experiment_id=experiment_id,
            user_id="bench",
            start_time=starts[0],
            tags=[RunTag(k, v) for k, v in {**RUN_TAGS, "mlflow.runName": names[0]}.items()],
            run_name=names[0],
        ).info.run_id
        run_ids = [first] + [uuid.uuid4().hex for _ in names[1:]]
        with self.store.engine.begin() as conn:
            template = dict(
                conn.execute(sa.select(self.runs).where(self.runs.c.run_uuid == first)).mappings().one()
            )
            tags = [
                dict(t)
                for t in conn.execute(sa.select(self.tags).where(self.tags.c.run_uuid == first)).mappings()
            ]
            run_rows, tag_rows = [], []
            for run_id, name, start in zip(run_ids[1:], names[1:], starts[1:], strict=True):
                uri = template["artifact_uri"].replace(first, run_id)
                run_rows.append(
                    {**template, "run_uuid": run_id, "name": name, "start_time": start, "artifact_uri": uri}
                )
                for tag in tags:
                    value = name if tag["key"] == "mlflow.runName" else tag["value"]
                    tag_rows.append({**tag, "run_uuid": run_id, "value": value})
            if run_rows:
                conn.execute(sa.insert(self.runs), run_rows)
                conn.execute(sa.insert(self.tags), tag_rows)
        return run_ids

    def add_points(self, rows: list[dict[str, Any]]) -> None:
        """``rows``: run_uuid, key, value, timestamp, step. ``latest_metrics`` gets each run and
        key's point of highest (step, timestamp, value), MLflow's rule."""
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            row["is_nan"] = False
            seen = latest.get((row["run_uuid"], row["key"]))
            if seen is None or (row["step"], row["timestamp"], row["value"]) > (
                seen["step"],
                seen["timestamp"],
                seen["value"],
            ):
                latest[(row["run_uuid"], row["key"])] = row
        with self.store.engine.begin() as conn:
            for first in range(0, len(rows), 50_000):
                conn.execute(sa.insert(self.metrics), rows[first : first + 50_000])
            conn.execute(sa.insert(self.latest), list(latest.values()))


def seed_mlflow_store(server: Server, experiment_id: str, runs: list[SeedRun]) -> list[str]:
    seeder = MlflowStoreSeeder(server.db_url)
    try:
        run_ids = seeder.create_runs(experiment_id, [r.name for r in runs], [r.start for r in runs])
        seeder.add_points(
            [
                {"run_uuid": run_id, "key": k, "value": v, "timestamp": t, "step": s}
                for run_id, run in zip(run_ids, runs, strict=True)
                for k, v, t, s in run.points
            ]
        )
        return run_ids
    finally:
        seeder.close()


def seed_broker_store(server: Server, experiment_id: str, what: str, count: int) -> list[str]:
    """Run :func:`broker_store_seeder` in a subprocess that imports the broker being measured."""
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--seed-broker-store",
        what,
        str(count),
        experiment_id,
        server.db_url,
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(server.cwd), os.environ.get("PYTHONPATH")) if p),
    }
    done = subprocess.run(argv, capture_output=True, text=True, cwd=server.cwd, env=env, check=False)
    if done.returncode != 0:
        raise BenchError(f"seeding the broker's store failed:\n{done.stderr[-3000:]}")
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def broker_store_seeder(what: str, count: int, experiment_id: str, db_url: str) -> None:
    """(In a subprocess.) Write ``dataset(what, count)`` with the broker's own tracking store code,
    each run as ``runs/create`` + ``runs/log-batch`` would; print the run ids. A transaction per
    500 runs: the running broker's own writer (its scheduler lease) waits for SQLite's lock
    meanwhile, and would give up after its busy timeout (30 s) on one transaction of them all."""
    from sqlalchemy.orm import Session

    from broker.store.database import make_engine
    from broker.tracking import experiments, metrics, runs

    engine = make_engine(db_url)
    with Session(engine) as session:
        experiment = experiments.get(session, int(experiment_id))
        if experiment is None:
            raise SystemExit(f"no experiment {experiment_id}")
        namespace = experiment.namespace
    run_ids: list[str] = []
    runs_to_write = dataset(what, count)
    for first_run in range(0, len(runs_to_write), 500):
        with Session(engine) as session, session.begin():
            for run in runs_to_write[first_run : first_run + 500]:
                run_id = runs.create(
                    session,
                    experiment_id=int(experiment_id),
                    namespace=namespace,
                    user_id="bench",
                    run_name=run.name,
                    start_time=run.start,
                    tags=[*RUN_TAGS.items(), ("mlflow.runName", run.name)],
                )
                for first in range(0, len(run.points), 1000):
                    points = [metrics.Point(k, v, t, s) for k, v, t, s in run.points[first : first + 1000]]
                    metrics.log_points(session, run_id, points)
                run_ids.append(run_id)
    engine.dispose()
    print(json.dumps(run_ids))


# --------------------------------------------------------------------------------------------
# 3. history and 4. search reads


def read_history(server: Server, run_id: str, client: str) -> list[tuple[int, float]]:
    """Every (step, value) of key "h", paged as ``MlflowClient.get_metric_history`` pages."""
    if client == "mlflow":
        from mlflow.tracking import MlflowClient

        return [
            (m.step, m.value) for m in MlflowClient(tracking_uri=server.url).get_metric_history(run_id, "h")
        ]
    api = Api(server.url)
    points: list[tuple[int, float]] = []
    token = None
    while True:
        page = api.get("metrics/get-history", history_params(run_id, "h", token))
        points += [(int(m.get("step", 0)), float(m["value"])) for m in page.get("metrics", [])]
        token = page.get("next_page_token")
        if not token:
            api.close()
            return points


def search(
    server: Server, experiment_id: str, filter_string: str, order_by: list[str], pages: bool, client: str
) -> list[tuple[str, float]]:
    """(run name, m1) of each run found; one page unless ``pages`` (then every page)."""
    found: list[tuple[str, float]] = []
    token = None
    if client == "mlflow":
        from mlflow.tracking import MlflowClient

        mlflow_client = MlflowClient(tracking_uri=server.url)
        while True:
            runs = mlflow_client.search_runs(
                [experiment_id], filter_string, max_results=SEARCH_PAGE, order_by=order_by, page_token=token
            )
            found += [(r.info.run_name, r.data.metrics.get("m1", math.nan)) for r in runs]
            token = runs.token
            if not pages or not token:
                return found
    api = Api(server.url)
    while True:
        answer = api.post("runs/search", search_body(experiment_id, filter_string, order_by, token))
        for run in answer.get("runs", []):
            m1 = next(
                (float(m["value"]) for m in run.get("data", {}).get("metrics", []) if m["key"] == "m1"),
                math.nan,
            )
            found.append((run["info"]["run_name"], m1))
        token = answer.get("next_page_token")
        if not pages or not token:
            api.close()
            return found


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def ordered(servers: tuple[Server, Server], index: int) -> tuple[Server, ...]:
    return servers if index % 2 == 0 else servers[::-1]


# --------------------------------------------------------------------------------------------
# The bench


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def check(self, ok: bool, message: str) -> None:
        print(f"  check: {message}: {'ok' if ok else 'MISMATCH'}")
        if not ok:
            self.problems.append(message)


def write_workload(
    name: str,
    servers: tuple[Server, Server],
    args: argparse.Namespace,
    outcome: Outcome,
    window_of: Callable[[Server, str], Window],
) -> dict[str, float]:
    """Rounds of timed windows (fresh run each, order alternating); points stored == points sent."""
    windows: dict[str, list[Window]] = {s.side: [] for s in servers}
    per_call = 0
    for index in range(args.rounds):
        for server in ordered(servers, index):
            api = Api(server.url)
            experiment_id = create_experiment(api, f"bench-{name}-{index}-{uuid.uuid4().hex[:6]}")
            run_id = create_run(api, experiment_id, f"{name}-{index}", int(time.time() * 1000))
            api.close()
            window = window_of(server, run_id)
            per_call = window.per_call
            windows[server.side].append(window)
            print(f"  round {index + 1} {window.line()}")
            if window.first_failure:
                print(f"           first failure: {window.first_failure}")
                outcome.problems.append(f"{name}: {server.side}: {window.failed} failed calls")
            stored = server.points(run_id)
            sent = (window.ok + window.warm) * per_call
            outcome.check(stored == sent, f"{server.side} stored {stored} points, sent {sent} with a 200")
    rates = {}
    for server in servers:
        done = windows[server.side]
        rates[server.side] = sum(w.ok for w in done) * per_call / sum(w.elapsed for w in done)
    return rates


def bench(args: argparse.Namespace, root: Path) -> int:
    databases = Databases(args.database, root, args.pg_admin_url)
    outcome = Outcome()
    servers: tuple[Server, Server] | None = None
    try:
        mlflow_side = mlflow_server("mlflow", root, databases.make("mlflow"))
        broker_db = databases.make("broker")
        broker_side = (
            mlflow_server("broker", root, broker_db)
            if args.peer_only
            else broker_server(root, broker_db, args.broker_src)
        )
        servers = (mlflow_side, broker_side)
        if args.client == "raw":
            check_client_json()
        print(
            f"tracking bench: mlflow {MLFLOW_VERSION} server vs {broker_side.label}; database {args.database}; "
            f"client {args.client}; {args.seconds:g} s x {args.rounds} rounds per write workload; {args.clients} single "
            f"clients; history {args.history_points} points; search {args.search_runs} runs; {args.reps} reads each"
        )
        print(f"machine: {os.cpu_count()} cpus, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for server in servers:
            server.start()
        for server in servers:
            print(
                f"{server.label}: ready in {server.wait_ready():.1f} s on {server.url} (pid {server.proc.pid if server.proc else '?'})"
            )

        print("\n1. batch: runs/log-batch of 1,000 metrics (10 keys x 100 steps), 1 client")
        batch = write_workload(
            "batch", servers, args, outcome, lambda s, run: batch_window(s, run, args.seconds, args.client)
        )
        print(f"\n2. single: runs/log-metric from {args.clients} client processes, one key each, one run")
        single = write_workload(
            "single",
            servers,
            args,
            outcome,
            lambda s, run: single_window(s, run, args.seconds, args.clients, args.client),
        )

        print(f"\n3. history: metrics/get-history of {args.history_points:,} points, pages of {HISTORY_PAGE}")
        history_runs: dict[str, str] = {}
        for server in servers:
            api = Api(server.url)
            experiment_id = create_experiment(api, f"bench-history-{uuid.uuid4().hex[:6]}")
            api.close()
            took, (run_ids, how) = timed(
                seed, server, experiment_id, "history", args.history_points, args.seed
            )
            history_runs[server.side] = run_ids[0]
            print(f"  seeded {server.side} in {took:.1f} s {how}")
            outcome.check(
                server.points(history_runs[server.side]) == args.history_points,
                f"{server.side} database holds {args.history_points} points",
            )
        expected = sorted(zip(range(args.history_points), history_values(args.history_points), strict=True))
        history_times: dict[str, list[float]] = {s.side: [] for s in servers}
        for rep in range(args.reps):
            for server in ordered(servers, rep):
                took, points = timed(read_history, server, history_runs[server.side], args.client)
                history_times[server.side].append(took)
                if rep == 0:
                    outcome.check(
                        sorted(points) == expected,
                        f"{server.side} read back all {len(points)} points as sent",
                    )
        for server in servers:
            times = history_times[server.side]
            print(
                f"  {server.side:>7}: median {statistics.median(times):.3f} s per full read  ({', '.join(f'{t:.3f}' for t in times)})  load {load1():.1f}"
            )

        print(f"\n4. search: runs/search over {args.search_runs:,} runs with {SEARCH_KEYS} metrics each")
        search_experiments: dict[str, str] = {}
        for server in servers:
            api = Api(server.url)
            experiment_id = search_experiments[server.side] = create_experiment(
                api, f"bench-search-{uuid.uuid4().hex[:6]}"
            )
            api.close()
            took, (_, how) = timed(seed, server, experiment_id, "search", args.search_runs, args.seed)
            print(f"  seeded {server.side} in {took:.1f} s {how}")
            counts = server.experiment_counts(experiment_id)
            outcome.check(
                counts == (args.search_runs, args.search_runs * SEARCH_KEYS),
                f"{server.side} database holds {counts[0]} runs and {counts[1]} points",
            )
        values = search_values(args.search_runs)
        want_query = sorted(
            ((f"run-{i:05d}", v[1]) for i, v in enumerate(values) if v[0] > 0.5), key=lambda r: -r[1]
        )[:SEARCH_PAGE]
        want_all = sorted((f"run-{i:05d}", v[1]) for i, v in enumerate(values))
        query_times: dict[str, list[float]] = {s.side: [] for s in servers}
        pages_times: dict[str, list[float]] = {s.side: [] for s in servers}
        for rep in range(args.reps):
            for server in ordered(servers, rep):
                experiment_id = search_experiments[server.side]
                took, found = timed(
                    search, server, experiment_id, SEARCH_FILTER, SEARCH_ORDER, False, args.client
                )
                query_times[server.side].append(took)
                if rep == 0:
                    outcome.check(
                        found == want_query,
                        f"{server.side} query found the {len(found)} expected runs in order",
                    )
                took, found = timed(search, server, experiment_id, "", [], True, args.client)
                pages_times[server.side].append(took)
                if rep == 0:
                    outcome.check(
                        sorted(found) == want_all, f"{server.side} page-through found all {len(found)} runs"
                    )
        for server in servers:
            q, p = query_times[server.side], pages_times[server.side]
            print(
                f"  {server.side:>7}: query median {statistics.median(q):.3f} s ({', '.join(f'{t:.3f}' for t in q)}); "
                f"page-through median {statistics.median(p):.3f} s ({', '.join(f'{t:.3f}' for t in p)})  load {load1():.1f}"
            )
        for server in servers:
            errors = server.log_errors()
            print(
                f"{server.label}: rss {server.rss_mb():.0f} MB at the end; {len(errors)} error lines in its log"
            )
            for line in errors[:5]:
                print(f"    {line[:200]}")
    finally:
        if servers:
            for server in servers:
                server.stop()
        databases.drop()

    f = outcome.figures
    f["mlflow_batch_pps"], f["broker_batch_pps"] = batch["mlflow"], batch["broker"]
    f["mlflow_single_cps"], f["broker_single_cps"] = single["mlflow"], single["broker"]
    f["mlflow_history_s"] = statistics.median(history_times["mlflow"])
    f["broker_history_s"] = statistics.median(history_times["broker"])
    f["mlflow_query_s"] = statistics.median(query_times["mlflow"])
    f["broker_query_s"] = statistics.median(query_times["broker"])
    f["mlflow_pages_s"] = statistics.median(pages_times["mlflow"])
    f["broker_pages_s"] = statistics.median(pages_times["broker"])
    f["mlflow_search_s"] = f["mlflow_query_s"] + f["mlflow_pages_s"]
    f["broker_search_s"] = f["broker_query_s"] + f["broker_pages_s"]
    ratios = {
        "batch_ratio": f["broker_batch_pps"] / f["mlflow_batch_pps"],
        "single_ratio": f["broker_single_cps"] / f["mlflow_single_cps"],
        "history_ratio": f["mlflow_history_s"] / f["broker_history_s"],
        "search_ratio": f["mlflow_search_s"] / f["broker_search_s"],
    }
    print(f"\n{'workload':<34}{'mlflow':>12}{'broker':>12}{'ratio':>8}  goal")
    rows = [
        ("batch points/s", f["mlflow_batch_pps"], f["broker_batch_pps"], ratios["batch_ratio"], 5),
        (
            f"single calls/s ({args.clients} clients)",
            f["mlflow_single_cps"],
            f["broker_single_cps"],
            ratios["single_ratio"],
            2,
        ),
        ("history s per full read", f["mlflow_history_s"], f["broker_history_s"], ratios["history_ratio"], 2),
        (
            "search s (query + page-through)",
            f["mlflow_search_s"],
            f["broker_search_s"],
            ratios["search_ratio"],
            2,
        ),
        (
            "  query s",
            f["mlflow_query_s"],
            f["broker_query_s"],
            f["mlflow_query_s"] / f["broker_query_s"],
            None,
        ),
        (
            "  page-through s",
            f["mlflow_pages_s"],
            f["broker_pages_s"],
            f["mlflow_pages_s"] / f["broker_pages_s"],
            None,
        ),
    ]
    for label, mine, theirs, ratio, goal in rows:
        fmt = "{:12.1f}" if mine > 100 else "{:12.3f}"
        mark = "" if goal is None else (f">= {goal}  " + ("met" if ratio >= goal else "NOT met"))
        print(f"{label:<34}{fmt.format(mine)}{fmt.format(theirs)}{ratio:8.2f}  {mark}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if outcome.problems:
        print("ERROR: " + "; ".join(outcome.problems), file=sys.stderr)
        return 1
    extra = " ".join(f"{k}={v:.0f}" if v > 100 else f"{k}={v:.3f}" for k, v in f.items())
    print("RESULT " + " ".join(f"{k}={v:.2f}" for k, v in ratios.items()) + f" {extra} load1={load1():.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="length of each timed write window (default 10)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="timed windows per server per write workload (default 2)"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent log-metric clients (default 8)")
    parser.add_argument(
        "--history-points", type=int, default=100_000, help="points in the history run (default 100,000)"
    )
    parser.add_argument(
        "--search-runs", type=int, default=10_000, help="runs in the search experiment (default 10,000)"
    )
    parser.add_argument(
        "--reps", type=int, default=3, help="timed reads per server for history and search (default 3)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 3 s x 1 round, 10,000 points, 1,000 runs, 2 reps"
    )
    parser.add_argument(
        "--client",
        choices=("raw", "mlflow"),
        default="raw",
        help="requests with the client's JSON (default) or MlflowClient",
    )
    parser.add_argument(
        "--seed",
        choices=("store", "api"),
        default="store",
        help="seed each server through its own store code (default) or both through the API (slow on MLflow)",
    )
    parser.add_argument("--seed-broker-store", nargs=4, help=argparse.SUPPRESS)  # the seeding subprocess
    parser.add_argument(
        "--database", choices=("sqlite", "postgres"), default="sqlite", help="database kind of both servers"
    )
    parser.add_argument(
        "--pg-admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="--database postgres: a URL that may create and drop databases (trust auth)",
    )
    parser.add_argument(
        "--peer-only", action="store_true", help="a second MLflow server in the broker's place (debug)"
    )
    parser.add_argument(
        "--broker-src", type=Path, help="run the broker from this source folder (default: this repository)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases)")
    args = parser.parse_args(argv)
    if args.seed_broker_store:
        what, count, experiment_id, db_url = args.seed_broker_store
        broker_store_seeder(what, int(count), experiment_id, db_url)
        return 0
    if args.quick:
        args.seconds, args.rounds, args.history_points, args.search_runs, args.reps = 3.0, 1, 10_000, 1_000, 2
    if (
        min(args.rounds, args.clients, args.reps, args.history_points, args.search_runs) < 1
        or args.seconds <= 0
    ):
        parser.error("sizes and counts must be 1 or more, --seconds above 0")
    root = Path(tempfile.mkdtemp(prefix="bench-tracking-"))

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        return bench(args, root)
    except (Exception, KeyboardInterrupt) as exc:
        print(f"ERROR: {type(exc).__name__}: {exc}", file=sys.stderr)
        for log in sorted(root.glob("*.log")):
            print(f"--- {log.name} (end) ---\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    sys.exit(main())
