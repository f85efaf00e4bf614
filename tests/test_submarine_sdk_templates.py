"""The real Submarine SDK's generated ``ExperimentTemplateApi``, ``ExperimentTemplatesApi`` and
``ExperimentApi.submit_experiment_template`` (0.8.0, in the SDK venv of
:mod:`tests.test_submarine_sdk`) against a real broker: a template's whole life, and an experiment
submitted from it that runs with the values given."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import Broker
from tests.test_submarine_sdk import sdk_python  # noqa: F401 - the venv fixture
from tests.test_submarine_sdk_registry import run_script

pytestmark = pytest.mark.sdk

# argv: broker URL, the replicas' python, the template's name.
LIFECYCLE = textwrap.dedent(
    """
    import json
    import shlex
    import sys
    import time
    import traceback

    from submarine.client.api.experiment_api import ExperimentApi
    from submarine.client.api.experiment_template_api import ExperimentTemplateApi
    from submarine.client.api.experiment_templates_api import ExperimentTemplatesApi
    from submarine.client.exceptions import ApiException
    from submarine.client.models import (
        EnvironmentSpec,
        ExperimentMeta,
        ExperimentSpec,
        ExperimentTaskSpec,
        ExperimentTemplateParamSpec,
        ExperimentTemplateSpec,
        ExperimentTemplateSubmit,
    )
    from submarine.client.utils.api_utils import get_api_client

    host, python, name = sys.argv[1], sys.argv[2], sys.argv[3]
    client = get_api_client(host)
    one, many, experiments = ExperimentTemplateApi(client), ExperimentTemplatesApi(client), ExperimentApi(client)
    out = {"steps": []}


    def step(what):
        out["steps"].append(what)


    def refused(call):
        try:
            call()
        except ApiException as exc:
            return {"status": exc.status, "body": json.loads(exc.body)}
        return None


    def template(description):
        code = "print('lr={{learning_rate}}')"
        meta = ExperimentMeta(
            name="{{experiment_name}}", framework="python", cmd=shlex.quote(python) + " -c " + shlex.quote(code)
        )
        spec = ExperimentSpec(
            meta=meta,
            environment=EnvironmentSpec(image="python:3.11"),
            spec={"Worker": ExperimentTaskSpec(replicas=1, resources="cpu=0.1,memory=64M")},
        )
        params = [
            ExperimentTemplateParamSpec(name="learning_rate", value="0.1", required="true", description="lr"),
            ExperimentTemplateParamSpec(name="experiment_name", required="true"),
        ]
        return ExperimentTemplateSpec(
            name=name, author="sdk", description=description, parameters=params, experiment_spec=spec
        )


    try:
        step("create")
        out["created"] = one.create_experiment_template(experiment_template_spec=template("first")).result
        out["duplicate"] = refused(
            lambda: one.create_experiment_template(experiment_template_spec=template("again"))
        )
        step("read")
        out["got"] = one.get_experiment_template(name).result
        out["listed"] = many.list_experiment_template().result
        step("patch")
        out["patched"] = many.update_experiment_template(
            name, experiment_template_spec=template("second")
        ).result
        step("submit")
        submit = ExperimentTemplateSubmit(name=name, params={"learning_rate": "0.02", "experiment_name": "sdk-run"})
        out["experiment"] = experiments.submit_experiment_template(name, experiment_template_submit=submit).result
        out["illegal"] = refused(
            lambda: experiments.submit_experiment_template(
                name, experiment_template_submit=ExperimentTemplateSubmit(name=name, params={"lr": "1"})
            )
        )
        experiment_id = out["experiment"]["experimentId"]
        deadline = time.time() + 120
        while time.time() < deadline:
            status = experiments.get_experiment(experiment_id).result["status"]
            if status in ("Succeeded", "Failed"):
                break
            time.sleep(0.5)
        out["status"] = status
        out["log"] = experiments.get_log(experiment_id).result
        step("delete")
        out["deleted"] = many.delete_experiment_template(name).result
        out["gone"] = refused(lambda: one.get_experiment_template(name))
        step("done")
    except Exception:
        out["error"] = traceback.format_exc()
    print("SDK_RESULT " + json.dumps(out), flush=True)
    """
)


def test_the_sdk_template_apis_through_a_templates_life(sdk_python: Path, broker: Broker) -> None:  # noqa: F811
    out = run_script(sdk_python, LIFECYCLE, broker, sys.executable, "sdk-mnist")

    created = out["created"]
    assert set(created["experimentTemplateId"]) == {"id", "serverTimestamp"}
    spec = created["experimentTemplateSpec"]
    assert (spec["name"], spec["author"], spec["description"]) == ("sdk-mnist", "sdk", "first")
    assert spec["parameters"][0] == {
        "name": "learning_rate",
        "value": "0.1",
        "required": "true",
        "description": "lr",
    }
    assert spec["experimentSpec"]["meta"]["cmd"].endswith("-c 'print('\"'\"'lr={{learning_rate}}'\"'\"')'")
    assert out["duplicate"]["status"] == 409 and out["duplicate"]["body"]["success"] is None

    assert out["got"]["experimentTemplateId"] is None
    assert out["got"]["experimentTemplateSpec"]["description"] == "first"
    assert [t["experimentTemplateSpec"]["name"] for t in out["listed"]] == ["sdk-mnist"]
    assert out["patched"]["experimentTemplateSpec"]["description"] == "second"

    experiment = out["experiment"]
    assert experiment["spec"]["meta"]["name"] == "sdk-run"
    assert experiment["template"]["params"] == {"learning_rate": "0.02", "experiment_name": "sdk-run"}
    assert out["illegal"]["status"] == 400
    assert out["illegal"]["body"]["message"].startswith("Parameters contains illegal key: [lr]")
    assert out["status"] == "Succeeded", broker.log()[-3000:]
    lines = [line for pod in out["log"]["logContent"] for line in pod["podLog"]]
    assert "lr=0.02" in lines

    assert out["deleted"]["experimentTemplateSpec"]["name"] == "sdk-mnist"
    assert out["gone"]["status"] == 404
    assert out["gone"]["body"]["message"] == "ExperimentTemplate not found."
