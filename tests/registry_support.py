"""A model registry on a real database, a folder artifact store and the default policy, with
users in two teams, for the registry's store tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select

from broker.accounts import add_user
from broker.artifacts.folder import FolderStore
from broker.guard import Guard
from broker.model_registry.model import RegistryEvent
from broker.model_registry.service import Caller, ModelRegistry
from broker.policy_runtime import PolicyRuntime
from broker.policy_store import PolicyStore, seed_default_policy
from broker.store.database import Database
from broker.store.migrate import upgrade
from broker.tracking import experiments, runs
from broker.tracking.scope import RunScope
from tests.artifact_contract import chunks_of
from tests.support import REPO

T = TypeVar("T")
DEFAULT_POLICY = REPO / "broker" / "defaults" / "policy.csv"
#: user -> team (None: an admin in every namespace)
USERS = {"alice": "vision", "amy": "vision", "bob": "nlp", "root": None}


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


class World:
    """The registry under test and what it needs: users, runs with files, policy edits."""

    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.store = FolderStore(root / "artifacts")
        self.root = root / "artifacts"
        self.models = ModelRegistry(db, self.store)
        seed_default_policy(db, DEFAULT_POLICY)
        for user, team in USERS.items():
            db.call(
                lambda s, u=user, t=team: add_user(
                    s, u, teams=[t] if t else [], admin=t is None, author="test"
                )
            )
        self.experiments: dict[str, int] = {}

    def caller(self, user: str, *, scope: RunScope | None = None) -> Caller:
        """``user``'s caller under the policy stored now."""
        authorizer = PolicyRuntime(self.db).authorizer
        return Caller(Guard(user, authorizer), scope, USERS.get(user) or "default")

    def policy(self, *lines: str) -> None:
        run(PolicyStore(self.db).add("root", list(lines)))

    def experiment(self, team: str) -> int:
        if team not in self.experiments:
            self.experiments[team] = self.db.call(
                lambda s: experiments.create(s, f"exp-{team}", team, "x", [])
            )
        return self.experiments[team]

    def run_with(self, team: str, files: dict[str, bytes], *, user: str = "alice", **extra: Any) -> str:
        """A tracking run of ``team`` whose artifacts hold ``files`` (paths under artifacts/)."""
        experiment_id = self.experiment(team)
        run_id = self.db.call(
            lambda s: runs.create(
                s,
                experiment_id=experiment_id,
                namespace=team,
                user_id=user,
                run_name=None,
                start_time=None,
                tags=list(extra.get("tags", {}).items()),
                workload_id=extra.get("workload_id"),
            )
        )
        for path, data in files.items():
            run(self.store.put(f"{experiment_id}/{run_id}/artifacts/{path}", chunks_of(data)))
        return run_id

    def artifacts_of(self, run_id: str) -> str:
        row = self.db.call(lambda s: runs.get(s, run_id))
        return f"{row.experiment_id}/{run_id}/artifacts"

    def blobs(self) -> list[str]:
        folder = self.root / "_registry" / "blobs"
        return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []

    def event_count(self) -> int:
        return int(self.db.call(lambda s: s.scalar(select(func.count()).select_from(RegistryEvent))))

    def read(self, caller: Caller, key: int, version: int, path: str) -> bytes:
        async def go() -> bytes:
            blob = await self.models.open_file(caller, key, version, path)
            return b"".join([c async for c in blob.chunks])

        return run(go())


def open_database(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database: SQLite under ``tmp_path``, or a throwaway PostgreSQL one."""
    url = f"sqlite:///{tmp_path / 'registry.db'}" if kind == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    upgrade(database.engine)
    try:
        yield database
    finally:
        database.dispose()
