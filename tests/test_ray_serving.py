"""Served models on Ray: a Ray Serve application per serve attempt (clusters/ray/serving.py,
runtimes/ray_serve.py).

The status mapping is checked on Serve's answers as data; the real test deploys a small sklearn
MLflow model on the suite's Ray head (``ray_head``), its files fetched from a stand-in for the
broker's artifact API, predicts through Serve's HTTP proxy and deletes the application.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from clusters.base import Handle, Phase
from clusters.errors import ClusterUnreachable, WorkloadNotFound
from clusters.ray.adapter import RayAdapter
from clusters.ray.config import RayClusterConfig
from clusters.ray.serving import LOG_PATH, STATUS_PATH, app_endpoint, observe_app, proxy_base
from runtimes.plan import LaunchPlan, ModelPlan
from runtimes.ray_serve import PrefixStripped, app_name, deployment_name, replica_options
from runtimes.serving import ServeSpec, build_serve_plan
from tests.doubles.ray_sdk import FakeSDK
from tests.ray_cluster import RayHead, free_port
from tests.serving_support import ROWS, expected, fake_broker, save_sklearn_model
from tests.support import wait_for

RAY_WAIT = 240


def serve_plan(adapter: RayAdapter, files_url: str, *, uid: str, token: str, replicas: int = 1) -> LaunchPlan:
    spec = ServeSpec(modelName="iris", modelVersion=1, replicas=replicas, resources="cpu=0.25,memory=256M")
    model = ModelPlan(name="iris", version=1, model_key="7", files_url=files_url)
    return build_serve_plan(
        spec,
        model,
        workload_id="srv-1",
        uid=uid,
        namespace="default",
        addressing=adapter.addressing(uid),
        python=sys.executable,
        server_token=token,
        fetch_token="fetch-secret",
    )


# -- Serve's status answers as data ------------------------------------------------------------


def _details(status: str, **app: Any) -> dict[str, Any]:
    return {
        "http_options": {"host": "0.0.0.0", "port": 31234},
        "applications": {"sb-u1": {"status": status, "route_prefix": "/sb-u1", **app}},
    }


def test_application_statuses_become_phases_with_serves_reason() -> None:
    assert observe_app("u1", {"status": "RUNNING"}).phase is Phase.RUNNING
    deploying = observe_app("u1", {"status": "DEPLOYING"})
    assert (deploying.phase, deploying.message) == (Phase.PENDING, "deploying on Ray Serve")
    failed = observe_app(
        "u1",
        {
            "status": "DEPLOY_FAILED",
            "message": "",
            "deployments": {"iris-v1": {"message": "FetchError: 404"}},
        },
    )
    assert failed.phase is Phase.FAILED
    assert failed.message == "Ray Serve could not deploy the model: FetchError: 404"
    assert observe_app("u1", {"status": "DELETING"}).phase is Phase.NOT_FOUND


def test_endpoint_is_the_proxy_with_the_route_prefix_and_the_heads_host_for_a_wildcard() -> None:
    address = "http://10.1.2.3:8265"
    assert app_endpoint(_details("RUNNING"), "sb-u1", "u1", address) == "http://10.1.2.3:31234/sb-u1"
    assert app_endpoint(_details("DEPLOYING"), "sb-u1", "u1", address) is None
    assert app_endpoint(_details("RUNNING"), "sb-other", "other", address) is None
    assert (
        proxy_base({"http_options": {"host": "127.0.0.1", "port": 8001}}, address) == "http://127.0.0.1:8001"
    )
    assert proxy_base({}, address) is None


def test_the_plan_becomes_one_deployment_named_after_the_version_with_per_replica_resources() -> None:
    adapter = RayAdapter(RayClusterConfig(name="r", address="http://h:8265"), data_dir="/tmp")
    plan = serve_plan(
        adapter, "http://b/api/2.0/mlflow-artifacts/artifacts/registry/7/1", uid="u1", token="t", replicas=2
    )
    assert deployment_name(plan) == "iris-v1"
    assert replica_options(plan) == {"num_cpus": 0.25, "memory": 256_000_000}
    assert app_name(plan.uid) == "sb-u1"


def test_prefix_is_stripped_for_the_model_servers_routes() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)

    asyncio.run(
        PrefixStripped(app)({"type": "http", "path": "/sb-u1/ping", "root_path": "/sb-u1"}, None, None)
    )
    assert (seen["path"], seen["root_path"]) == ("/ping", "")


# -- the adapter over a fake job API and dashboard ---------------------------------------------


def _faked(
    apps: dict[str, Any], logs: dict[tuple[str, str], str] | None = None
) -> tuple[RayAdapter, FakeSDK]:
    """An adapter whose job API is a :class:`FakeSDK` and whose dashboard answers Serve's status
    with ``apps`` and the log API with ``logs`` (by node and file; 500 for any other file)."""
    adapter = RayAdapter(RayClusterConfig(name="ray", address="http://h:8265"), data_dir="/tmp")
    fake = FakeSDK()
    adapter._client = fake

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == STATUS_PATH:
            return httpx.Response(200, json={"applications": apps})
        if request.url.path == LOG_PATH:
            params = dict(request.url.params)
            text = (logs or {}).get((params["node_id"], params["filename"]))
            if text is None:
                return httpx.Response(500, text="log file not found")
            lines = (
                text.splitlines()[-int(params["lines"]) :] if params["lines"] != "-1" else text.splitlines()
            )
            return httpx.Response(200, text="\n".join(lines) + "\n")
        return httpx.Response(404)

    adapter.http_transport = httpx.MockTransport(answer)
    return adapter, fake


def _replica(node: str, path: str, started: float) -> dict[str, Any]:
    return {"node_id": node, "log_file_path": path, "start_time_s": started, "replica_id": path[-4:]}


def test_owned_lists_a_serves_application_after_its_deploy_job_ended_and_never_another_brokers() -> None:
    apps = {
        "sb-live": {"status": "RUNNING"},
        "sb-leaving": {"status": "DELETING"},
        "sb-deleted": {"status": "RUNNING"},
        "sb-stranger": {"status": "RUNNING"},  # not deployed by a job of this broker
    }
    adapter, fake = _faked(apps)
    for uid in ("live", "gone", "leaving", "deleted", "deploying"):
        asyncio.run(adapter.submit(serve_plan(adapter, "http://b/files", uid=uid, token="t")))
    for sid in ("sb-live", "sb-gone", "sb-leaving", "sb-deleted"):
        fake.jobs[sid].status = "SUCCEEDED"  # a deploy job ends once its application runs
    # The broker deleted this one: its delete job has not run yet, Serve still runs it.
    asyncio.run(adapter.cancel(Handle("deleted", {"submission_id": "sb-deleted", "serve_app": "sb-deleted"})))
    assert fake.jobs["sb-deleted-delete"].status == "PENDING"
    fake.jobs["sb-stranger"] = SimpleNamespace(
        submission_id="sb-stranger", status="SUCCEEDED", metadata={"serve_app": "sb-stranger"}, entrypoint=""
    )
    owned = {h.uid: h for h in asyncio.run(adapter.owned())}
    assert sorted(owned) == ["deploying", "live"]
    assert owned["live"].state["serve_app"] == "sb-live"
    assert owned["live"].state["replicas"] == ["server-0"]


def test_without_serves_status_owned_lists_the_running_jobs_only() -> None:
    adapter, fake = _faked({})
    for uid in ("deployed", "deploying"):
        asyncio.run(adapter.submit(serve_plan(adapter, "http://b/files", uid=uid, token="t")))
    fake.jobs["sb-deployed"].status = "SUCCEEDED"
    adapter.http_transport = httpx.MockTransport(lambda request: httpx.Response(500))
    assert [h.uid for h in asyncio.run(adapter.owned())] == ["deploying"]


def test_a_serves_logs_are_its_replicas_serve_log_files_under_the_plans_names() -> None:
    app = {
        "status": "RUNNING",
        "deployments": {
            "iris-v1": {
                "replicas": [
                    _replica("n2", "/serve/replica_sb-u1_iris-v1_late.log", 20.0),
                    _replica("n1", "/serve/replica_sb-u1_iris-v1_first.log", 10.0),
                ]
            }
        },
    }
    logs = {
        ("n1", "serve/replica_sb-u1_iris-v1_first.log"): "a\nPOST /sb-u1/invocations 200\n",
        ("n2", "serve/replica_sb-u1_iris-v1_late.log"): "b1\nb2\nb3\n",
    }
    adapter, _ = _faked({"sb-u1": app}, logs)
    handle = asyncio.run(
        adapter.submit(serve_plan(adapter, "http://b/files", uid="u1", token="t", replicas=2))
    )
    found = asyncio.run(adapter.logs(handle))
    assert [(log.replica, log.lines) for log in found] == [
        ("server-0", ["a", "POST /sb-u1/invocations 200"]),
        ("server-1", ["b1", "b2", "b3"]),
    ]
    assert [log.lines for log in asyncio.run(adapter.logs(handle, "server-1", tail=2))] == [["b2", "b3"]]
    assert [log.lines for log in asyncio.run(adapter.logs(handle, "server-1", tail=0))] == [[]]
    with pytest.raises(WorkloadNotFound):
        asyncio.run(adapter.logs(handle, "server-7"))
    # A file the dashboard cannot read (its node left) has no lines, the others still do.
    app["deployments"]["iris-v1"]["replicas"][0]["node_id"] = "n9"
    assert [log.lines for log in asyncio.run(adapter.logs(handle))][1] == []


def test_before_the_application_exists_the_deploy_jobs_log_is_the_primarys() -> None:
    adapter, fake = _faked({})
    handle = asyncio.run(
        adapter.submit(serve_plan(adapter, "http://b/files", uid="u2", token="t", replicas=2))
    )
    fake.logs = "Deploying\n(ServeReplica:sb-u2:iris-v1 pid=7) FetchError: 404\n"
    found = asyncio.run(adapter.logs(handle))
    assert [(log.replica, log.lines) for log in found] == [
        ("server-0", ["Deploying", "(ServeReplica:sb-u2:iris-v1 pid=7) FetchError: 404"]),
        ("server-1", []),
    ]
    assert [log.lines for log in asyncio.run(adapter.logs(handle, tail=1))][0] == [
        "(ServeReplica:sb-u2:iris-v1 pid=7) FetchError: 404"
    ]


# -- the real thing ----------------------------------------------------------------------------


def _serve_apps(head: RayHead) -> dict[str, Any]:
    answer = httpx.get(f"{head.address}{STATUS_PATH}", timeout=10)
    answer.raise_for_status()
    return answer.json().get("applications") or {}


def test_a_sklearn_model_served_by_ray_serve_predicts_and_delete_removes_the_application(
    ray_head: RayHead, tmp_path: Path
) -> None:
    model_dir = save_sklearn_model(tmp_path / "model")
    token = secrets.token_urlsafe(16)
    port = free_port()
    config = RayClusterConfig(name="ray", address=ray_head.address, serve_host="127.0.0.1", serve_port=port)
    adapter = RayAdapter(config, data_dir=str(tmp_path))
    uid = f"srv{secrets.token_hex(4)}"
    with fake_broker(model_dir, token="fetch-secret") as files_url:
        plan = serve_plan(adapter, files_url, uid=uid, token=token)
        handle = asyncio.run(adapter.submit(plan))
        try:
            assert handle.state["serve_app"] == f"sb-{uid}"

            def running() -> bool:
                try:
                    seen = asyncio.run(adapter.poll([handle]))[uid]
                except ClusterUnreachable:
                    return False  # the dashboard is slow while Serve starts; the monitor retries too
                assert seen.phase in (Phase.PENDING, Phase.RUNNING), seen
                return seen.phase is Phase.RUNNING

            wait_for(running, timeout=RAY_WAIT, interval=1.0, what="the Serve application RUNNING")
            # A restarted broker finds the same application from the stored handle alone.
            stored = Handle.from_json(handle.to_json())
            url = asyncio.run(adapter.endpoint(stored))
            assert url is not None
            # Serve's proxy listens where the cluster config said (Serve was not running before,
            # or runs with this config from an earlier test of this module).
            assert url.startswith("http://127.0.0.1:") and url.endswith(f"/sb-{uid}")
            assert asyncio.run(adapter.endpoints(stored)) == {"server-0": url}

            assert httpx.get(f"{url}/ping", timeout=10).status_code == 200
            body = {"dataframe_split": {"columns": ["a", "b"], "data": ROWS}}
            refused = httpx.post(f"{url}/invocations", json=body, timeout=30)
            assert refused.status_code == 401
            auth = {"Authorization": f"Bearer {token}"}
            answer = httpx.post(f"{url}/invocations", json=body, headers=auth, timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"] == pytest.approx(expected(ROWS))
            bad = httpx.post(f"{url}/invocations", content=b"{not json", headers=auth, timeout=30)
            assert bad.status_code == 400
        finally:
            asyncio.run(adapter.cancel(handle))

    def gone() -> bool:
        return f"sb-{uid}" not in _serve_apps(ray_head)

    wait_for(gone, timeout=RAY_WAIT, interval=1.0, what="the Serve application deleted")
    assert asyncio.run(adapter.poll([handle]))[uid].phase is Phase.NOT_FOUND
    assert asyncio.run(adapter.endpoint(handle)) is None
