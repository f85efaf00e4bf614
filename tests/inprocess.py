"""A broker built in-process: its REST app called through httpx's ASGI transport, its loops run one
pass at a time by the test.

The context is the one ``serve`` builds (database migrated, clusters loaded and checked, policy
seeded), but no timer runs: nothing is dispatched, watched or failed over until the test calls
:meth:`InProcessBroker.dispatch`, :meth:`~InProcessBroker.monitor`,
:meth:`~InProcessBroker.failover` or :meth:`~InProcessBroker.watch_notebooks` (each one pass, as
the loops would run it), so a submission stays Accepted until then. Requests go through the whole
app (middleware, routes, error handlers) without a socket or a subprocess, so a test can send
hundreds of bodies in seconds.

With clusters of the scripted kind (:mod:`tests.scripted_cluster`, :func:`scripted_clusters`) the
test also decides what every cluster says, and moves time by ageing what happened
(:meth:`~InProcessBroker.age`, :meth:`~InProcessBroker.lose`): no sleeps.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.api.app import build_app
from broker.config.models import BrokerConfig
from broker.notebooks.watch import NotebookWatch
from broker.server import BrokerContext, create_context
from broker.state import now
from broker.workloads.model import Event, Workload
from tests.scripted_cluster import EXTRA_KINDS, ScriptedCluster, forget, jupyter_transport, scripted
from tests.support import REPO


def scripted_clusters(*names: str, **bodies: dict[str, Any]) -> dict[str, Any]:
    """Settings for :class:`InProcessBroker`: clusters ``names`` of the scripted kind (``bodies``
    give some of them more of a cluster file: labels, capacity), and the kind registered."""
    clusters = {name: {"kind": "scripted"} for name in names}
    for name, body in bodies.items():
        clusters[name] = {"kind": "scripted", **body}
    return {"clusters": clusters, "extra_kinds": EXTRA_KINDS}


class InProcessBroker:
    """The broker on ``database_url`` (default SQLite under ``root``), called synchronously.

    Building a second one on the same ``root`` is a broker restarted: same database, same data
    directory, and the scripted clusters still hold what they ran.
    """

    def __init__(
        self,
        root: Path,
        *,
        database_url: str | None = None,
        clusters: dict[str, dict[str, Any]] | None = None,
        **settings: Any,
    ) -> None:
        clusters_dir = root / "clusters.d"
        clusters_dir.mkdir(parents=True, exist_ok=True)
        for name, body in (clusters if clusters is not None else {"local": {"kind": "local"}}).items():
            (clusters_dir / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, **body}))
        config = BrokerConfig.model_validate(
            {
                "data_dir": str(root / "data"),
                "clusters_dir": str(clusters_dir),
                "default_policy": str(REPO / "broker" / "defaults" / "policy.csv"),
                "database_url": database_url,
                **settings,
            }
        ).resolved(root)
        self._loop = asyncio.new_event_loop()
        self.context: BrokerContext = create_context(config)
        self.app = build_app()
        self.app.state.broker = self.context
        loops = self.context.loops
        # One pass means one pass: no interval holds a poll or a sweep back.
        loops.monitor.interval = loops.monitor.starting_interval = 0.0
        loops.failover.sweep_interval = 0.0
        self.notebook_watch = NotebookWatch(
            self.context.db,
            self.context.registry,
            config.notebooks,
            tokens=self.context.notebooks.tokens,
            transport=jupyter_transport(self.data_dir),
        )
        self.run(self.context.registry.check_all())
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://broker/api/v1", timeout=60
        )

    @property
    def data_dir(self) -> str:
        return self.context.registry.data_dir

    def run(self, work: Any) -> Any:
        """Run a coroutine (a service call, a loop pass) to its end on the broker's event loop."""
        return self._loop.run_until_complete(work)

    # REST

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``method`` on ``/api/v1`` + ``path``, as httpx's ``request`` takes it."""
        return self.run(self.client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def result(self, method: str, path: str, **kwargs: Any) -> Any:
        """The envelope's ``result`` of a request that must succeed."""
        answer = self.request(method, path, **kwargs)
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]

    # The loops, one pass each

    def dispatch(self) -> int:
        """One dispatch pass; how many workloads it submitted."""
        return self.run(self.context.loops.dispatcher.run_once())

    def monitor(self) -> None:
        """One monitor pass: every reachable cluster polled, what it says applied."""
        self.run(self.context.loops.monitor.run_once())

    def check_health(self) -> None:
        """Every cluster's health checked now."""
        self.run(self.context.registry.check_all(force=True))

    def failover(self) -> None:
        """One failover pass (lost clusters' work, then the orphan sweep of those that answer)."""
        self.run(self.context.loops.failover.run_once())

    def watch_notebooks(self) -> None:
        """One pass of the notebook watch (readiness, activity, idle culling)."""
        self.run(self.notebook_watch.run_once())

    def tick(self) -> None:
        """What the loops do in one round: health, dispatch, monitor, failover."""
        self.check_health()
        self.dispatch()
        self.monitor()
        self.failover()

    # Scripted clusters and time

    def cluster(self, name: str) -> ScriptedCluster:
        """The scripted cluster ``name``: what it holds, and its script."""
        return scripted(self.data_dir, name)

    def lose(self, name: str, *, for_seconds: float) -> None:
        """Cluster ``name`` stops answering, as if ``for_seconds`` ago (failed health checks since)."""
        self.cluster(name).reachable = False
        self.check_health()
        state = self.context.registry.get(name)
        assert state is not None and state.reachable is False
        state.unreachable_since = now() - timedelta(seconds=for_seconds)

    def recover(self, name: str) -> None:
        """Cluster ``name`` answers again (its next health check says so)."""
        self.cluster(name).reachable = True
        self.check_health()

    def age(self, workload_id: str, seconds: float) -> None:
        """Move everything that happened to a workload so far ``seconds`` into the past: its
        times, its events and its next dispatch try, as if the test had waited."""
        shift = timedelta(seconds=seconds)

        def older(session: Session) -> None:
            row = session.get(Workload, workload_id)
            assert row is not None, workload_id
            columns = (
                "accepted_at",
                "created_at",
                "running_at",
                "finished_at",
                "updated_at",
                "next_dispatch_at",
            )
            for column in columns:
                if getattr(row, column) is not None:
                    setattr(row, column, getattr(row, column) - shift)
            for event in session.scalars(select(Event).where(Event.workload_id == workload_id)):
                event.at = event.at - shift

        self.context.db.call(older)

    def close(self, *, keep_clusters: bool = False) -> None:
        """Shut the broker down; the scripted clusters go too unless ``keep_clusters`` (a restart)."""
        self.run(self.client.aclose())
        self.run(self.notebook_watch.aclose())
        if self.context.loops.notebook_watch is not None:
            self.run(self.context.loops.notebook_watch.aclose())
        self.run(self.context.registry.close())
        self.context.db.dispose()
        self._loop.close()
        if not keep_clusters:
            forget(self.data_dir)
