"""The workbench's experiments list at 1,000 and at 100,000 experiments: server time per page.

Builds a broker in-process (``create_context``: the database migrated, clusters loaded, policy
seeded; no loop runs) on SQLite in a temporary folder with ``auth: token``, two users (``root``, an
admin who reads everything, and ``ana``, a member of one of ten teams: a tenth of the rows), and
fills the experiment table with bulk inserts of the broker's own model (ten namespaces, mixed
statuses, owners and clusters; a few deleted). Then, through the whole app in-process (httpx's
ASGI transport: middleware, token check, policy, the page's query, Jinja2), it times the median of
``--repeat`` requests (after warm-ups) of:

* ``/ui/experiments`` (the first page, 50 rows) for root and for ana;
* a filtered page (``status=Failed&cluster=c01``) for each;
* the experiment page ``/ui/experiments/<id>`` if this broker has one, else ``GET
  /api/v1/experiment/<id>`` (the line says which).

It does so at 1,000 experiments, adds 99,000 more, and does it again. ``list_ms`` is the slowest
of the four list timings at that size. The last line is::

    RESULT list_ms_1k=<ms> list_ms_100k=<ms> detail_ms=<ms at 100k> ratio=<100k/1k>

The goal: ratio <= 2 and list_ms_100k < 200. ``--plan`` prints SQLite's query plans of the page's
queries at 100k. Run from the repository root: ``python bench/ui.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))  # scripted_cluster, for extra_kinds

from sqlalchemy import insert  # noqa: E402

from broker.accounts import add_user, create_token  # noqa: E402
from broker.api.app import build_app  # noqa: E402
from broker.config.models import BrokerConfig  # noqa: E402
from broker.server import BrokerContext, create_context  # noqa: E402
from broker.workloads.model import Workload  # noqa: E402

TEAMS = [f"team-{i:02d}" for i in range(10)]
CLUSTERS = ["c00", "c01", "c02", "c03"]
#: Most work has ended; some runs, some waits, a few were deleted.
STATUSES = ["Succeeded"] * 55 + ["Failed"] * 25 + ["Running"] * 10 + ["Accepted"] * 5 + ["Created"] * 3
STATUSES += ["Deleted"] * 2
FILTER = "status=Failed&cluster=c01"
START = datetime(2026, 1, 1, tzinfo=UTC)


def make_context(root: Path) -> BrokerContext:
    clusters_dir = root / "clusters.d"
    clusters_dir.mkdir(parents=True)
    for name in CLUSTERS:
        (clusters_dir / f"{name}.yaml").write_text(json.dumps({"name": name, "kind": "scripted"}))
    config = BrokerConfig.model_validate(
        {
            "auth": "token",
            "data_dir": str(root / "data"),
            "clusters_dir": str(clusters_dir),
            "database_url": f"sqlite:///{root / 'broker.db'}",
            "default_policy": str(REPO / "broker" / "defaults" / "policy.csv"),
            "extra_kinds": {"scripted": "scripted_cluster:ScriptedAdapter"},
        }
    ).resolved(root)
    return create_context(config)


def spec(experiment_id: str, name: str, namespace: str) -> dict[str, Any]:
    return {
        "meta": {
            "experimentId": experiment_id,
            "name": name,
            "namespace": namespace,
            "framework": "pytorch",
            "cmd": "python train.py --epochs 3",
            "envVars": {},
            "tags": [],
        },
        "environment": {"image": "python:3.11"},
        "spec": {
            "Master": {"replicas": 1, "resourceMap": {"cpu": "1", "memory": "1024M"}},
            "Worker": {"replicas": 2, "resourceMap": {"cpu": "1", "memory": "1024M"}},
        },
    }


def rows(start: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` experiment rows, numbered from ``start``, accepted over a year."""
    made = []
    for n in range(start, start + count):
        experiment_id = f"experiment-1700000000000-{n:06d}"
        team = TEAMS[n % len(TEAMS)]
        status = rng.choice(STATUSES)
        accepted = START + timedelta(seconds=rng.randrange(365 * 86400), microseconds=n)
        ran = status in ("Running", "Succeeded", "Failed")
        running = accepted + timedelta(seconds=rng.randrange(5, 600)) if ran else None
        finished = (
            running + timedelta(seconds=rng.randrange(60, 36000)) if running and status != "Running" else None
        )
        name = f"train-{team}-{n % 997}"
        made.append(
            {
                "id": experiment_id,
                "uid": f"uid-{n:08d}",
                "attempt": 1,
                "name": name,
                "namespace": team,
                "owner": f"user-{n % 37}",
                "framework": "pytorch",
                "status": status,
                "spec": spec(experiment_id, name, team),
                "priority": 0,
                "dispatch_tries": 0,
                "cluster": CLUSTERS[n % len(CLUSTERS)] if status != "Accepted" else None,
                "failure_category": "user" if status == "Failed" else None,
                "reason": "exited 1" if status == "Failed" else None,
                "accepted_at": accepted,
                "created_at": running if running else None,
                "running_at": running if running else None,
                "finished_at": finished if finished else None,
                "deleted_at": (finished or accepted) if status == "Deleted" else None,
                "updated_at": (finished or running or accepted),
                "kind": "experiment",
            }
        )
    return made


