"""The real Apache Submarine SDK (``apache-submarine==0.8.0``) driving a real broker.

The SDK pins SQLAlchemy < 2, so it lives in its own virtual environment, built once and cached
under ``~/.cache/submarine-broker-tests/sdk-venv-0.8.0`` (rebuilt when its python cannot
``import submarine``). A script run by that venv's interpreter uses the SDK's ``ExperimentClient``
and models exactly as a Submarine user would, and prints what it saw as JSON for the asserts here.

The venv is built in a temporary folder beside the cache and renamed into place, so a half-built
venv is never reused; its console scripts keep the temporary path in their shebangs, so use
``<venv>/bin/python -m pip`` rather than ``<venv>/bin/pip`` on the cached copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Broker, python_spec

pytestmark = pytest.mark.sdk

SDK_REQUIREMENT = "apache-submarine==0.8.0"
SDK_VENV = Path.home() / ".cache" / "submarine-broker-tests" / "sdk-venv-0.8.0"
PIP_TIMEOUT = 900
SCRIPT_TIMEOUT = 240
RESULT_MARK = "SDK_RESULT "
KNOWN_LINE = "hello from the submarine sdk"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _sdk_importable(venv: Path) -> bool:
    python = _venv_python(venv)
    if not python.exists():
        return False
    try:
        probe = subprocess.run(
            [str(python), "-c", "import submarine.client.api.experiment_client"],
            capture_output=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _run_step(argv: list[str], what: str, timeout: float) -> None:
    """Run one build step; fail the test with its whole output if it does not succeed."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{what} timed out after {timeout:g}s:\n{exc.stdout or ''}\n{exc.stderr or ''}")
    if done.returncode != 0:
        pytest.fail(f"{what} failed with exit code {done.returncode}:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The interpreter of a venv holding the Submarine SDK: the cached one, or one built now."""
    if _sdk_importable(SDK_VENV):
        return _venv_python(SDK_VENV)
    SDK_VENV.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".sdk-venv-build-", dir=SDK_VENV.parent))
    build.chmod(0o755)
    try:
        _run_step([sys.executable, "-m", "venv", "--clear", str(build)], "python -m venv", 300)
        _run_step(
            [str(build / "bin" / "pip"), "install", SDK_REQUIREMENT],
            f"pip install {SDK_REQUIREMENT}",
            PIP_TIMEOUT,
        )
        if not _sdk_importable(build):
            pytest.fail(f"{SDK_REQUIREMENT} installed into {build} but 'import submarine' fails there")
        if SDK_VENV.exists() or SDK_VENV.is_symlink():
            if _sdk_importable(SDK_VENV):  # another run finished first: use its venv
                return _venv_python(SDK_VENV)
            shutil.rmtree(SDK_VENV, ignore_errors=True)
        try:
            os.rename(build, SDK_VENV)
        except OSError:
            if not _sdk_importable(SDK_VENV):
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    if not _sdk_importable(SDK_VENV):
        pytest.fail(f"the SDK venv at {SDK_VENV} cannot import submarine after being moved into place")
    return _venv_python(SDK_VENV)


