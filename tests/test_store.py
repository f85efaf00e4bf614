"""The store on SQLite and on PostgreSQL: migrations, the state write path, leases, ids."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text, update

from broker.ids import IdGenerator
from broker.scheduler.lease import release, try_acquire
from broker.state import IllegalTransition, Status, now, transition
from broker.store.database import Database
from broker.store.migrate import current_revision, head_revision, upgrade
from broker.store.models import Lease
from broker.workloads.model import Event, Workload


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = (
        f"sqlite:///{tmp_path / 'broker.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    database = Database(url)
    upgrade(database.engine)
    yield database
    database.dispose()


def _experiment(exp_id: str, **extra) -> Workload:
    stamp = now()
    return Workload(
        id=exp_id,
        uid=uuid.uuid4().hex,
        name="n",
        namespace="default",
        owner="alice",
        framework="python",
        status="Accepted",
        spec={"meta": {"name": "n"}},
        accepted_at=stamp,
        updated_at=stamp,
        **extra,
    )


def test_migrations_create_every_table_and_are_repeatable(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert {
        "experiment",
        "experiment_event",
        "scheduler_lease",
        "id_epoch",
        "alembic_version",
        "team",
        "broker_user",
        "api_token",
        "policy_line",
        "policy_revision",
        "superseded_attempt",
        "cluster_flag",
        "secret_key_check",
        "tracking_experiment",
        "tracking_run",
        "tracking_metric",
        "tracking_latest_metric",
        "registry_model",
        "registry_version",
        "registry_version_file",
        "registry_event",
        "environment",
        "environment_revision",
        "environment_build",
    } <= tables
    upgrade(db.engine)  # a second run changes nothing and does not fail
    assert current_revision(db.engine) == head_revision()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'wal.db'}")
    with database.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    database.dispose()


def test_state_write_path_stamps_times_and_keeps_history(db: Database) -> None:
    db.call(lambda s: s.add(_experiment("experiment-1-0001")))

    def run(s):
        row = s.get(Workload, "experiment-1-0001")
        transition(s, row, Status.CREATED, "submitted")
        transition(s, row, Status.RUNNING, "running")
        transition(s, row, Status.FAILED, "replica worker-0 exited with code 2", category="exit_code")

    db.call(run)
    row = db.call(lambda s: s.get(Workload, "experiment-1-0001"))
    assert row.status == "Failed" and row.failure_category == "exit_code"
    assert row.created_at <= row.running_at <= row.finished_at
    assert row.finished_at.tzinfo is not None
    events = db.call(lambda s: s.scalars(select(Event).order_by(Event.id)).all())
    assert [(e.from_status, e.to_status) for e in events] == [
        ("Accepted", "Created"),
        ("Created", "Running"),
        ("Running", "Failed"),
    ]

    def revive(s):
        transition(s, s.get(Workload, "experiment-1-0001"), Status.RUNNING, "late report")

    with pytest.raises(IllegalTransition):
        db.call(revive)
    assert db.call(lambda s: s.get(Workload, "experiment-1-0001")).status == "Failed"


def test_idempotency_key_is_unique_per_owner(db: Database) -> None:
    from sqlalchemy.exc import IntegrityError

    db.call(lambda s: s.add(_experiment("experiment-1-0001", idempotency_key="k")))
    with pytest.raises(IntegrityError):
        db.call(lambda s: s.add(_experiment("experiment-1-0002", idempotency_key="k")))
    db.call(lambda s: s.add(_experiment("experiment-1-0003", idempotency_key=None)))
    db.call(lambda s: s.add(_experiment("experiment-1-0004", idempotency_key=None)))


def test_lease_has_one_holder_until_it_expires(db: Database) -> None:
    assert db.call(lambda s: try_acquire(s, "scheduler", "a", 30))
    assert not db.call(lambda s: try_acquire(s, "scheduler", "b", 30))
    assert db.call(lambda s: try_acquire(s, "scheduler", "a", 30))  # renewal
    db.call(
        lambda s: s.execute(update(Lease).values(expires_at=now() - timedelta(seconds=1)))
    )  # a crashed holder's lease runs out
    assert db.call(lambda s: try_acquire(s, "scheduler", "b", 30))
    assert not db.call(lambda s: try_acquire(s, "scheduler", "a", 30))
    db.call(lambda s: release(s, "scheduler", "b"))
    assert db.call(lambda s: try_acquire(s, "scheduler", "a", 30))


def test_two_id_generators_never_repeat_an_id(db: Database) -> None:
    first = IdGenerator(db, "experiment", "-", "broker-a")
    second = IdGenerator(db, "experiment", "-", "broker-b")
    assert first.epoch_ms != second.epoch_ms
    ids = [first.next() for _ in range(50)] + [second.next() for _ in range(50)]
    assert len(set(ids)) == 100
    assert ids[0].startswith(f"experiment-{first.epoch_ms}-0001")
    notebooks = IdGenerator(db, "notebook", "_", "broker-a")
    assert notebooks.next().startswith("notebook_") and notebooks.next().endswith("_0002")


def test_group_commit_keeps_each_unit_apart(tmp_path: Path) -> None:
    """Units committed together still succeed or fail one by one (a failing one rolls back alone)."""
    import asyncio

    from sqlalchemy.exc import IntegrityError

    database = Database(f"sqlite:///{tmp_path / 'group.db'}")
    upgrade(database.engine)

    async def burst() -> list[object]:
        units = [lambda s, i=i: s.add(_experiment(f"experiment-1-{i:04d}")) for i in range(20)]
        units.insert(7, lambda s: s.add(_experiment("experiment-1-0003")))  # duplicate primary key
        return await asyncio.gather(*(database.run(u) for u in units), return_exceptions=True)

    outcomes = asyncio.run(burst())
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failures) == 1 and isinstance(failures[0], IntegrityError)
    stored = database.call(lambda s: s.scalars(select(Workload.id)).all())
    assert sorted(stored) == [f"experiment-1-{i:04d}" for i in range(20)]
    database.dispose()
