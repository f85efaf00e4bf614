"""Helpers for the MLflow-client tests: a module-wide broker and the client's environment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support import Broker

#: The client's environment in these tests: no telemetry, no URL printing, no minutes of retries.
CLIENT_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}
#: Environment variables that would steer the client elsewhere.
CLEARED = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_TOKEN")


@contextlib.contextmanager
def mlflow_at(url: str, **extra: str) -> Iterator[Any]:
    """The ``mlflow`` module pointed at ``url``, with :data:`CLIENT_ENV` (and ``extra``) set and
    everything restored afterwards."""
    import mlflow
    from mlflow.tracking import fluent

    saved = {name: os.environ.get(name) for name in [*CLIENT_ENV, *CLEARED, *extra, "MLFLOW_TRACKING_URI"]}
    os.environ.update(CLIENT_ENV)
    os.environ.update(extra)
    for name in CLEARED:
        if name not in extra:
            os.environ.pop(name, None)
    os.environ["MLFLOW_TRACKING_URI"] = url
    mlflow.set_tracking_uri(url)
    fluent._active_experiment_id = None  # set_experiment's choice outlives a test otherwise
    try:
        yield mlflow
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        fluent._active_experiment_id = None
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def module_broker(root: Path, **settings: Any) -> Broker:
    return Broker(root, **settings).start()


def rest(broker: Broker, token: str | None = None) -> httpx.Client:
    """An httpx client for the broker's MLflow REST API (``/api/2.0/mlflow``)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=broker.url + "/api/2.0/mlflow", headers=headers, timeout=60)