# The script the SDK's venv runs: argv = broker URL, the broker's python, the known line.
SDK_SCRIPT = textwrap.dedent(
    '''
    import json
    import logging
    import shlex
    import sys
    import threading
    import time
    import traceback

    from submarine.client.api.experiment_client import ExperimentClient
    from submarine.client.exceptions import ApiException
    from submarine.client.models import EnvironmentSpec, ExperimentMeta, ExperimentSpec, ExperimentTaskSpec

    host, python, known_line = sys.argv[1], sys.argv[2], sys.argv[3]
    messages = []


    class Capture(logging.Handler):
        """What the SDK logs (get_log and wait_for_finish print log lines through logging)."""

        def emit(self, record):
            messages.append(record.getMessage())


    logging.getLogger().addHandler(Capture())
    logging.getLogger().setLevel(logging.INFO)
    out = {"steps": []}


    def step(name):
        out["steps"].append(name)
        print("step:", name, flush=True)


    def make_spec(name, code, framework, roles, tags):
        cmd = shlex.quote(python) + " -c " + shlex.quote(code)
        meta = ExperimentMeta(
            name=name,
            namespace="default",
            framework=framework,
            cmd=cmd,
            env_vars={"SDK_MARK": "from-sdk"},
            tags=tags,
        )
        tasks = {
            role: ExperimentTaskSpec(replicas=replicas, resources="cpu=0.1,memory=64M")
            for role, replicas in roles.items()
        }
        return ExperimentSpec(meta=meta, environment=EnvironmentSpec(image="python:3.11"), spec=tasks)


    def ids(listed):
        return [e["experimentId"] for e in listed]


    def status_after_delete(client, experiment_id):
        try:
            return {"found": client.get_experiment(experiment_id)}
        except ApiException as exc:
            return {"status": exc.status}


    try:
        client = ExperimentClient(host=host)

        # 1. A job that succeeds: create, get, list, wait, logs, delete.
        step("create")
        code = "import os, time; print(%r, os.environ['RANK'], flush=True); time.sleep(1)" % known_line
        spec = make_spec("sdk-pytorch", code, "pytorch", {"Master": 1, "Worker": 1}, ["sdk", "e2e"])
        created = client.create_experiment(experiment_spec=spec)
        out["created"] = created
        exp_id = created["experimentId"]

        step("get")
        out["got"] = client.get_experiment(exp_id)

        step("list")
        out["listed_ids"] = ids(client.list_experiments())
        out["listed_log_ids"] = [e["experimentId"] for e in client.list_log(None)]

        step("wait_for_finish")
        mark = len(messages)
        failure = []

        def wait():
            try:
                client.wait_for_finish(exp_id, polling_interval=1)
            except Exception:
                failure.append(traceback.format_exc())

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        # wait_for_finish never returns on Failed: watch the status beside it to give up early.
        deadline = time.monotonic() + 90
        out["wait_gave_up_on"] = None
        while waiter.is_alive() and time.monotonic() < deadline:
            waiter.join(timeout=1)
            seen = client.get_experiment(exp_id)
            if waiter.is_alive() and seen["status"] == "Failed":
                waiter.join(timeout=3)
                if waiter.is_alive():
                    out["wait_gave_up_on"] = seen
                    break
        out["wait_returned"] = not waiter.is_alive() and not failure
        out["wait_failure"] = failure[0] if failure else None
        out["wait_messages"] = messages[mark:]

        step("get after wait")
        out["finished"] = client.get_experiment(exp_id)

        step("list by status")
        out["listed_succeeded_ids"] = ids(client.list_experiments(status="Succeeded"))
        out["listed_running_ids"] = ids(client.list_experiments(status="Running"))

        step("get_log")
        mark = len(messages)
        out["get_log_returned"] = client.get_log(exp_id)
        out["get_log_messages"] = messages[mark:]
        mark = len(messages)
        client.get_log(exp_id, onlyMaster=True)
        out["get_log_master_messages"] = messages[mark:]

        step("delete")
        out["deleted"] = client.delete_experiment(exp_id)
        out["after_delete"] = status_after_delete(client, exp_id)
        out["listed_ids_after_delete"] = ids(client.list_experiments())

        # 2. A long job deleted while it runs.
        step("create long")
        long_spec = make_spec(
            "sdk-tensorflow", "import time; print('sleeping', flush=True); time.sleep(120)",
            "tensorflow", {"Worker": 2}, ["sdk", "long"],
        )
        long_created = client.create_experiment(experiment_spec=long_spec)
        out["long_created"] = long_created
        long_id = long_created["experimentId"]

        step("wait running")
        deadline = time.monotonic() + 60
        seen = []
        while time.monotonic() < deadline:
            status = client.get_experiment(long_id)["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            if status in ("Running", "Succeeded", "Failed"):
                break
            time.sleep(0.3)
        out["long_statuses"] = seen

        step("delete long")
        out["long_deleted"] = client.delete_experiment(long_id)
        out["long_after_delete"] = status_after_delete(client, long_id)
        step("done")
    except Exception:
        out["error"] = traceback.format_exc()

    print("SDK_RESULT " + json.dumps(out), flush=True)
    '''
)


