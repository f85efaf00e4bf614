"""The YARN state tables: complete against the Services API swagger file and the RM REST reference, and read right.

The enums come from the files in ../shared/schemas/yarn (through the ``yarn_schema_dir`` fixture),
so a newer schema with a state the tables miss fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from clusters.base import Handle, Phase
from clusters.yarn.adapter import YarnAdapter
from clusters.yarn.config import YarnClusterConfig
from clusters.yarn.states import (
    APP_STATES,
    COMPONENT_STATES,
    CONTAINER_STATES,
    EARLY_APP_STATES,
    FINAL_APP_STATES,
    FINAL_STATUSES,
    SERVICE_STATES,
)
from tests.doubles import yarn_validation

#: Words the tables read beyond the swagger file's enums (older releases, YarnServiceAPI.md).
EXTRAS = {
    "ServiceState": set(),
    "ComponentState": {"INIT", "CANCEL_UPGRADING"},
    "ContainerState": {"INIT", "STARTED"},
}
TABLES = {
    "ServiceState": SERVICE_STATES,
    "ComponentState": COMPONENT_STATES,
    "ContainerState": CONTAINER_STATES,
}


def rm_enum(folder: Path, enum: str) -> set[str]:
    """The values ResourceManagerRest.md lists for ``enum`` (``... the YarnApplicationState enum: A, B``)."""
    text = (folder / "ResourceManagerRest.md").read_text()
    match = re.search(rf"{enum} enum: ([A-Z_\\, ]+)", text)
    assert match, f"ResourceManagerRest.md no longer lists {enum}"
    return {v.strip().replace("\\", "") for v in match.group(1).split(",") if v.strip()}


def test_tables_cover_every_state_of_the_swagger_file(yarn_schema_dir: Path) -> None:
    enums = yarn_validation.enums()
    for name, table in TABLES.items():
        assert set(enums[name]) <= set(table), f"{name}: {set(enums[name]) - set(table)} not read"
        assert set(table) - set(enums[name]) == EXTRAS[name], name
        for word, native in table.items():
            assert native.meaning, word
            assert (native.phase is Phase.FAILED) == (native.failure_category is not None), word


def test_tables_cover_the_resourcemanagers_application_states(yarn_schema_dir: Path) -> None:
    assert rm_enum(yarn_schema_dir, "YarnApplicationState") == set(APP_STATES)
    assert rm_enum(yarn_schema_dir, "FinalApplicationStatus") <= set(FINAL_STATUSES)
    assert set(FINAL_STATUSES) - rm_enum(yarn_schema_dir, "FinalApplicationStatus") == {"ENDED"}
    assert FINAL_APP_STATES | EARLY_APP_STATES | {"RUNNING"} == set(APP_STATES)


def test_each_state_reads_as_expected() -> None:
    assert {w for w, n in SERVICE_STATES.items() if n.phase is Phase.FAILED} == {"FAILED", "STOPPED"}
    assert SERVICE_STATES["SUCCEEDED"].phase is Phase.SUCCEEDED
    assert SERVICE_STATES["ACCEPTED"].phase is Phase.PENDING
    assert SERVICE_STATES["STOPPED"].failure_category == "killed"
    assert CONTAINER_STATES["RUNNING_BUT_UNREADY"].phase is Phase.RUNNING
    assert CONTAINER_STATES["FAILED"].failure_category == "exit_code"
    assert CONTAINER_STATES["STOPPED"].failure_category == "killed"
    assert FINAL_STATUSES["ENDED"].failure_category == "killed"
    assert FINAL_STATUSES["UNDEFINED"].phase is Phase.UNKNOWN


# -- parse_job on the records a poll gathers ---------------------------------------------------

ADAPTER = YarnAdapter(YarnClusterConfig(name="yc", rm_url="http://rm:8088", user="alice"), data_dir="/tmp")
HANDLE = Handle(
    "u1",
    {"job_id": "sb-u1", "replicas": ["master-0", "worker-0", "worker-1"], "success_roles": ["Master"]},
)


def container(instance: str, state: str, n: int = 2, launched: int = 1) -> dict[str, Any]:
    return {
        "id": f"container_e01_1_0001_01_{n:06d}",
        "state": state,
        "component_instance_name": instance,
        "bare_host": "nm-1",
        "launch_time": launched,
    }


def record(
    service: str, containers: dict[str, str], components: dict[str, str] | None = None
) -> dict[str, Any]:
    comps: dict[str, list[dict[str, Any]]] = {"master": [], "worker": []}
    for n, (instance, state) in enumerate(containers.items()):
        comps[instance.rsplit("-", 1)[0]].append(container(instance, state, n + 2))
    states = components or {}
    return {
        "app": {"id": "application_1_0001", "state": "RUNNING", "finalStatus": "UNDEFINED"},
        "service": {
            "name": "sb-u1",
            "state": service,
            "components": [
                {"name": name, "state": states.get(name, "STABLE"), "containers": found}
                for name, found in comps.items()
            ],
        },
    }


READY = {"master-0": "READY", "worker-0": "READY", "worker-1": "READY"}


@pytest.mark.parametrize("state", sorted(SERVICE_STATES))
def test_every_service_state_with_running_containers(state: str) -> None:
    seen = ADAPTER.parse_job(HANDLE, record(state, READY))
    expected = SERVICE_STATES[state].phase
    assert seen.phase is expected, (state, seen)
    assert len(seen.replicas) == 3 and [r.name for r in seen.replicas] == HANDLE.state["replicas"]
    if expected is Phase.FAILED:
        assert seen.failure_category == SERVICE_STATES[state].failure_category and state in seen.message


@pytest.mark.parametrize("state", sorted(CONTAINER_STATES))
def test_every_container_state_in_a_stable_service(state: str) -> None:
    seen = ADAPTER.parse_job(HANDLE, record("STABLE", {**READY, "worker-1": state}))
    native = CONTAINER_STATES[state]
    replica = seen.replicas[2]
    assert replica.name == "worker-1" and replica.phase is native.phase
    if native.phase is Phase.FAILED:
        assert seen.phase is Phase.FAILED and seen.failure_category == native.failure_category
        assert seen.message.startswith("replica worker-1: container container_e01_1_0001_01_000004 on nm-1")
    elif native.phase is Phase.PENDING:
        assert seen.phase is Phase.PENDING
    else:
        assert seen.phase is Phase.RUNNING


@pytest.mark.parametrize("state", sorted(COMPONENT_STATES))
def test_every_component_state_of_a_component_without_containers(state: str) -> None:
    seen = ADAPTER.parse_job(HANDLE, record("STARTED", {"master-0": "READY"}, {"worker": state}))
    native = COMPONENT_STATES[state]
    workers = seen.replicas[1:]
    if native.phase in (Phase.SUCCEEDED, Phase.FAILED):
        assert {r.phase for r in workers} == {native.phase}
    else:
        assert {r.phase for r in workers} == {Phase.PENDING} and seen.phase is Phase.PENDING
    if native.phase is Phase.FAILED:
        assert seen.phase is Phase.FAILED and "component worker is FAILED" in seen.message


def test_gang_rules_while_running() -> None:
    assert ADAPTER.parse_job(HANDLE, record("STARTED", {"master-0": "READY"})).phase is Phase.PENDING
    done = ADAPTER.parse_job(HANDLE, record("STABLE", {**READY, "master-0": "SUCCEEDED"}))
    assert done.phase is Phase.SUCCEEDED  # the success role finished; the broker stops the rest
    unknown = ADAPTER.parse_job(HANDLE, record("STABLE", {**READY, "worker-0": "HIBERNATING"}))
    assert unknown.phase is Phase.UNKNOWN
    assert ADAPTER.parse_job(HANDLE, record("WHATEVER_NEW", READY)).phase is Phase.UNKNOWN
    # a relaunched instance (ON_FAILURE): the newest container of the instance counts
    rec = record("STABLE", READY)
    rec["service"]["components"][1]["containers"].append(container("worker-1", "FAILED", 9, launched=0))
    assert ADAPTER.parse_job(HANDLE, rec).phase is Phase.RUNNING


@pytest.mark.parametrize("app_state", sorted(APP_STATES))
@pytest.mark.parametrize("final", sorted(FINAL_STATUSES))
def test_application_reports_without_a_service(app_state: str, final: str) -> None:
    app = {"id": "application_1_0001", "state": app_state, "finalStatus": final, "diagnostics": "why\nmore"}
    seen = ADAPTER.parse_job(HANDLE, {"app": app, "service": None})
    if app_state in EARLY_APP_STATES or app_state == "RUNNING":
        assert seen.phase is Phase.PENDING
        return
    expected = FINAL_STATUSES[final] if final != "UNDEFINED" else APP_STATES[app_state]
    assert seen.phase is expected.phase and seen.failure_category == expected.failure_category
    if seen.phase is Phase.FAILED:
        assert seen.message == f"YARN application application_1_0001 {app_state}/{final}: why"


def test_a_service_answer_without_components_is_never_a_verdict() -> None:
    """The listing said RUNNING, then the AM exited: the Services API says STOPPED even for a success."""
    running = {"id": "application_1_0001", "state": "RUNNING", "finalStatus": "UNDEFINED"}
    for state, phase in (("STOPPED", Phase.UNKNOWN), ("FAILED", Phase.UNKNOWN), ("STARTED", Phase.PENDING)):
        seen = ADAPTER.parse_job(HANDLE, {"app": running, "service": {"name": "sb-u1", "state": state}})
        assert seen.phase is phase, (state, seen)
