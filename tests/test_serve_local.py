"""Serve plans on the ``local`` kind: one model-server process per replica on its own port, each
with its own working directory, reported by ``endpoints`` while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clusters.base import Handle, Phase
from clusters.local.adapter import LocalAdapter
from clusters.local.config import LocalClusterConfig
from clusters.local.processes import is_ours, read_json
from runtimes.plan import LaunchPlan, ModelPlan
from runtimes.serving import ServeSpec, build_serve_plan
from tests.serving_support import (
    FEATURES,
    FOLDER,
    ROWS,
    expected,
    fake_broker,
    save_sklearn_model,
    wait_ready,
)
from tests.support import wait_for

TOKEN = "local-serve-token"
FETCH_TOKEN = "local-fetch-token"
BODY = {"dataframe_split": {"columns": FEATURES, "data": ROWS}}


def serve_plan(adapter: LocalAdapter, model_uri: str, replicas: int) -> LaunchPlan:
    spec = ServeSpec(modelName="lin", modelVersion=1, replicas=replicas, resources="cpu=0.1,memory=256Mi")
    model = ModelPlan(name="lin", version=1, model_key="7", files_url=model_uri)
    uid = "serve-1-a1"
    return build_serve_plan(
        spec,
        model,
        workload_id="serve-1",
        uid=uid,
        namespace="default",
        addressing=adapter.addressing(uid),
        python=sys.executable,
        server_token=TOKEN,
        fetch_token=FETCH_TOKEN,
    )


def predict(url: str) -> httpx.Response:
    return httpx.post(
        f"{url}/invocations", json=BODY, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )


@pytest.fixture
def adapter(tmp_path: Path) -> Iterator[LocalAdapter]:
    made = LocalAdapter(LocalClusterConfig(name="here"), data_dir=str(tmp_path))
    made.cancel_grace = 2.0
    yield made
    for attempt in made.work_dir.glob("*/"):
        asyncio.run(made.cancel(Handle(attempt.name, {"dir": str(attempt)})))
    for pid_file in tmp_path.rglob("*.pid"):
        record = read_json(pid_file)
        if record and is_ours(record):
            with contextlib.suppress(OSError):
                os.killpg(int(record["pid"]), signal.SIGKILL)


def test_two_replicas_answer_and_one_survives_the_other(adapter: LocalAdapter, tmp_path: Path) -> None:
    model_dir = save_sklearn_model(tmp_path / "saved")
    with fake_broker(model_dir, token=FETCH_TOKEN) as uri:
        plan = serve_plan(adapter, uri, replicas=2)
        handle = asyncio.run(adapter.submit(plan))
        ports = [r.port for r in plan.replicas]
        assert len(set(ports)) == 2
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url in urls:
            wait_ready(url)
            answer = predict(url)
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"] == pytest.approx(expected(ROWS))
        assert asyncio.run(adapter.endpoints(handle)) == {"server-0": urls[0], "server-1": urls[1]}
        assert asyncio.run(adapter.endpoint(handle)) == urls[0]
        observed = asyncio.run(adapter.poll([handle]))[handle.uid]
        assert observed.phase is Phase.RUNNING

        # Each replica downloaded into its own working directory.
        attempt = Path(handle.state["dir"])
        for replica in plan.replicas:
            assert (attempt / replica.name / "model" / "MLmodel").is_file()
        assert FETCH_TOKEN not in (attempt / "server-0.log").read_text()

        pid = read_json(attempt / "server-0.pid")
        assert pid is not None
        os.killpg(int(pid["pid"]), signal.SIGKILL)
        wait_for(
            lambda: asyncio.run(adapter.endpoints(handle)) == {"server-1": urls[1]},
            timeout=30,
            what="the killed replica to leave the endpoints",
        )
        assert predict(urls[1]).status_code == 200
        # The serve runs on: the gang rule does not stop the survivor, the message says who ended.
        observed = asyncio.run(adapter.poll([handle]))[handle.uid]
        assert observed.phase is Phase.RUNNING
        assert observed.message.startswith("1 of 2 replicas serve; ended: server-0")
        with pytest.raises(httpx.HTTPError):
            predict(urls[0])


def test_a_replica_that_cannot_fetch_fails_with_the_reason(adapter: LocalAdapter, tmp_path: Path) -> None:
    model_dir = save_sklearn_model(tmp_path / "saved")
    with fake_broker(model_dir, token="another-token") as uri:
        plan = serve_plan(adapter, uri, replicas=1)
        handle = asyncio.run(adapter.submit(plan))
        observed = wait_for(
            lambda: (o := asyncio.run(adapter.poll([handle]))[handle.uid]).phase.is_terminal and o,
            timeout=90,
            what="the replica to fail",
        )
    assert observed.phase is Phase.FAILED
    assert asyncio.run(adapter.endpoints(handle)) == {}
    log = asyncio.run(adapter.logs(handle))[0]
    text = "\n".join(log.lines)
    assert "cannot fetch the model from" in text and FOLDER in text and "401" in text
    assert FETCH_TOKEN not in text and TOKEN not in text