def _run_sdk_script(python: Path, broker: Broker, folder: Path) -> dict[str, Any]:
    script = folder / "sdk_script.py"
    script.write_text(SDK_SCRIPT)
    argv = [str(python), str(script), broker.url, sys.executable, KNOWN_LINE]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT, cwd=folder)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"the SDK script did not finish in {SCRIPT_TIMEOUT}s\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}"
            f"\nbroker log:\n{broker.log()[-4000:]}"
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    assert done.returncode == 0 and lines, (
        f"SDK script exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    result = json.loads(lines[-1][len(RESULT_MARK) :])
    assert result.get("error") is None, (
        f"the SDK raised after steps {result['steps']}:\n{result['error']}\nstderr:\n{done.stderr[-4000:]}"
        f"\nbroker log:\n{broker.log()[-4000:]}"
    )
    return result


def _deleted_on_server(broker: Broker, experiment_id: str) -> dict[str, Any]:
    """The broker's own view of a deleted experiment (kept as history, listed with status=Deleted)."""
    answer = broker.client.get("/experiment", params={"status": "Deleted"})
    assert answer.status_code == 200, answer.text
    found = [e for e in answer.json()["result"] if e["experimentId"] == experiment_id]
    assert len(found) == 1, f"{experiment_id} not listed as Deleted: {answer.text}"
    return found[0]


def test_submarine_sdk_drives_the_broker(sdk_python: Path, broker: Broker, tmp_path: Path) -> None:
    result = _run_sdk_script(sdk_python, broker, tmp_path)

    # The succeeding job, through the SDK.
    created = result["created"]
    exp_id = created["experimentId"]
    assert exp_id.startswith("experiment-")
    assert created["status"] == "Accepted"
    assert result["got"]["experimentId"] == exp_id
    assert exp_id in result["listed_ids"]
    assert exp_id in result["listed_log_ids"]

    assert result["wait_returned"], (
        f"wait_for_finish did not return: {result['wait_failure'] or result['wait_gave_up_on']}"
        f"\nbroker log:\n{broker.log()[-4000:]}"
    )
    assert any(KNOWN_LINE in m for m in result["wait_messages"]), result["wait_messages"]
    finished = result["finished"]
    assert finished["experimentId"] == exp_id and finished["status"] == "Succeeded", finished
    assert exp_id in result["listed_succeeded_ids"]
    assert exp_id not in result["listed_running_ids"]

    # get_log prints every pod's name and lines; onlyMaster only the first pod, the master.
    assert result["get_log_returned"] is None
    log_messages = result["get_log_messages"]
    assert any(f"{exp_id}-master-0" in m for m in log_messages), log_messages
    assert any(f"{exp_id}-worker-0" in m for m in log_messages), log_messages
    assert f"{KNOWN_LINE} 0" in log_messages and f"{KNOWN_LINE} 1" in log_messages, log_messages
    master_only = result["get_log_master_messages"]
    assert f"{KNOWN_LINE} 0" in master_only and f"{KNOWN_LINE} 1" not in master_only, master_only

    deleted = result["deleted"]
    assert deleted["experimentId"] == exp_id and deleted["status"] == "Deleted", deleted
    assert result["after_delete"] == {"status": 404}
    assert exp_id not in result["listed_ids_after_delete"]
    assert broker.client.get(f"/experiment/{exp_id}").status_code == 404

    # What the SDK sent is what the broker stored.
    for seen in (created, _deleted_on_server(broker, exp_id)):
        meta = seen["spec"]["meta"]
        assert meta["name"] == "sdk-pytorch"
        assert meta["framework"] == "pytorch"
        assert meta["tags"] == ["sdk", "e2e"]
        assert meta["namespace"] == "default"
        assert meta["envVars"] == {"SDK_MARK": "from-sdk"}
        assert meta["cmd"].startswith(sys.executable) or meta["cmd"].startswith(f"'{sys.executable}'")
        assert set(seen["spec"]["spec"]) == {"Master", "Worker"}
        assert seen["spec"]["spec"]["Worker"]["replicas"] == 1
        assert seen["spec"]["environment"]["image"] == "python:3.11"

    # The long job, deleted while running.
    long_created = result["long_created"]
    long_id = long_created["experimentId"]
    assert long_id != exp_id
    assert long_created["status"] == "Accepted"
    assert result["long_statuses"][-1] == "Running", result["long_statuses"]
    long_deleted = result["long_deleted"]
    assert long_deleted["experimentId"] == long_id and long_deleted["status"] == "Deleted", long_deleted
    assert result["long_after_delete"] == {"status": 404}
    assert broker.client.get(f"/experiment/{long_id}").status_code == 404
    long_meta = _deleted_on_server(broker, long_id)["spec"]["meta"]
    assert (long_meta["name"], long_meta["framework"], long_meta["tags"]) == (
        "sdk-tensorflow",
        "tensorflow",
        ["sdk", "long"],
    )
    assert httpx.get(f"{broker.url}/api/v1/experiment/ping", timeout=10).status_code == 200


TOKEN_SCRIPT = """
import json, sys
from submarine.client.api.experiment_client import ExperimentClient
from submarine.client.exceptions import ApiException

url, token = sys.argv[1], sys.argv[2]
out = {}
anonymous = ExperimentClient(host=url)
try:
    anonymous.list_experiments()
    out["anonymous"] = "allowed"
except ApiException as exc:
    out["anonymous"] = exc.status
client = ExperimentClient(host=url)
client.experiment_api.api_client.set_default_header("Authorization", "Bearer " + token)
out["listed"] = [e["experimentId"] for e in client.list_experiments()]
print(json.dumps(out))
"""


@pytest.mark.sdk
def test_submarine_sdk_with_a_token_as_the_readme_says(sdk_python: Path, tmp_path: Path) -> None:
    from tests.test_permissions import make_users

    broker = Broker(tmp_path / "secured", auth="token")
    tokens = make_users(broker)
    broker.start()
    try:
        broker.client.headers["Authorization"] = f"Bearer {tokens['alice']}"
        mine = broker.submit(python_spec("print('x')"))["experimentId"]
        run = subprocess.run(
            [str(sdk_python), "-c", TOKEN_SCRIPT, broker.url, tokens["alice"]],
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
        )
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["anonymous"] == 401
        assert result["listed"] == [mine]
    finally:
        broker.close()


NOTEBOOK_SCRIPT = """
import json, sys, time
from submarine.client.api.notebook_client import NotebookClient
from submarine.client.exceptions import ApiException
from submarine.client.models import EnvironmentSpec, NotebookMeta, NotebookPodSpec, NotebookSpec

client = NotebookClient(host=sys.argv[1])
out = {}
spec = NotebookSpec(
    meta=NotebookMeta(name="sdk-nb", namespace="default"),
    environment=EnvironmentSpec(name="notebook-env"),
    spec=NotebookPodSpec(env_vars={"FROM": "sdk"}, resources="cpu=0.2,memory=256Mi"),
)
created = client.create_notebook(spec)
out["created"] = created
nid = created["notebookId"]
seen = []
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    status = client.get_notebook(nid)["status"]
    if not seen or seen[-1] != status:
        seen.append(status)
    if status in ("running", "failed"):
        break
    time.sleep(0.3)
out["statuses"] = seen
out["listed"] = [n["notebookId"] for n in client.list_notebooks("4291d7da9005377ec9aec4a71ea837f")]
try:
    client.create_notebook(spec)
    out["duplicate"] = "accepted"
except ApiException as exc:
    out["duplicate"] = exc.status
# Stopped through the broker's extension (the SDK has no stop): the SDK reads the broker's
# 'stopped' status in get and list like any other.
import urllib.request
stop = urllib.request.Request(f"{sys.argv[1]}/api/v1/notebook/{nid}/stop", method="POST")
urllib.request.urlopen(stop, timeout=60).read()
out["stopped"] = client.get_notebook(nid)
out["listed_stopped"] = [n["status"] for n in client.list_notebooks("4291d7da9005377ec9aec4a71ea837f")]
out["deleted"] = client.delete_notebook(nid)
try:
    client.get_notebook(nid)
    out["after_delete"] = "found"
except ApiException as exc:
    out["after_delete"] = exc.status
print(json.dumps(out))
"""


def test_submarine_sdk_manages_notebooks(sdk_python: Path, broker: Broker) -> None:
    run = subprocess.run(
        [str(sdk_python), "-c", NOTEBOOK_SCRIPT, broker.url],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\nbroker log:\n{broker.log()[-3000:]}"
    out = json.loads(run.stdout.strip().splitlines()[-1])
    created = out["created"]
    assert created["notebookId"].startswith("notebook_") and created["status"] == "waiting"
    assert created["url"] == "/notebook/default/sdk-nb/lab"
    assert created["spec"]["spec"]["envVars"] == {"FROM": "sdk"}
    assert out["statuses"][-1] == "running", out["statuses"]
    assert set(out["statuses"]) <= {"waiting", "creating", "running"}
    assert out["listed"] == [created["notebookId"]]
    assert out["duplicate"] == 409
    assert out["stopped"]["status"] == "stopped" and out["stopped"]["failureCategory"] == "killed"
    assert out["stopped"]["reason"] == "stopped by admin"
    assert out["listed_stopped"] == ["stopped"]
    assert out["deleted"]["status"] == "terminating"
    assert out["after_delete"] == 404


PATCH_SCRIPT = """
import json, pathlib, shlex, sys, time
from submarine.client.api.experiment_client import ExperimentClient
from submarine.client.exceptions import ApiException
from submarine.client.models import EnvironmentSpec, ExperimentMeta, ExperimentSpec, ExperimentTaskSpec

host, python, release = sys.argv[1], sys.argv[2], sys.argv[3]


def make_spec(name, code, tags):
    meta = ExperimentMeta(
        name=name, namespace="default", framework="python", cmd=shlex.quote(python) + " -c " + shlex.quote(code),
        tags=tags,
    )
    task = ExperimentTaskSpec(replicas=1, resources="cpu=1,memory=64M")
    return ExperimentSpec(meta=meta, environment=EnvironmentSpec(image="python:3.11"), spec={"Worker": task})


def wait_status(client, experiment_id, wanted):
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        status = client.get_experiment(experiment_id)["status"]
        if status in wanted:
            return status
        time.sleep(0.2)
    return status


client = ExperimentClient(host=host)
out = {}
hold = "import pathlib, time\\nwhile not pathlib.Path(%r).exists(): time.sleep(0.05)" % release
holder = client.create_experiment(experiment_spec=make_spec("holder", hold, ["a"]))["experimentId"]
out["holder_status"] = wait_status(client, holder, ("Running", "Failed", "Succeeded"))
waiting = client.create_experiment(experiment_spec=make_spec("waiting", "print('old')", []))["experimentId"]
out["waiting"] = waiting
out["patched"] = client.patch_experiment(waiting, make_spec("waiting", "print('new')", ["v2"]))
out["retagged"] = client.patch_experiment(holder, make_spec("holder", hold, ["a", "b"]))
try:
    client.patch_experiment(holder, make_spec("holder", "print(3)", ["a", "b"]))
    out["refused"] = "accepted"
except ApiException as exc:
    out["refused"] = {"status": exc.status, "message": json.loads(exc.body)["message"]}
pathlib.Path(release).touch()
out["waiting_status"] = wait_status(client, waiting, ("Succeeded", "Failed"))
print(json.dumps(out))
"""


def test_submarine_sdk_patches_experiments(sdk_python: Path, broker_factory, tmp_path: Path) -> None:
    """patch_experiment replaces the spec of an Accepted experiment and only the tags of a running one."""
    broker = broker_factory(clusters={"local": {"kind": "local", "capacity": {"cpu": 1}}})
    release = tmp_path / "release"
    run = subprocess.run(
        [str(sdk_python), "-c", PATCH_SCRIPT, broker.url, sys.executable, str(release)],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\nbroker log:\n{broker.log()[-3000:]}"
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["holder_status"] == "Running"
    patched = out["patched"]
    assert patched["experimentId"] == out["waiting"] and patched["status"] == "Accepted"
    cmd = patched["spec"]["meta"]["cmd"]
    assert "new" in cmd and "old" not in cmd and patched["spec"]["meta"]["tags"] == ["v2"]
    retagged = out["retagged"]
    assert retagged["status"] == "Running" and retagged["spec"]["meta"]["tags"] == ["a", "b"]
    assert out["refused"]["status"] == 409 and "this patch changes meta.cmd" in out["refused"]["message"]
    assert out["waiting_status"] == "Succeeded"
    assert broker.logs(out["waiting"])[f"{out['waiting']}-worker-0"] == ["new"]
