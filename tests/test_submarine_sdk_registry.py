"""The real Submarine SDK's generated ``RegisteredModelApi`` and ``ModelVersionApi`` (0.8.0, in
the SDK venv of :mod:`tests.test_submarine_sdk`) through a model's whole life on a real broker."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.model_folders import model_folder
from tests.support import Broker
from tests.test_submarine_sdk import SCRIPT_TIMEOUT, sdk_python  # noqa: F401 - the venv fixture

pytestmark = pytest.mark.sdk

RESULT_MARK = "SDK_RESULT "

# argv: broker URL, the model folder (baseDir), the model's name.
LIFECYCLE = textwrap.dedent(
    '''
    import json
    import sys
    import traceback

    from submarine.client.api.model_version_api import ModelVersionApi
    from submarine.client.api.registered_model_api import RegisteredModelApi
    from submarine.client.exceptions import ApiException
    from submarine.client.models import ModelVersionEntity, RegisteredModelEntity
    from submarine.client.utils.api_utils import get_api_client

    host, base_dir, name = sys.argv[1], sys.argv[2], sys.argv[3]
    client = get_api_client(host)
    models, versions = RegisteredModelApi(client), ModelVersionApi(client)
    out = {"steps": []}


    def step(what):
        out["steps"].append(what)


    def refused(call):
        try:
            call()
        except ApiException as exc:
            return {"status": exc.status, "body": json.loads(exc.body)}
        return None


    def entity(result, kind):
        """The result read into the SDK's own entity class, as a typed client would."""
        made = client._ApiClient__deserialize(result, kind)
        return {
            "name": made.name,
            "tags": made.tags,
            "creation_time": type(made.creation_time).__name__,
            "last_updated_time": type(made.last_updated_time).__name__,
        }


    try:
        out["ping"] = [models.ping3(), versions.ping1()]
        step("create model")
        created = models.create_registered_model(
            registered_model_entity=RegisteredModelEntity(name=name, description="digits", tags=["a", "b"])
        )
        out["created"] = created.result
        out["duplicate"] = refused(
            lambda: models.create_registered_model(registered_model_entity=RegisteredModelEntity(name=name))
        )
        step("tags")
        models.create_registered_model_tag(name=name, tag="c")
        models.delete_registered_model_tag(name=name, tag="a")
        got = models.get_registered_model(name).result
        out["model"] = got
        out["model_entity"] = entity(got, "RegisteredModelEntity")
        out["listed"] = [m["name"] for m in models.list_registered_models().result]
        step("versions")
        for description in ("first", "second"):
            versions.create_model_version(
                base_dir=base_dir,
                model_version_entity=ModelVersionEntity(name=name, description=description, tags=["candidate"]),
            )
        out["versions"] = versions.list_model_versions(name).result
        one = versions.get_model_version(name, 1).result
        out["version_entity"] = entity(one, "ModelVersionEntity")
        versions.create_model_version_tag(name=name, version=1, tag="checked")
        versions.delete_model_version_tag(name=name, version=1, tag="candidate")
        step("production")
        versions.update_model_version(
            model_version_entity=ModelVersionEntity(name=name, version=1, current_stage="Production")
        )
        out["version_1"] = versions.get_model_version(name, 1).result
        out["delete_in_production"] = refused(lambda: models.delete_registered_model(name))
        out["still_there"] = models.get_registered_model(name).result["name"]
        step("rename")
        models.update_registered_model(
            name, registered_model_entity=RegisteredModelEntity(name=name + "-v2", description="renamed")
        )
        name = name + "-v2"
        out["renamed"] = models.get_registered_model(name).result
        out["versions_after_rename"] = [v["version"] for v in versions.list_model_versions(name).result]
        step("archive and delete")
        versions.update_model_version(
            model_version_entity=ModelVersionEntity(
                name=name, version=1, current_stage="Archived", description="retired"
            )
        )
        out["archived"] = versions.get_model_version(name, 1).result
        versions.delete_model_version(name, 2)
        out["after_version_delete"] = [v["version"] for v in versions.list_model_versions(name).result]
        models.delete_registered_model(name)
        out["gone"] = refused(lambda: models.get_registered_model(name))
        step("done")
    except Exception:
        out["error"] = traceback.format_exc()
    print("SDK_RESULT " + json.dumps(out), flush=True)
    '''
)


def run_script(python: Path, script: str, broker: Broker, *args: str) -> dict[str, Any]:
    """Run ``script`` in the SDK's venv with the broker's URL and ``args``; what it printed."""
    try:
        done = subprocess.run(
            [str(python), "-c", script, broker.url, *args],
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the SDK script did not finish in {SCRIPT_TIMEOUT}s\n{exc.stdout}\n{exc.stderr}")
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    assert done.returncode == 0 and lines, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK) :])
    assert result.get("error") is None, (
        f"the SDK raised after {result['steps']}:\n{result['error']}\nbroker log:\n{broker.log()[-4000:]}"
    )
    return result


def test_the_sdk_registry_apis_through_a_models_life(sdk_python: Path, broker: Broker) -> None:  # noqa: F811
    base_dir = model_folder(broker.url)
    out = run_script(sdk_python, LIFECYCLE, broker, base_dir, "sdk-mnist")

    # The generated ping methods read the envelope as a 'str': its text holds the result.
    assert all("'result': 'Pong'" in ping for ping in out["ping"]), out["ping"]
    assert out["created"] is None
    assert out["duplicate"]["status"] == 409
    assert out["duplicate"]["body"]["success"] is None and "sdk-mnist" in out["duplicate"]["body"]["message"]
    assert out["model"]["name"] == "sdk-mnist" and out["model"]["description"] == "digits"
    assert out["model"]["tags"] == ["b", "c"]
    assert out["model_entity"] == {
        "name": "sdk-mnist",
        "tags": ["b", "c"],
        "creation_time": "datetime",
        "last_updated_time": "datetime",
    }
    assert "sdk-mnist" in out["listed"]

    listed = out["versions"]
    assert [v["version"] for v in listed] == [1, 2]
    assert [v["description"] for v in listed] == ["first", "second"]
    first = listed[0]
    assert first["name"] == "sdk-mnist" and first["currentStage"] == "None"
    assert first["id"] == "9b1c0ffee" and first["modelType"] == "tensorflow"
    assert first["tags"] == ["candidate"]
    assert out["version_entity"]["creation_time"] == "datetime"
    assert out["version_1"]["currentStage"] == "Production"
    assert out["version_1"]["tags"] == ["checked"]

    assert out["delete_in_production"]["status"] == 406
    assert out["delete_in_production"]["body"]["code"] == 406
    assert "Production" in out["delete_in_production"]["body"]["message"]
    assert out["still_there"] == "sdk-mnist"

    assert out["renamed"]["name"] == "sdk-mnist-v2" and out["renamed"]["description"] == "renamed"
    assert out["versions_after_rename"] == [1, 2]
    assert out["archived"]["currentStage"] == "Archived" and out["archived"]["description"] == "retired"
    assert out["after_version_delete"] == [1]
    assert out["gone"]["status"] == 404 and out["gone"]["body"]["success"] is None

    # What the broker recorded of it, read back through its history endpoint.
    history = broker.client.get("/registered-model/sdk-mnist-v2/history")
    assert history.status_code == 200, history.text
    actions = [e["action"] for e in history.json()["result"]]
    assert actions[0] == "model_created" and actions[-1] == "model_deleted"
    assert actions.count("stage_changed") == 2 and actions.count("model_renamed") == 1
    assert actions.count("version_created") == 2 and actions.count("version_deleted") == 1
