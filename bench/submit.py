"""Submission throughput: ``POST /api/v1/experiment`` on the real broker against a bare baseline.

Both servers run as subprocesses on free loopback ports, served by uvicorn with the same options
(one worker, the loop and HTTP parser uvicorn picks, no access log), each with its own SQLite
database in a temporary folder:

* the broker: ``python -m broker serve`` with ``loops.dispatch_paused: true`` (nothing is
  dispatched) and one ``local`` cluster file; ``--auth token`` serves it with ``auth: token`` and
  sends a user's token with every request (the baseline gets the header too, and ignores it), so
  the cost of checking a token on each request shows;
* the baseline (``bench/baseline_app.py``): Starlette + SQLAlchemy inserting the same
  ``experiment`` row (same schema, same single-writer ``Database``, same spec size).

One asyncio load generator sends the same JSON document to both: a warm-up, then ``--rounds``
alternating runs of ``--requests`` requests over ``--concurrency`` keep-alive connections. It is
a lean HTTP/1.1 client by default; ``--client httpx`` uses ``httpx.AsyncClient``, which on this
2-core machine saturates its own core at about the servers' rate and so hides the difference. The
median requests/s of each side and their ratio are printed; afterwards the rows in each database
must equal the successful requests sent to it (a mismatch exits 1). The last line is::

    RESULT broker_rps=<n> baseline_rps=<n> ratio=<broker/baseline>

Run from the repository root: ``python bench/submit.py [--requests N --concurrency C --rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_app import BENCH_DOCUMENT  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PATH = "/api/v1/experiment"
BODY = json.dumps(BENCH_DOCUMENT).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One server subprocess, its URL, its database file and its log."""

    name: str
    argv: list[str]
    url: str
    db_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    successes: int = 0  # every 2xx answer it gave, warm-up included
    token: str | None = None  # sent as 'Authorization: Bearer' (--auth token)

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO
        )
        log.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}{PATH}/ping", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout:g}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@dataclass
class Run:
    """What one timed run of the load generator saw."""

    server: str
    requests: int
    ok: int = 0
    non_2xx: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    first_failure: str | None = None

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, pct: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]

    def line(self) -> str:
        return (
            f"{self.server:>8}: {self.rps:8.1f} req/s  {self.ok} ok, {self.non_2xx} non-2xx, "
            f"{self.errors} errors in {self.elapsed:.2f} s  p50 {self.percentile(50) * 1000:.1f} ms  "
            f"p99 {self.percentile(99) * 1000:.1f} ms  server cpu {self.server_cpu:.0%}  "
            f"client cpu {self.client_cpu:.0%}"
        )


class Failure(Exception):
    """A request that got no HTTP answer (connection refused, reset, closed mid-answer)."""


class RawConnection:
    """One keep-alive HTTP/1.1 connection sending the same pre-encoded POST again and again.

    Cheaper per request than httpx by an order of magnitude, so that on a 2-core machine the
    client does not become the bottleneck it would otherwise be (httpx tops out near the servers'
    own rate here). Reads ``Content-Length`` bodies and chunked ones; reconnects after a close.
    """

    def __init__(self, server: Server) -> None:
        self.host, port = server.url.removeprefix("http://").split(":")
        self.port = int(port)
        self.request = (
            f"POST {PATH} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{_authorization(server)}"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self) -> tuple[int, bytes]:
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            self.writer.write(self.request)
            head = (await self.reader.readuntil(b"\r\n\r\n")).lower()
            status = int(head[9:12])
            headers = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
            if headers.get(b"transfer-encoding", b"").strip() == b"chunked":
                body = await self._chunked()
            else:
                body = await self.reader.readexactly(int(headers.get(b"content-length", b"0")))
            if headers.get(b"connection", b"").strip() == b"close":
                await self.close()
            return status, body
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            await self.close()
            raise Failure(f"{type(exc).__name__}: {exc}") from None

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return b"".join(parts)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def _authorization(server: Server) -> str:
    return f"Authorization: Bearer {server.token}\r\n" if server.token else ""


