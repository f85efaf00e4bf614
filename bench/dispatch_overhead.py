"""Dispatch overhead on Ray: a trivial experiment through the broker against the same job sent to Ray directly.

Starts its own single-node Ray head (``tests.ray_cluster.RayHead``: ``ray start --head`` on free
loopback ports, 2 CPUs, its own temp folder) and a broker (``python -m broker serve``, SQLite in a
temporary folder, short loop intervals) with one ``ray`` cluster pointing at that head. Then, for
``--runs`` rounds, interleaved (the side that goes first alternates), it times:

* broker: ``POST /api/v1/experiment`` of a ``python`` framework experiment with 1 Worker running
  ``python -c "print(1)"`` (``cpu=0.5,memory=64M``), then ``GET /api/v1/experiment/<id>`` every
  ``--poll`` seconds until the status is Running (or already past it) and until Succeeded;
* direct: ``JobSubmissionClient.submit_job`` of the same entrypoint to the same head, then
  ``get_job_status`` every ``--poll`` seconds until RUNNING (or past it) and until SUCCEEDED.

One untimed warm-up run per side comes first (the first job starts Ray workers and uploads the
broker's launcher package). Medians and p95 of submit-to-Running and submit-to-Succeeded are
printed; the last line is::

    RESULT broker_ms=<median submit-to-Running> direct_ms=<same, direct> ratio=<broker/direct>

Everything started (broker, every process of the Ray head) is stopped by pid at the end, also on
error. Run from the repository root: ``python bench/dispatch_overhead.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
from tests.ray_cluster import RAY_ENV, RayHead, free_port  # noqa: E402

ENTRYPOINT = 'python -c "print(1)"'
RESOURCES = "cpu=0.5,memory=64M"


@dataclass
class Timing:
    side: str
    running: float
    done: float


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


class BrokerProcess:
    """``python -m broker serve`` with one ``ray`` cluster, in ``root``."""

    def __init__(self, root: Path, ray_address: str, args: argparse.Namespace) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api/v1"
        self.log_path = root / "broker.log"
        clusters = root / "clusters.d"
        clusters.mkdir(parents=True)
        config = {
            "host": "127.0.0.1",
            "port": self.port,
            "data_dir": str(root / "data"),
            "database_url": f"sqlite:///{root / 'broker.db'}",
            "clusters_dir": str(clusters),
            "default_policy": str(REPO / "broker" / "defaults" / "policy.csv"),
            "loops": {
                "dispatch_interval": args.dispatch_interval,
                "monitor_interval": args.monitor_interval,
                "health_interval": args.health_interval,
            },
        }
        # JSON is YAML: the broker reads these as its usual files.
        (root / "broker.yaml").write_text(json.dumps(config, indent=2))
        (clusters / "ray.yaml").write_text(json.dumps({"name": "ray", "kind": "ray", "address": ray_address}))
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "broker", "serve", "--config", str(self.root / "broker.yaml")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the broker exited with {self.proc.returncode}")
            try:
                if self.client.get("/experiment/ping").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the broker did not answer within {timeout:g}s")

    def wait_cluster_ready(self, timeout: float = 30.0) -> None:
        """Until the ray cluster is Ready (a first health check passed), so placement can use it."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            answer = self.client.get("/cluster/ray")
            if answer.status_code == 200:
                state = answer.json()["result"].get("state")
                if state == "Ready":
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the ray cluster is {state!r}, not Ready, after {timeout:g}s")

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL after 15 s."""
        self.client.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def spec(index: int) -> dict:
    return {
        "meta": {"name": f"overhead-{index}", "framework": "python", "cmd": ENTRYPOINT},
        "environment": {"image": "python:3.11"},
        "spec": {"Worker": {"replicas": 1, "resources": RESOURCES}},
    }


def through_broker(broker: BrokerProcess, index: int, poll: float, timeout: float) -> Timing:
    started = time.perf_counter()
    answer = broker.client.post("/experiment", json=spec(index))
    if answer.status_code != 200:
        raise RuntimeError(f"submit answered {answer.status_code}: {answer.text[:500]}")
    experiment_id = answer.json()["result"]["experimentId"]
    running = None
    while time.perf_counter() - started < timeout:
        found = broker.client.get(f"/experiment/{experiment_id}").json()["result"]
        now = time.perf_counter() - started
        status = found["status"]
        if running is None and status in ("Running", "Succeeded"):
            running = now
        if status == "Succeeded":
            return Timing("broker", running, now)
        if status in ("Failed", "Deleted"):
            raise RuntimeError(f"{experiment_id} ended {status}: {found.get('reason')}")
        time.sleep(poll)
    raise RuntimeError(f"{experiment_id} not Succeeded after {timeout:g}s")


def direct(jobs, index: int, poll: float, timeout: float) -> Timing:
    from ray.job_submission import JobStatus

    started = time.perf_counter()
    job_id = jobs.submit_job(
        entrypoint=ENTRYPOINT, metadata={"bench": "dispatch_overhead", "run": str(index)}
    )
    running = None
    while time.perf_counter() - started < timeout:
        status = jobs.get_job_status(job_id)
        now = time.perf_counter() - started
        if running is None and status in (JobStatus.RUNNING, JobStatus.SUCCEEDED):
            running = now
        if status == JobStatus.SUCCEEDED:
            return Timing("direct", running, now)
        if status in (JobStatus.FAILED, JobStatus.STOPPED):
            raise RuntimeError(f"direct job {job_id} ended {status}: {jobs.get_job_info(job_id).message}")
        time.sleep(poll)
    raise RuntimeError(f"direct job {job_id} not SUCCEEDED after {timeout:g}s")


def summary(label: str, values: list[float]) -> str:
    return (
        f"{label:<28} median {statistics.median(values) * 1000:7.0f} ms  p95 {percentile(values, 95) * 1000:7.0f} ms"
        f"  min {min(values) * 1000:6.0f}  max {max(values) * 1000:6.0f}"
    )


def bench(args: argparse.Namespace, root: Path) -> int:
    head = RayHead()
    broker: BrokerProcess | None = None
    try:
        head.start()
        print(f"ray head {head.address} ready in {head.started_in:.1f} s (temp dir {head.temp_dir})")
        jobs = head.jobs()
        broker = BrokerProcess(root / "broker", head.address, args)
        broker.start()
        broker.wait_cluster_ready()
        print(
            f"broker {broker.url} (dispatch {args.dispatch_interval:g} s, monitor {args.monitor_interval:g} s); "
            f"{args.runs} runs per side, poll every {args.poll * 1000:.0f} ms, entrypoint {ENTRYPOINT!r}"
        )
        warm_b = through_broker(broker, 0, args.poll, args.timeout)
        warm_d = direct(jobs, 0, args.poll, args.timeout)
        print(
            f"warm-up broker running {warm_b.running * 1000:.0f} ms done {warm_b.done * 1000:.0f} ms; "
            f"direct running {warm_d.running * 1000:.0f} ms done {warm_d.done * 1000:.0f} ms"
        )
        timings: dict[str, list[Timing]] = {"broker": [], "direct": []}
        for index in range(1, args.runs + 1):
            sides = ("broker", "direct") if index % 2 else ("direct", "broker")
            for side in sides:
                if side == "broker":
                    timing = through_broker(broker, index, args.poll, args.timeout)
                else:
                    timing = direct(jobs, index, args.poll, args.timeout)
                timings[side].append(timing)
                print(
                    f"run {index:2d} {side:>6}: running {timing.running * 1000:6.0f} ms  "
                    f"succeeded {timing.done * 1000:6.0f} ms"
                )
    except Exception:
        if broker is not None:
            print(f"--- broker.log (end) ---\n{broker.log_tail()}", file=sys.stderr)
        print(f"--- ray (end) ---\n{head.log_tail()}", file=sys.stderr)
        raise
    finally:
        if broker is not None:
            broker.stop()
        head.stop()
        left = head.processes()
        if left:
            print(f"WARNING: Ray processes left: {[p.pid for p in left]}", file=sys.stderr)

    for side in ("broker", "direct"):
        print(summary(f"{side} submit-to-Running", [t.running for t in timings[side]]))
        print(summary(f"{side} submit-to-Succeeded", [t.done for t in timings[side]]))
    broker_ms = statistics.median(t.running for t in timings["broker"]) * 1000
    direct_ms = statistics.median(t.running for t in timings["direct"]) * 1000
    ratio = broker_ms / direct_ms if direct_ms else 0.0
    print(f"RESULT broker_ms={broker_ms:.0f} direct_ms={direct_ms:.0f} ratio={ratio:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per side (default 20)")
    parser.add_argument("--poll", type=float, default=0.02, help="status poll interval, seconds (0.02)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one run may take (120)")
    parser.add_argument(
        "--dispatch-interval", type=float, default=0.25, help="broker loops.dispatch_interval"
    )
    parser.add_argument("--monitor-interval", type=float, default=0.25, help="broker loops.monitor_interval")
    parser.add_argument("--health-interval", type=float, default=1.0, help="broker loops.health_interval")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (broker log, database)"
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.poll <= 0:
        parser.error("--runs must be 1 or more and --poll positive")
    os.environ.update(RAY_ENV)  # this process's JobSubmissionClient: no token auth, no usage stats
    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        return bench(args, root)
    except Exception as exc:
        print(f"ERROR: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
