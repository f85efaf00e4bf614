"""The ``slurm`` adapter in ``mode: rest`` against the real slurmrestd of the ``slurm`` fixture.

slurmrestd runs as the user ``sbtest`` with JWT auth; jobs submitted through it run as that user,
so their commands use the system's /usr/bin/python3 (this virtualenv lives under /root). Every
body the adapter POSTs is validated against slurmrestd's own v0.0.38 OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import json
import pwd
import secrets
import shlex
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from clusters.base import Handle, Phase
from clusters.errors import ClusterUnreachable, SubmitRejected
from clusters.slurm.adapter import SlurmAdapter
from clusters.slurm.config import SlurmClusterConfig
from clusters.slurm.rest import SlurmRest
from runtimes.frameworks import build_plan
from runtimes.rendezvous import PlaceholderAddressing
from runtimes.spec import ExperimentSpec
from tests.slurm_cluster import SlurmCluster
from tests.support import free_port
from tests.test_slurm_adapter import processes_with, until, wait_phase

PY = "/usr/bin/python3"


class Recording(httpx.AsyncBaseTransport):
    """The real transport, keeping every request the adapter sends."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def rest_adapter(cluster: SlurmCluster, tmp_path: Path, **extra: Any) -> tuple[SlurmAdapter, Recording]:
    config = SlurmClusterConfig(name="hpc", **{**cluster.cluster_config(mode="rest"), **extra})
    adapter = SlurmAdapter(config, data_dir=str(tmp_path))
    assert isinstance(adapter.backend, SlurmRest)
    recording = Recording()
    adapter.backend.transport = recording
    return adapter, recording


def plan_of(code: str, roles: dict[str, Any], framework: str = "pytorch"):
    spec = {
        "meta": {"name": "rest", "framework": framework, "cmd": f"{PY} -c {shlex.quote(code)}"},
        "environment": {"image": "python:3.11"},
        "spec": roles,
    }
    uid = secrets.token_hex(16)
    return build_plan(
        ExperimentSpec.model_validate(spec),
        workload_id="experiment-rest",
        uid=uid,
        namespace="default",
        addressing=PlaceholderAddressing(),
    )


@pytest.fixture(scope="module")
def submission_schema(shared_dir: Path) -> jsonschema.Draft202012Validator:
    schema = json.loads((shared_dir / "schemas" / "slurm" / "slurm-v0.0.38-openapi.json").read_text())
    root = {"$ref": "#/components/schemas/v0.0.38_job_submission", "components": schema["components"]}
    return jsonschema.Draft202012Validator(root)


def test_submit_poll_logs_and_cancel_through_slurmrestd(slurm, tmp_path, submission_schema) -> None:
    adapter, recording = rest_adapter(slurm, tmp_path)
    code = "import os; print('rank', os.environ['RANK'], 'as', os.getuid())"
    roles = {"Master": {"replicas": 1, "resources": "cpu=1,memory=64Mi"}, "Worker": {"replicas": 1}}
    plan = plan_of(code, roles)
    marker = f"sb-rest-cancel-{secrets.token_hex(4)}"
    long = plan_of(f"# {marker}\nimport time\ntime.sleep(300)", {"Worker": {"replicas": 1}}, "python")

    async def body() -> None:
        health = await adapter.health()
        assert health.reachable and health.total.cpu >= 4 and health.total.memory == 4000 * 2**20

        handle = await adapter.submit(plan)
        assert await adapter.submit(plan) == handle  # found by name through GET /jobs
        done = await wait_phase(adapter, handle, Phase.SUCCEEDED)
        assert [r.phase for r in done.replicas] == [Phase.SUCCEEDED, Phase.SUCCEEDED]
        logs = {log.replica: log.lines for log in await adapter.logs(handle)}
        user = pwd.getpwnam("sbtest").pw_uid  # jobs run as the REST user
        assert logs == {"master-0": [f"rank 0 as {user}"], "worker-0": [f"rank 1 as {user}"]}

        running = await adapter.submit(long)
        await wait_phase(adapter, running, Phase.RUNNING)
        await until(lambda: processes_with(marker), "the replica to start")
        assert long.uid in {h.uid for h in await adapter.owned()}
        await adapter.cancel(running)
        await until(lambda: not processes_with(marker), "the replica to end", timeout=15)
        ended = await wait_phase(adapter, running, Phase.FAILED, timeout=15)
        assert ended.failure_category == "killed" and "cancelled" in ended.message
        await adapter.close()

    asyncio.run(body())
    posts = [r for r in recording.sent if r.method == "POST"]
    assert [r.url.path for r in posts] == ["/slurm/v0.0.38/job/submit"] * 2  # one per attempt
    for request in posts:
        sent = json.loads(request.content)
        errors = [e.message for e in submission_schema.iter_errors(sent)]
        assert not errors, errors
        assert sent["job"]["name"].startswith("sb-") and sent["job"]["environment"]
    assert {r.headers["X-SLURM-USER-NAME"] for r in recording.sent} == {"sbtest"}
    assert len([r for r in recording.sent if r.method == "GET" and r.url.path.endswith("/jobs")]) >= 3


def test_a_job_slurm_refuses_is_rejected_with_slurms_reason(slurm, tmp_path) -> None:
    adapter, _ = rest_adapter(slurm, tmp_path, partition="nope")

    async def body() -> None:
        with pytest.raises(SubmitRejected, match="refused job sb-.*[Ii]nvalid partition"):
            await adapter.submit(plan_of("print(1)", {"Worker": {"replicas": 1}}, "python"))
        await adapter.close()

    asyncio.run(body())


def test_refused_credentials_and_a_silent_slurmrestd_are_unreachable(slurm, tmp_path) -> None:
    forged = "eyJhbGciOiJIUzI1NiJ9.forged.signature"
    adapter, _ = rest_adapter(slurm, tmp_path, token=forged)
    gone, _ = rest_adapter(slurm, tmp_path, rest_url=f"http://127.0.0.1:{free_port()}")
    plan = plan_of("print(1)", {"Worker": {"replicas": 1}}, "python")

    async def body() -> None:
        # slurmrestd passes the token on; slurmctld refuses it.
        health = await adapter.health()
        assert not health.reachable and "check the cluster's user and token" in health.message
        assert forged not in health.message
        with pytest.raises(ClusterUnreachable, match="user and token"):
            await adapter.poll([Handle(plan.uid, {"job_id": "1", "replicas": ["worker-0"]})])
        with pytest.raises(ClusterUnreachable) as caught:
            await adapter.submit(plan)
        assert forged not in str(caught.value)
        silent = await gone.health()
        assert not silent.reachable and "did not answer" in silent.message
        with pytest.raises(ClusterUnreachable):
            await gone.poll([Handle(plan.uid, {"job_id": "1", "replicas": ["worker-0"]})])
        await adapter.close()
        await gone.close()

    asyncio.run(body())
