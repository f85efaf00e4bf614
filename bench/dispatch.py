"""Dispatch throughput: Accepted workloads placed and submitted per second, against a database floor.

Builds a broker in-process (``create_context``: the database migrated, clusters loaded, policy
seeded; no loop runs) on SQLite in a temporary folder, with ``--clusters`` clusters of the
``scripted`` kind (``bench/scripted_cluster.py``: health reports room for everything, submit
answers at once and starts nothing). Then:

* fill: ``--workloads`` experiments (PyTorch, a Master and two Workers) submitted through the REST
  app in-process (httpx's ASGI transport), so they sit Accepted as a user's would;
* floor: on a copy of that database file, the bare cost of the same number of conditional UPDATEs
  (``SET cluster=… WHERE id=… AND uid=… AND status='Accepted' AND cluster IS NULL``, the claim a
  dispatcher cannot do without), through the same :class:`Database` writer, committed
  ``--floor-group`` at a time;
* dispatch: ``Dispatcher.run_once()`` back to back until nothing is Accepted; placements/s is the
  workloads that reached Created over the wall time.

Afterwards every workload must be Created, each on a cluster whose adapter was asked to submit its
uid exactly once (a mismatch exits 1). The last line is::

    RESULT placements_per_s=<n> floor_per_s=<n> ratio=<placements/floor>

Run from the repository root: ``python bench/dispatch.py [--workloads N --clusters N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))  # scripted_cluster, for extra_kinds

from sqlalchemy import text  # noqa: E402

from broker.api.app import build_app  # noqa: E402
from broker.config.models import BrokerConfig  # noqa: E402
from broker.server import BrokerContext, create_context  # noqa: E402
from broker.store.database import Database  # noqa: E402

TABLE = "experiment"


def document(index: int) -> dict[str, Any]:
    return {
        "meta": {
            "name": f"dispatch-{index}",
            "namespace": "default",
            "framework": "pytorch",
            "cmd": "python train.py --epochs 3",
            "envVars": {"BENCH": "1"},
        },
        "environment": {"image": "python:3.11"},
        "spec": {
            "Master": {"replicas": 1, "resources": "cpu=0.5,memory=256M"},
            "Worker": {"replicas": 2, "resources": "cpu=0.5,memory=256M"},
        },
    }


def make_context(root: Path, clusters: int, latency: float) -> BrokerContext:
    clusters_dir = root / "clusters.d"
    clusters_dir.mkdir(parents=True)
    for i in range(clusters):
        body = {"name": f"c{i:02d}", "kind": "scripted", "submit_latency": latency}
        (clusters_dir / f"c{i:02d}.yaml").write_text(json.dumps(body))
    config = BrokerConfig.model_validate(
        {
            "data_dir": str(root / "data"),
            "clusters_dir": str(clusters_dir),
            "database_url": f"sqlite:///{root / 'broker.db'}",
            "default_policy": str(REPO / "broker" / "defaults" / "policy.csv"),
            "extra_kinds": {"scripted": "scripted_cluster:ScriptedAdapter"},
        }
    ).resolved(root)
    return create_context(config)


async def fill(context: BrokerContext, count: int, concurrency: int) -> float:
    """Submit ``count`` experiments through the REST app; returns the seconds it took."""
    app = build_app()
    app.state.broker = context
    started = time.perf_counter()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://broker/api/v1", timeout=120
    ) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(count):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                answer = await client.post("/experiment", json=document(i))
                if answer.status_code != 200:
                    raise RuntimeError(f"submit {i} answered {answer.status_code}: {answer.text[:300]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def checkpoint(path: Path) -> None:
    """Fold the WAL into the main file, so a plain copy of it holds every row."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def floor(db_path: Path, clusters: int, group: int) -> tuple[int, float]:
    """Conditional claim-like UPDATEs, one per Accepted row, ``group`` per transaction."""
    db = Database(f"sqlite:///{db_path}")
    try:
        rows = db.call(
            lambda s: list(
                s.execute(
                    text(f"SELECT id, uid FROM {TABLE} WHERE status = 'Accepted' ORDER BY accepted_at, id")
                )
            )
        )
        claim = text(
            f"UPDATE {TABLE} SET cluster = :cluster WHERE id = :id AND uid = :uid "
            "AND status = 'Accepted' AND cluster IS NULL"
        )
        chunks = [rows[i : i + group] for i in range(0, len(rows), group)]

        def unit(chunk: list[Any], offset: int):
            def run(session: Any) -> int:
                done = 0
                for n, (row_id, uid) in enumerate(chunk):
                    result = session.execute(
                        claim, {"cluster": f"c{(offset + n) % clusters:02d}", "id": row_id, "uid": uid}
                    )
                    done += result.rowcount
                return done

            return run

        async def drive() -> int:
            done = 0
            for k, chunk in enumerate(chunks):
                done += await db.run(unit(chunk, k * group))
            return done

        started = time.perf_counter()
        done = asyncio.run(drive())
        elapsed = time.perf_counter() - started
    finally:
        db.dispose()
    if done != len(rows):
        raise RuntimeError(f"floor: {done} of {len(rows)} conditional UPDATEs matched")
    return done, elapsed


