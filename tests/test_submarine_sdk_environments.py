"""The real Submarine SDK's ``EnvironmentClient`` (0.8.0, in the SDK venv of
:mod:`tests.test_submarine_sdk`), unchanged, through an environment's life on a real broker:
create, list, get, update (a new revision), delete, and the errors it sees."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support import Broker
from tests.test_submarine_sdk import sdk_python  # noqa: F401 - the venv fixture
from tests.test_submarine_sdk_registry import run_script

pytestmark = pytest.mark.sdk

LIFECYCLE = textwrap.dedent(
    """
    import json
    import sys
    import traceback

    from submarine.client.api.environment_client import EnvironmentClient
    from submarine.client.exceptions import ApiException
    from submarine.client.models.environment_spec import EnvironmentSpec
    from submarine.client.models.kernel_spec import KernelSpec

    host = sys.argv[1]
    client = EnvironmentClient(host=host)
    out = {"steps": []}


    def step(what):
        out["steps"].append(what)


    def refused(call):
        try:
            call()
        except ApiException as exc:
            return {"status": exc.status, "body": json.loads(exc.body)}
        return None


    kernel = KernelSpec(
        name="team_default_python_3.7",
        channels=["defaults"],
        conda_dependencies=[],
        pip_dependencies=["numpy==1.26.4", "requests"],
    )
    spec = EnvironmentSpec(name="sdk-env", docker_image="python:3.11-slim", kernel_spec=kernel)
    try:
        step("create")
        out["created"] = client.create_environment(environment_spec=spec)
        out["duplicate"] = refused(lambda: client.create_environment(environment_spec=spec))
        step("list")
        out["listed"] = [e["environmentSpec"]["name"] for e in client.list_environments()]
        step("get")
        out["got"] = client.get_environment("sdk-env")
        step("update")
        kernel.pip_dependencies = ["numpy==2.0.0"]
        out["updated"] = client.update_environment("sdk-env", spec)
        step("delete")
        out["deleted"] = client.delete_environment("sdk-env")
        out["missing"] = refused(lambda: client.get_environment("sdk-env"))
    except Exception:
        out["error"] = traceback.format_exc()
    print("SDK_RESULT " + json.dumps(out), flush=True)
    """
)


def test_the_environment_client_through_an_environments_life(sdk_python: Path, broker: Broker) -> None:  # noqa: F811
    out = run_script(sdk_python, LIFECYCLE, broker)

    created = out["created"]
    assert created["environmentId"].startswith("environment_")
    assert created["environmentSpec"]["name"] == "sdk-env"
    assert created["environmentSpec"]["dockerImage"] == "python:3.11-slim"
    assert created["environmentSpec"]["kernelSpec"]["pipDependencies"] == ["numpy==1.26.4", "requests"]
    assert created["revision"] == 1
    assert out["duplicate"]["status"] == 409 and "sdk-env" in out["duplicate"]["body"]["message"]
    assert out["listed"] == ["notebook-env", "sdk-env"]
    assert out["got"]["environmentId"] == created["environmentId"]
    assert out["got"]["environmentSpec"] == created["environmentSpec"]
    updated = out["updated"]
    assert (updated["environmentId"], updated["revision"]) == (created["environmentId"], 2)
    assert updated["environmentSpec"]["kernelSpec"]["pipDependencies"] == ["numpy==2.0.0"]
    assert updated["hash"] != created["hash"]
    assert out["deleted"]["environmentSpec"]["name"] == "sdk-env"
    assert out["missing"]["status"] == 404
    assert out["missing"]["body"]["message"] == "Environment not found."
