"""Fixtures shared across the suite."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.support import Broker, kill_replicas

#: The real browser of the workbench's tests (fixtures ``chromium`` and ``browser_page``).
pytest_plugins = ("tests.browser_support",)

# pytest-xdist workers start with COLUMNS=80 and LINES=24; without them the CLI renders as it does
# for a pipe (wide), the same in a serial and a parallel run.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def throwaway_pg_database() -> Iterator[str]:
    """A new database on the machine's PostgreSQL (127.0.0.1:5432), dropped afterwards."""
    name = f"sb_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - the message says what to fix
        pytest.fail(f"these tests need PostgreSQL on 127.0.0.1:5432 (trust auth, database test): {exc}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway database on the machine's PostgreSQL (127.0.0.1:5432), dropped afterwards."""
    with throwaway_pg_database() as url:
        yield url


@pytest.fixture(scope="module")
def pg_module_url() -> Iterator[str]:
    """Like ``pg_url``, shared by the tests of one module."""
    with throwaway_pg_database() as url:
        yield url


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Make (and finally stop) real brokers; each gets its own folder, port and database."""
    made: list[Broker] = []

    def make(*, start: bool = True, name: str = "broker", **settings: Any) -> Broker:
        broker = Broker(tmp_path / name, **settings)
        made.append(broker)
        return broker.start() if start else broker

    yield make
    for broker in made:
        broker.close()
    kill_replicas(tmp_path)  # also work dirs placed beside the brokers (several local clusters)


@pytest.fixture
def broker(broker_factory: Callable[..., Broker]) -> Broker:
    """One running broker with one local cluster."""
    return broker_factory()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (schemas, references). Absent only in a clone elsewhere: then the test is skipped."""
    if not SHARED.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED} is missing: CI must have ../shared beside the project")
        pytest.skip(f"{SHARED} is not here (a clone outside the workplace); schema checks need it")
    return SHARED


@pytest.fixture(scope="session")
def ray_head() -> Iterator[Any]:
    """One Ray head (``ray start --head``, 2 CPUs, loopback, free ports) for the session, stopped by pid.

    Without Ray installed the Ray tests are skipped, except in CI (``CI`` set), where that and any
    failure to start are test failures carrying the end of Ray's logs.
    """
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Ray is not installed (the `ray` extra): {exc}")
        pytest.skip(f"Ray is not installed (pip install -e '.[ray]'): {exc}")
    from tests.ray_cluster import RayHead

    head = RayHead()
    try:
        head.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="session")
def yarn_schema_dir(shared_dir: Path) -> Path:
    """../shared/schemas/yarn (the Services API swagger file), with the YARN double's validator pointed at it."""
    from tests.doubles import yarn_validation

    folder = shared_dir / "schemas" / "yarn"
    if not (folder / yarn_validation.SCHEMA_FILE).is_file():
        pytest.fail(f"{folder / yarn_validation.SCHEMA_FILE} is missing from ../shared")
    yarn_validation.configure(folder)
    return folder


@pytest.fixture(scope="session")
def slurm() -> Iterator[Any]:
    """One private single-node Slurm (munged, slurmctld, slurmd, slurmrestd as user ``sbtest``) for
    the session, on free loopback ports, stopped by pid (tests/slurm_cluster.py).

    Never skipped: missing packages are installed with apt-get (as root); anything that keeps
    Slurm from starting is a test failure carrying the end of its logs.
    """
    from tests.slurm_cluster import SlurmCluster

    cluster = SlurmCluster(rest=True)
    try:
        cluster.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


#: Tests that start a whole cluster (the session's Ray head or Slurm, or a Ray head of their own)
#: run in one xdist worker per cluster kind, so a parallel run (``-n``, ``--dist loadgroup``)
#: starts each cluster once and never two Ray heads at a time on this 2-core machine.
_CLUSTER_GROUPS = {"ray_head": "ray", "slurm": "slurm"}
_MODULE_GROUPS = {"test_ray_": "ray", "test_slurm_": "slurm"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the group markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = getattr(item, "fixturenames", ())
        module = item.path.name
        group = next((g for name, g in _CLUSTER_GROUPS.items() if name in used), None) or next(
            (g for prefix, g in _MODULE_GROUPS.items() if module.startswith(prefix)), None
        )
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(trylast=True)  # after xdist tagged the node ids with their groups
def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail the run when ``--dist loadgroup`` would not group: pytest-xdist tags a grouped test's
    node id (``…@ray``), and a pytest it cannot tag (9.x with xdist 3.8) would silently spread the
    Ray and Slurm tests over every worker, each starting its own cluster."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    untagged = [
        item.nodeid
        for item in session.items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid
    ]
    if untagged:
        raise pytest.UsageError(
            f"--dist loadgroup does not group here (pytest {pytest.__version__}): {untagged[0]} has no @group "
            "suffix; install the pytest that setup.cfg's test extra names"
        )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the workbench's screenshots are, so a person looks at every page."""
    from tests.browser_support import SCREENSHOTS

    if SCREENSHOTS.is_dir() and any(SCREENSHOTS.glob("*.png")):
        count = len(list(SCREENSHOTS.glob("*.png")))
        terminalreporter.write_line(f"workbench screenshots ({count}): {SCREENSHOTS}")
