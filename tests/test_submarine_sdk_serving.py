"""The real Submarine SDK's ``ServeClient`` (0.8.0, in the SDK venv of
:mod:`tests.test_submarine_sdk`) against a real broker: ``create_serve`` of a version registered
through MLflow answers the proxy URL, which answers predictions; ``delete_serve`` removes it.
The SDK sends no environment: the version has no ``requirements.txt``, so it is served on the
cluster's own Python (no environment built), as before."""

from __future__ import annotations

import textwrap
from pathlib import Path

import httpx
import pytest

from tests.serving_support import register_files, sklearn_files
from tests.support import Broker, wait_for
from tests.test_submarine_sdk import sdk_python  # noqa: F401 - the venv fixture
from tests.test_submarine_sdk_registry import run_script

pytestmark = pytest.mark.sdk

# argv: broker URL, "create" or "delete", the model's name, its version.
SERVE = textwrap.dedent(
    """
    import json
    import sys
    import traceback

    from submarine.client.api.serve_client import ServeClient

    host, action, name, version = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    out = {"steps": [action]}
    try:
        client = ServeClient(host=host)
        if action == "create":
            out["result"] = client.create_serve(name, version, async_req=False).result
        else:
            out["result"] = client.delete_serve(name, version, async_req=False).result
    except Exception:
        out["error"] = traceback.format_exc()
    print("SDK_RESULT " + json.dumps(out), flush=True)
    """
)


def test_the_sdk_serve_client_serves_and_deletes(
    sdk_python: Path,  # noqa: F811
    broker: Broker,
    tmp_path: Path,
) -> None:
    assert register_files(broker.url, None, "sdk-iris", sklearn_files(tmp_path, requirements=False)) == 1
    created = run_script(sdk_python, SERVE, broker, "create", "sdk-iris", "1")["result"]
    assert created["url"] == "/serve/default/sdk-iris-1/"
    assert created["environment"] is None  # nothing to build: the cluster's own Python

    def answered() -> httpx.Response | None:
        answer = httpx.post(broker.url + created["url"] + "invocations", json={"inputs": [[4.0]]}, timeout=30)
        return answer if answer.status_code == 200 else None

    predicted = wait_for(answered, timeout=120, interval=0.5, what="a prediction through the SDK's URL")
    assert predicted.json()["predictions"] == pytest.approx([9.0])

    deleted = run_script(sdk_python, SERVE, broker, "delete", "sdk-iris", "1")["result"]
    assert [s["status"] for s in deleted] == ["Deleted"]
    url = broker.url + created["url"] + "invocations"
    wait_for(
        lambda: httpx.post(url, json={"inputs": [[4.0]]}, timeout=30).status_code == 404,
        timeout=15,
        what="the deleted serve's URL to answer 404",
    )
    listed = broker.client.get("/serve").json()["result"]
    assert all(s["modelName"] != "sdk-iris" for s in listed)