class HttpxConnection:
    """The same request through a shared ``httpx.AsyncClient`` (``--client httpx``)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self) -> tuple[int, bytes]:
        try:
            answer = await self.client.post(PATH, content=BODY)
        except httpx.HTTPError as exc:
            raise Failure(f"{type(exc).__name__}: {exc}") from None
        return answer.status_code, answer.content

    async def close(self) -> None:
        pass


async def _send(connection: RawConnection | HttpxConnection, run: Run) -> None:
    started = time.perf_counter()
    try:
        status, body = await connection.post()
    except Failure as exc:
        run.errors += 1
        run.first_failure = run.first_failure or str(exc)
        return
    run.latencies.append(time.perf_counter() - started)
    if 200 <= status < 300:
        run.ok += 1
    else:
        run.non_2xx += 1
        run.first_failure = run.first_failure or f"HTTP {status}: {body[:300]!r}"


async def _load(server: Server, requests: int, concurrency: int, kind: str) -> Run:
    """Open and prime ``concurrency`` connections (untimed), then time ``requests`` requests."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json"}
    if server.token:
        headers["authorization"] = f"Bearer {server.token}"
    async with httpx.AsyncClient(base_url=server.url, limits=limits, headers=headers, timeout=60) as client:
        connections: list[RawConnection | HttpxConnection] = [
            RawConnection(server) if kind == "raw" else HttpxConnection(client) for _ in range(concurrency)
        ]
        try:
            priming = Run(server.name, concurrency)
            await asyncio.gather(*(_send(c, priming) for c in connections))
            server.successes += priming.ok
            if priming.ok != concurrency:
                raise RuntimeError(f"{server.name} failed while priming: {priming.first_failure}")

            run = Run(server.name, requests)
            remaining = requests

            async def worker(connection: RawConnection | HttpxConnection) -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    await _send(connection, run)

            cpu_before, client_before = server.cpu_seconds(), time.process_time()
            started = time.perf_counter()
            await asyncio.gather(*(worker(c) for c in connections))
            run.elapsed = time.perf_counter() - started
            run.server_cpu = (server.cpu_seconds() - cpu_before) / run.elapsed
            run.client_cpu = (time.process_time() - client_before) / run.elapsed
            server.successes += run.ok
            return run
        finally:
            for connection in connections:
                await connection.close()


def load(server: Server, requests: int, concurrency: int, kind: str) -> Run:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_load(server, requests, concurrency, kind))
    return uvloop.run(_load(server, requests, concurrency, kind))


