"""Fixtures shared across the suite."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Broker

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


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