def fill(context: BrokerContext, start: int, count: int, seed: int) -> float:
    """Bulk-insert ``count`` experiments, 5,000 a statement; returns the seconds it took."""
    rng = random.Random(seed)
    began = time.perf_counter()
    for offset in range(start, start + count, 5000):
        batch = rows(offset, min(5000, start + count - offset), rng)
        context.db.call(lambda s, b=batch: s.execute(insert(Workload.__table__), b))
    return time.perf_counter() - began


def users(context: BrokerContext) -> dict[str, str]:
    tokens = {}
    for name, teams, admin in (("root", [], True), ("ana", [TEAMS[3]], False)):
        context.db.call(lambda s, n=name, t=teams, a=admin: add_user(s, n, teams=t, admin=a, author="bench"))
        tokens[name] = context.db.call(lambda s, n=name: create_token(s, n)).token
    asyncio.run(context.policy.refresh())
    return tokens


async def median_ms(client: httpx.AsyncClient, url: str, token: str, repeat: int, expect: str) -> float:
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/html"}
    for _ in range(3):  # warm-up: templates compiled, caches filled
        answer = await client.get(url, headers=headers)
        if answer.status_code != 200 or expect not in answer.text:
            raise RuntimeError(f"GET {url} answered {answer.status_code}: {answer.text[:300]}")
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        answer = await client.get(url, headers=headers)
        times.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200
    return statistics.median(times)


async def measure(
    context: BrokerContext, tokens: dict[str, str], repeat: int, label: str
) -> dict[str, float]:
    app = build_app()
    app.state.broker = context
    found: dict[str, float] = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://broker") as client:
        for who in ("root", "ana"):
            found[f"first_{who}"] = await median_ms(client, "/ui/experiments", tokens[who], repeat, "<tbody")
            found[f"filtered_{who}"] = await median_ms(
                client, f"/ui/experiments?{FILTER}", tokens[who], repeat, "<tbody"
            )
        some = "experiment-1700000000000-000003"
        page = await client.get(
            f"/ui/experiments/{some}", headers={"Authorization": f"Bearer {tokens['ana']}"}
        )
        detail_url = f"/ui/experiments/{some}" if page.status_code == 200 else f"/api/v1/experiment/{some}"
        found["detail"] = await median_ms(client, detail_url, tokens["ana"], repeat, some)
        found["detail_is_page"] = float(page.status_code == 200)
    shown = " ".join(f"{k}={v:.1f}" for k, v in found.items() if k != "detail_is_page")
    print(
        f"{label}: {shown} (ms, median of {repeat}; detail = {detail_url.split('/experiment')[0]})",
        flush=True,
    )
    return found


def plans(context: BrokerContext) -> None:
    """SQLite's plans for the page's queries (to check that they walk the list indexes)."""
    from broker.guard import Guard
    from broker.state import Status
    from broker.workloads.kind import Kind
    from broker.workloads.listing import Filters, read_page

    captured: list[str] = []

    def run(session: Any) -> None:
        from sqlalchemy import event

        connection = session.connection()

        def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()
                captured.append(" | ".join(str(row[-1]) for row in plan))

        event.listen(connection, "before_cursor_execute", before)
        try:
            for user in ("root", "ana"):
                guard = Guard(user, context.policy.authorizer)
                read_page(session, guard, Kind.EXPERIMENT, Filters(), size=50)
                filtered = Filters(status=Status.FAILED, cluster="c01")
                read_page(session, guard, Kind.EXPERIMENT, filtered, size=50)
        finally:
            event.remove(connection, "before_cursor_execute", before)

    context.db.call(run)
    for line in dict.fromkeys(captured):
        print("plan:", line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--plan", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        context = make_context(Path(tmp))
        try:
            tokens = users(context)
            seconds = fill(context, 0, args.small, seed=1)
            print(f"filled {args.small} experiments in {seconds:.1f}s", flush=True)
            small = asyncio.run(measure(context, tokens, args.repeat, f"{args.small} experiments"))
            seconds = fill(context, args.small, args.large - args.small, seed=2)
            print(f"filled {args.large} experiments in all ({seconds:.1f}s more)", flush=True)
            large = asyncio.run(measure(context, tokens, args.repeat, f"{args.large} experiments"))
            if args.plan:
                plans(context)
        finally:
            context.db.dispose()
    keys = ("first_root", "first_ana", "filtered_root", "filtered_ana")
    list_small = max(small[k] for k in keys)
    list_large = max(large[k] for k in keys)
    ratio = list_large / list_small
    detail = "page" if large["detail_is_page"] else "api"
    print(
        f"detail_ms is {'the experiment page' if detail == 'page' else 'GET /api/v1/experiment/<id> (no page yet)'}"
    )
    print(
        f"RESULT list_ms_1k={list_small:.1f} list_ms_100k={list_large:.1f} "
        f"detail_ms={large['detail']:.1f} ratio={ratio:.2f}"
    )
    return 0 if ratio <= 2 and list_large < 200 else 1


if __name__ == "__main__":
    sys.exit(main())