def count_rows(db_path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM experiment").fetchone()[0])


def make_servers(root: Path, auth: str = "none") -> tuple[Server, Server]:
    broker_root = root / "broker"
    (broker_root / "clusters.d").mkdir(parents=True)
    local: dict[str, object] = {"name": "local", "kind": "local"}
    broker_db = broker_root / "broker.db"
    broker_port = free_port()
    config = {
        "host": "127.0.0.1",
        "port": broker_port,
        "data_dir": str(broker_root / "data"),
        "database_url": f"sqlite:///{broker_db}",
        "clusters_dir": str(broker_root / "clusters.d"),
        "default_policy": str(REPO / "broker" / "defaults" / "policy.csv"),
        "loops": {"dispatch_paused": True},
    }
    if auth == "token":
        config["auth"] = "token"
        # Nothing is dispatched, but a broker with auth: token runs no one's work as itself.
        local["run_as"] = "nobody" if os.geteuid() == 0 else "broker"
        local["work_dir"] = str(root / "local")
        root.chmod(0o755)
    # JSON is YAML: the broker reads these as its usual files.
    (broker_root / "broker.yaml").write_text(json.dumps(config, indent=2))
    (broker_root / "clusters.d" / "local.yaml").write_text(json.dumps(local))
    broker = Server(
        "broker",
        [sys.executable, "-m", "broker", "serve", "--config", str(broker_root / "broker.yaml")],
        f"http://127.0.0.1:{broker_port}",
        broker_db,
        root / "broker.log",
    )
    baseline_db = root / "baseline" / "baseline.db"
    baseline_db.parent.mkdir()
    baseline_port = free_port()
    baseline = Server(
        "baseline",
        [
            sys.executable,
            str(HERE / "baseline_app.py"),
            "--database-url",
            f"sqlite:///{baseline_db}",
            "--port",
            str(baseline_port),
        ],
        f"http://127.0.0.1:{baseline_port}",
        baseline_db,
        root / "baseline.log",
    )
    if auth == "token":
        broker.token = baseline.token = _make_token(broker_root / "broker.yaml")
    return broker, baseline


def _make_token(config: Path) -> str:
    """A user ``bench`` of team ``default`` (the namespace of the document) and a token of its, made as an admin would."""
    base = [sys.executable, "-m", "broker"]
    subprocess.run(
        [*base, "user", "add", "bench", "--team", "default", "--config", str(config)],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    made = subprocess.run(
        [*base, "token", "create", "bench", "--config", str(config)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return made.stdout.strip().splitlines()[-1]


def bench(args: argparse.Namespace, root: Path) -> int:
    broker, baseline = make_servers(root, args.auth)
    servers = (baseline, broker)
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready()
        print(
            f"load: {args.requests} POST {PATH} per run, {args.concurrency} connections, "
            f"{args.rounds} rounds, {args.warmup} warm-up requests each; body {len(BODY)} bytes; "
            f"client {args.client}, auth {args.auth}"
        )
        for server in servers:
            warm = load(server, args.warmup, args.concurrency, args.client)
            print(f"warm-up {warm.line()}")
        runs: dict[str, list[Run]] = {"baseline": [], "broker": []}
        for index in range(args.rounds):
            order = servers if index % 2 == 0 else servers[::-1]
            for server in order:
                run = load(server, args.requests, args.concurrency, args.client)
                runs[server.name].append(run)
                print(f"round {index + 1} {run.line()}")
                if run.first_failure:
                    print(f"          first failure: {run.first_failure}")
    finally:
        for server in servers:
            server.stop()

    failures = 0
    for server in servers:
        rows = count_rows(server.db_path)
        verdict = "ok" if rows == server.successes else "MISMATCH"
        print(
            f"{server.name:>8}: {rows} rows in the database, {server.successes} successful requests: {verdict}"
        )
        failures += rows != server.successes
    broker_rps = statistics.median(r.rps for r in runs["broker"])
    baseline_rps = statistics.median(r.rps for r in runs["baseline"])
    ratio = broker_rps / baseline_rps if baseline_rps else 0.0
    bad = sum(r.non_2xx + r.errors for rs in runs.values() for r in rs)
    print(f"baseline median: {baseline_rps:.1f} req/s")
    print(f"broker median:   {broker_rps:.1f} req/s")
    print(f"ratio broker/baseline: {ratio:.2f}; non-2xx or failed requests in timed runs: {bad}")
    if failures:
        print("ERROR: row counts do not match the successful requests", file=sys.stderr)
        return 1
    print(f"RESULT broker_rps={broker_rps:.0f} baseline_rps={baseline_rps:.0f} ratio={ratio:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per timed run (default 5000)")
    parser.add_argument("--concurrency", type=int, default=32, help="open connections (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per server (default 3)")
    parser.add_argument("--warmup", type=int, default=500, help="untimed requests first (default 500)")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator: a lean asyncio HTTP/1.1 client (default) or httpx.AsyncClient",
    )
    parser.add_argument(
        "--auth",
        choices=("none", "token"),
        default="none",
        help="the broker's auth: none (default) or token (each request sends a user's token)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, databases)")
    args = parser.parse_args(argv)
    if min(args.requests, args.concurrency, args.rounds) < 1 or args.warmup < 0:
        parser.error("--requests, --concurrency and --rounds must be 1 or more, --warmup 0 or more")
    root = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    try:
        return bench(args, root)
    except Exception as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        for name in ("broker.log", "baseline.log"):
            log = root / name
            if log.exists():
                print(f"--- {name} (end) ---\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
