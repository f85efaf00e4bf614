"""A broker's REST app served in-process (httpx's ASGI transport), for request-level tests.

The context is the one ``serve`` builds (database migrated, clusters loaded and checked, policy
seeded), but no loop runs: nothing is dispatched, so a submission stays Accepted. Requests go
through the whole app (middleware, routes, error handlers) without a socket or a subprocess, so a
test can send hundreds of bodies in seconds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import yaml

from broker.api.app import build_app
from broker.config.models import BrokerConfig
from broker.server import BrokerContext, create_context
from tests.support import REPO


class InProcessBroker:
    """The broker app on ``database_url`` (default SQLite under ``root``), called synchronously."""

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
        self._run(self.context.registry.check_all())
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://broker/api/v1", timeout=60
        )

    def _run(self, work: Any) -> Any:
        return self._loop.run_until_complete(work)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``method`` on ``/api/v1`` + ``path``, as httpx's ``request`` takes it."""
        return self._run(self.client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        self._run(self.client.aclose())
        self._run(self.context.registry.close())
        self.context.db.dispose()
        self._loop.close()
