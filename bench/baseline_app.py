"""The bare baseline for ``bench/submit.py``: Starlette + SQLAlchemy inserting the broker's row.

``POST /api/v1/experiment`` reads the JSON body and inserts one ``experiment`` row into the
broker's own schema (created by ``broker.store.migrate.upgrade``) with a spec of the size the
broker stores for the same document. It uses plain SQLAlchemy the way the fastest bare setup
measured on these machines does (../shared/reference/run-here.md §7: SQLite WAL, synchronous
NORMAL, one insert per transaction on a single-thread executor), not the broker's own
``Database`` (whose group commit is one of the things being measured). No validation, no event
row, no scheduler, and a small answer: the floor the web stack and the database put under the
broker.

Run: ``python bench/baseline_app.py --database-url sqlite:////tmp/x/baseline.db --port 18001``
(served by ``uvicorn.run`` with the options the broker's ``serve`` uses).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import uvicorn
from sqlalchemy import create_engine, event
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from broker.experiments.validation import parse_experiment_spec
from broker.experiments.views import stored_spec
from broker.store.database import make_engine
from broker.store.migrate import upgrade
from broker.workloads.model import Workload

#: The document both servers are sent (a PyTorch job: one Master, two Workers).
BENCH_DOCUMENT: dict[str, Any] = {
    "meta": {
        "name": "bench-submit",
        "namespace": "default",
        "framework": "pytorch",
        "cmd": "python -c 'import os; print(os.environ[\"RANK\"])'",
        "envVars": {"BENCH": "1", "EPOCHS": "3"},
        "tags": ["bench", "submit"],
    },
    "environment": {"image": "python:3.11"},
    "spec": {
        "Master": {"replicas": 1, "resources": "cpu=0.5,memory=256M"},
        "Worker": {"replicas": 2, "resources": "cpu=0.5,memory=256M"},
    },
}


def stored_template(document: dict[str, Any]) -> dict[str, Any]:
    """The spec JSON the broker stores for ``document`` (computed once here, not per request)."""
    return stored_spec(parse_experiment_spec(document), "experiment-0000000000000-0000", "default")


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def build_app(database_url: str) -> Starlette:
    epoch_ms = int(time.time() * 1000)
    counter = itertools.count(1)
    template = stored_template(BENCH_DOCUMENT)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        schema_engine = make_engine(database_url)
        upgrade(schema_engine)
        schema_engine.dispose()
        engine = create_engine(database_url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _pragmas)
        state["sessions"] = sessionmaker(engine, expire_on_commit=False)
        state["executor"] = ThreadPoolExecutor(max_workers=1)
        try:
            yield
        finally:
            state["executor"].shutdown(wait=True)
            engine.dispose()

    async def create(request: Request) -> JSONResponse:
        document = json.loads(await request.body())
        experiment_id = f"experiment-{epoch_ms}-{next(counter):04d}"
        spec = copy.copy(template)
        spec["meta"] = {**template["meta"], "experimentId": experiment_id}
        stamp = datetime.now(UTC)
        row = Workload(
            id=experiment_id,
            uid=uuid.uuid4().hex,
            attempt=1,
            name=str(document.get("meta", {}).get("name", "")),
            namespace="default",
            owner="admin",
            framework="pytorch",
            status="Accepted",
            spec=spec,
            priority=0,
            idempotency_key=None,
            dispatch_tries=0,
            accepted_at=stamp,
            updated_at=stamp,
        )

        def insert() -> None:
            session: Session
            with state["sessions"].begin() as session:
                session.add(row)

        await asyncio.get_running_loop().run_in_executor(state["executor"], insert)
        return JSONResponse({"experimentId": experiment_id, "status": "Accepted"})

    async def ping(_request: Request) -> JSONResponse:
        return JSONResponse({"result": "Pong"})

    return Starlette(
        routes=[
            Route("/api/v1/experiment/ping", ping, methods=["GET"]),
            Route("/api/v1/experiment", create, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same uvicorn options as broker.server.run.
    uvicorn.run(
        build_app(args.database_url),
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
