"""A served model's dependencies as an environment, end to end on a real broker's ``local``
cluster: a version registered by MLflow's client (its ``requirements.txt`` pins mlflow,
scikit-learn, ...) served with no environment in the spec is served in a venv built from those
requirements, named ``model:<model>/<version>`` in the serve's JSON; its model server runs from
that venv and answers predictions; a second serve of the same version reuses the build (no second
build). A version without ``requirements.txt`` keeps the cluster's Python, and a requirements file
that is not one is a 400 naming the field that chose the version."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from clusters.local.processes import read_json
from runtimes import venv_build
from runtimes.environment import SHORT_HASH
from tests.serving_support import register_files, sklearn_files
from tests.support import Broker
from tests.test_permissions import Clients
from tests.test_serving import register_sklearn, secured, serve_of, wait_ready  # noqa: F401 - fixture

MODEL = "envy"
#: A venv of mlflow, scikit-learn and their dependencies: about a minute here, longer on a cold cache.
BUILD_TIMEOUT = 900


def logs_of(client: httpx.Client, serve_id: str) -> dict[str, list[str]]:
    answer = client.get(f"/api/v1/serve/{serve_id}/logs")
    assert answer.status_code == 200, answer.text
    return {entry["podName"]: entry["podLog"] for entry in answer.json()["result"]["logContent"]}


def server_environment(attempt: Path) -> dict[str, str]:
    """The process environment of the model server of ``server-0`` in ``attempt``."""
    record = read_json(attempt / "server-0.pid")
    assert record is not None, f"no pid file in {attempt}"
    children = psutil.Process(int(record["pid"])).children()
    assert len(children) == 1 and "runtimes.model_server" in " ".join(children[0].cmdline()), children
    return children[0].environ()


@pytest.mark.timeout(1200)  # one real build of mlflow + scikit-learn: about a minute quiet, much more loaded
def test_a_versions_requirements_are_built_once_and_serve_its_predictions(
    secured: tuple[Broker, Clients, dict[str, str]],  # noqa: F811
) -> None:
    broker, clients, tokens = secured
    alice = clients["alice"]
    register_sklearn(broker.url, tokens["alice"], MODEL)  # y = 2x + 1
    created = alice.post("/api/v1/serve", json={"modelName": MODEL, "modelVersion": 1})
    assert created.status_code == 200, created.text
    serve = created.json()["result"]
    pinned = serve["environment"]
    assert pinned["name"] == f"model:{MODEL}/1" and pinned["revision"] == 0 and len(pinned["hash"]) == 64

    ready = wait_ready(alice, serve["id"], broker, timeout=BUILD_TIMEOUT)
    venv = broker.work_dir() / venv_build.ROOT / pinned["hash"][:SHORT_HASH]
    logs = logs_of(alice, serve["id"])
    built = logs[f"{serve['id']}-environment"]
    assert any(line.endswith(f"building in {venv}") for line in built), built
    assert built[-1].endswith(": built"), built[-3:]
    # The model server runs from that venv (its python first on PATH), with only the runtimes
    # package of the broker's added to its path.
    env = server_environment(broker.work_dir() / ready["uid"])
    assert env["VIRTUAL_ENV"] == str(venv) and env["PATH"].startswith(f"{venv}/bin")
    runtimes_link = Path(env["PYTHONPATH"].split(":")[0])
    assert sorted(p.name for p in runtimes_link.iterdir()) == ["runtimes"]

    predicted = alice.post(serve["url"] + "invocations", json={"inputs": [[4.0]]})
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["predictions"] == pytest.approx([9.0])

    # A second serve of the same version: the same environment, the build reused.
    again = alice.post("/api/v1/serve", json={"modelName": MODEL, "modelVersion": 1, "name": "envy-again"})
    assert again.status_code == 200, again.text
    second = again.json()["result"]
    assert second["environment"] == pinned
    wait_ready(alice, second["id"], broker, timeout=BUILD_TIMEOUT)
    reused = logs_of(alice, second["id"])[f"{second['id']}-environment"]
    assert len(reused) == 1 and re.fullmatch(
        rf"environment {re.escape(pinned['name'])} \(\d+ packages\): reusing the build in {re.escape(str(venv))}",
        reused[0],
    ), reused
    predicted = alice.post(second["url"] + "invocations", json={"inputs": [[1.0]]})
    assert predicted.status_code == 200 and predicted.json()["predictions"] == pytest.approx([3.0])
    builds = [p.name for p in venv.parent.iterdir() if (p / venv_build.COMPLETE).is_file()]
    assert builds == [venv.name]

    for made in (serve, second):
        assert alice.delete(f"/api/v1/serve/{made['id']}").status_code == 200


def test_without_requirements_the_clusters_python_and_garbage_is_refused(
    secured: tuple[Broker, Clients, dict[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    broker, clients, tokens = secured
    alice = clients["alice"]
    files = sklearn_files(tmp_path, requirements=False)
    assert register_files(broker.url, tokens["alice"], "bare", files) == 1
    made = alice.post("/api/v1/serve", json={"modelName": "bare", "modelVersion": 1})
    assert made.status_code == 200, made.text
    assert made.json()["result"]["environment"] is None
    assert alice.delete(f"/api/v1/serve/{made.json()['result']['id']}").status_code == 200

    garbage = {**files, "requirements.txt": b"<html><body>Not Found</body></html>\n"}
    assert register_files(broker.url, tokens["alice"], "garbled", garbage) == 1
    aliased = alice.post(
        "/api/2.0/mlflow/registered-models/alias", json={"name": "garbled", "alias": "live", "version": "1"}
    )
    assert aliased.status_code == 200, aliased.text
    for body, field in (({"modelVersion": 1}, "modelVersion"), ({"alias": "live"}, "alias")):
        refused = alice.post("/api/v1/serve", json={"modelName": "garbled", **body})
        assert refused.status_code == 400, refused.text
        assert refused.json()["message"] == (
            f"{field}: the requirements.txt of version 1 of model 'garbled' is not a pip requirements "
            "file (line 1 is not a requirement: '<html><body>Not Found</body></html>')"
        )
    assert all(s["modelName"] != "garbled" for s in alice.get("/api/v1/serve").json()["result"])
    # Naming an environment skips the model's requirements altogether (here from the CLI).
    cli = [sys.executable, "-m", "broker", "--url", broker.url, "--token", tokens["alice"], "serve"]
    made_by_cli = subprocess.run(
        [*cli, "create", "garbled-own", "--model", "garbled", "--version", "1"]
        + ["--environment", "notebook-env", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made_by_cli.returncode == 0, made_by_cli
    named = json.loads(made_by_cli.stdout)
    assert named["environment"]["name"] == "notebook-env" and named["modelName"] == "garbled"
    assert serve_of(alice, named["id"])["environment"] == named["environment"]
    assert alice.delete(f"/api/v1/serve/{named['id']}").status_code == 200