async def dispatch(context: BrokerContext, profile: cProfile.Profile | None) -> tuple[int, int, float, float]:
    """``run_once`` until nothing is Accepted; returns (submitted, passes, seconds, CPU seconds)."""
    dispatcher = context.loops.dispatcher
    submitted = passes = 0
    started = time.perf_counter()
    cpu = time.process_time()
    if profile is not None:
        profile.enable()
    try:
        while True:
            done = await dispatcher.run_once()
            passes += 1
            submitted += done
            if done == 0:
                left = await context.db.run(
                    lambda s: s.execute(
                        text(f"SELECT count(*) FROM {TABLE} WHERE status = 'Accepted'")
                    ).scalar()
                )
                if not left:
                    break
                if passes > 10 * (submitted + 1) + 1000:
                    raise RuntimeError(f"dispatch makes no progress: {left} still Accepted")
    finally:
        if profile is not None:
            profile.disable()
    return submitted, passes, time.perf_counter() - started, time.process_time() - cpu


def verify(context: BrokerContext, db_path: Path, count: int) -> list[str]:
    """Problems with the outcome: anything not Created, or a uid submitted other than once."""
    problems = []
    with sqlite3.connect(db_path) as conn:
        by_status = dict(conn.execute(f"SELECT status, count(*) FROM {TABLE} GROUP BY status").fetchall())
        rows = conn.execute(f"SELECT uid, cluster FROM {TABLE} WHERE status = 'Created'").fetchall()
    if by_status.get("Created") != count:
        problems.append(f"expected {count} Created, found {by_status}")
    calls = sum(c.adapter.submit_calls for c in context.registry.all())  # type: ignore[attr-defined]
    if calls != count:
        problems.append(f"{calls} submit calls for {count} workloads")
    for uid, cluster in rows:
        state = context.registry.get(cluster)
        if state is None or uid not in state.adapter.started:  # type: ignore[attr-defined]
            problems.append(f"{uid} is recorded on {cluster}, which never started it")
            break
    return problems


def bench(args: argparse.Namespace, root: Path) -> int:
    context = make_context(root, args.clusters, args.submit_latency)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(context.registry.check_all(force=True))
        seconds = loop.run_until_complete(fill(context, args.workloads, args.fill_concurrency))
        print(
            f"filled {args.workloads} Accepted experiments in {seconds:.1f} s over {args.clusters} clusters"
        )
        db_path = root / "broker.db"
        checkpoint(db_path)
        copy = root / "floor.db"
        shutil.copyfile(db_path, copy)
        done, floor_s = floor(copy, args.clusters, args.floor_group)
        floor_rate = done / floor_s
        print(
            f"floor: {done} conditional UPDATEs in {floor_s:.2f} s ({floor_rate:.0f}/s, "
            f"{args.floor_group} per transaction)"
        )
        profile = cProfile.Profile() if args.profile else None
        submitted, passes, dispatch_s, cpu_s = loop.run_until_complete(dispatch(context, profile))
        rate = submitted / dispatch_s
        print(
            f"dispatch: {submitted} placed and submitted in {dispatch_s:.2f} s ({rate:.0f}/s, {passes} passes); "
            f"{cpu_s:.2f} s of CPU ({cpu_s / submitted * 1000:.2f} ms a workload)"
        )
        problems = verify(context, db_path, args.workloads)
        for problem in problems:
            print(f"ERROR: {problem}", file=sys.stderr)
        if profile is not None:
            pstats.Stats(profile).sort_stats("cumulative").print_stats(args.profile)
        print(
            f"RESULT placements_per_s={rate:.0f} floor_per_s={floor_rate:.0f} ratio={rate / floor_rate:.3f}"
        )
        return 1 if problems else 0
    finally:
        loop.run_until_complete(context.registry.close())
        context.db.dispose()
        loop.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=10_000, help="Accepted experiments (10000)")
    parser.add_argument("--clusters", type=int, default=10, help="scripted clusters (10)")
    parser.add_argument("--submit-latency", type=float, default=0.0, help="seconds each submit takes (0)")
    parser.add_argument(
        "--fill-concurrency", type=int, default=32, help="submissions in flight while filling"
    )
    parser.add_argument("--floor-group", type=int, default=100, help="floor UPDATEs per transaction (100)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile dispatch; print N lines")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.workloads < 1 or args.clusters < 1 or args.floor_group < 1:
        parser.error("--workloads, --clusters and --floor-group must be 1 or more")
    root = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
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
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.exit(main())
