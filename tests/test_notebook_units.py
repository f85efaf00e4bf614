"""Notebook pieces without servers: the spec, the plan, placement needs, the status table, the watch's
time handling."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from broker.notebooks.views import notebook_json, notebook_status
from broker.notebooks.watch import parse_time
from broker.planner import notebook_request
from broker.state import Status
from broker.workloads.model import Workload
from policies.placement import default_engine
from runtimes.notebook import REPLICA, NotebookSpec, base_path, build_notebook_plan
from runtimes.plan import StaticAddressing
from tests.test_placement import cluster


def spec(**spec_fields: object) -> NotebookSpec:
    return NotebookSpec.model_validate(
        {
            "meta": {"name": "My-NB", "namespace": "vision"},
            "spec": {"resources": "cpu=1,memory=2Gi", **spec_fields},
        }
    )


def test_spec_lowers_the_name_and_refuses_what_cannot_be_a_url_segment() -> None:
    assert spec().meta.name == "my-nb"
    for bad in ("has space", "under_score", "-dash", "x" * 64, "a/b"):
        with pytest.raises(ValidationError) as info:
            NotebookSpec.model_validate({"meta": {"name": bad}})
        assert info.value.errors()[0]["loc"] == ("meta", "name")
    with pytest.raises(ValidationError):
        NotebookSpec.model_validate({"meta": {"name": "ok"}, "spec": {"replicas": 2}})
    # Submarine's clients echo cpu/gpu/memory: accepted and ignored.
    assert NotebookSpec.model_validate({"meta": {"name": "ok"}, "spec": {"cpu": "1", "memory": "1G"}})


def test_plan_runs_one_jupyter_server_under_the_public_prefix() -> None:
    plan = build_notebook_plan(
        spec(envVars={"JUPYTER_TOKEN": "from-the-user", "MINE": "1"}),
        workload_id="notebook_1_0001",
        uid="u1",
        namespace="vision",
        addressing=StaticAddressing(lambda _r, _i: "10.0.0.7", lambda: 18888),
        python="/opt/py/bin/python",
        app_module="jupyter_server",
        extra_env={"SUBMARINE_SERVER_PORT": "8080", "JUPYTER_TOKEN": "secret"},
    )
    (replica,) = plan.replicas
    assert replica.name == REPLICA and plan.workload_kind == "notebook" and plan.workdir == "notebook_1_0001"
    assert replica.argv[:3] == ["/opt/py/bin/python", "-m", "jupyter_server"]
    assert "--ServerApp.base_url=/notebook/vision/my-nb/" in replica.argv
    assert "--ip=10.0.0.7" in replica.argv and "--port=18888" in replica.argv
    assert not any("secret" in arg for arg in replica.argv)  # the token never on a command line
    assert replica.env["JUPYTER_TOKEN"] == "secret"  # a spec cannot replace the broker's token
    assert replica.env["MINE"] == "1" and replica.env["SUBMARINE_SERVER_PORT"] == "8080"
    assert replica.resources.cpu == 1 and replica.resources.memory == 2 * 2**30
    assert base_path("vision", "my-nb") == "/notebook/vision/my-nb/"


def test_notebooks_go_only_where_an_endpoint_can_be_served() -> None:
    request = dataclasses.replace(notebook_request(spec(), "vision", "bob"), user="bob")
    assert request.workload_kind == "notebook" and request.needs == frozenset({"endpoints"})
    serving = dataclasses.replace(cluster("serving"), capabilities=frozenset({"endpoints"}))
    decision = default_engine().place(request, [cluster("batch-only"), serving], None)
    assert decision.chosen == "serving"
    refused = next(v for v in decision.verdicts if v.cluster == "batch-only")
    assert any("endpoints" in reason for reason in refused.reasons)
    never = default_engine().place(request, [cluster("batch-only")], None)
    assert never.chosen is None and never.never_fits


def row(status: Status, access: dict | None = None, uid: str = "u1") -> Workload:
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    return Workload(
        id="notebook_1_0001",
        uid=uid,
        attempt=1,
        name="nb",
        namespace="vision",
        owner="bob",
        framework="notebook",
        kind="notebook",
        status=status.value,
        spec=spec().model_dump(mode="json"),
        access=access,
        accepted_at=stamp,
        updated_at=stamp,
        reason="why" if status is Status.FAILED else None,
    )


@pytest.mark.parametrize(
    ("status", "access", "expected"),
    [
        (Status.ACCEPTED, None, "waiting"),
        (Status.CREATED, None, "creating"),
        (Status.RUNNING, None, "creating"),
        (Status.RUNNING, {"uid": "u1", "url": "http://x:1"}, "creating"),
        (Status.RUNNING, {"uid": "old", "url": "http://x:1", "readyAt": "t"}, "creating"),
        (Status.RUNNING, {"uid": "u1", "url": "http://x:1", "readyAt": "t"}, "running"),
        (Status.SUCCEEDED, None, "failed"),
        (Status.FAILED, None, "failed"),
        # Stopped on purpose (its user, the idle timeout) by the broker: this attempt, not an older one.
        (Status.FAILED, {"uid": "u1", "url": "http://x:1", "stoppedAt": "t"}, "stopped"),
        (Status.FAILED, {"uid": "old", "stoppedAt": "t"}, "failed"),
        (Status.DELETED, None, "terminating"),
    ],
)
def test_every_status_reads_as_a_submarine_notebook_status(status, access, expected) -> None:
    assert notebook_status(row(status, access)) == expected
    shown = notebook_json(row(status, access))
    assert shown["status"] == expected
    assert shown["spec"]["meta"]["labels"] == {"notebook-owner-id": "bob", "notebook-id": "notebook_1_0001"}
    assert shown["url"] == "/notebook/vision/nb/lab"
    if status is Status.FAILED:
        assert shown["reason"] == "why"  # stopped or failed, the reason says why
    elif status is Status.SUCCEEDED:
        assert "shut down" in shown["reason"]


def test_jupyter_times_parse_and_junk_does_not() -> None:
    assert parse_time("2026-11-30T02:50:01.123456Z") == datetime(2026, 11, 30, 2, 50, 1, 123456, tzinfo=UTC)
    for junk in (None, "", "yesterday", 5):
        assert parse_time(junk) is None


def test_the_server_token_never_shows_in_the_notebook_logs() -> None:
    from broker.notebooks.views import notebook_log_json
    from clusters.base import ReplicaLog

    lines = ["started", "os.environ['JUPYTER_TOKEN'] = 's3cr3t-t0ken'", "http://h:1/lab?token=s3cr3t-t0ken"]
    shown = notebook_log_json("notebook_1_0001", [ReplicaLog("notebook-0", lines)], "s3cr3t-t0ken")
    assert shown == {
        "notebookId": "notebook_1_0001",
        "logContent": [
            {
                "podName": "notebook_1_0001-notebook-0",
                "podLog": [
                    "started",
                    "os.environ['JUPYTER_TOKEN'] = '******'",
                    "http://h:1/lab?token=******",
                ],
            }
        ],
    }
