"""TensorBoard end to end on the local kind: a replica's event files reach the artifact store under
``tensorboard/<replica>/`` and the broker serves them in a TensorBoard, to whoever may read the
experiment only; the TensorBoard process ends with the broker."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import psutil
import pytest

from tests.support import Broker, processes_with, python_spec, wait_for
from tests.test_permissions import make_users

pytest.importorskip("tensorboard")

#: The replica's script: three points of the scalar "loss" in SUBMARINE_TENSORBOARD_LOG_DIR, written
#: with TensorBoard's own writer (no TensorFlow, no torch).
WRITE_EVENTS = """
import os, time
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

folder = os.environ["SUBMARINE_TENSORBOARD_LOG_DIR"]
assert os.path.isabs(folder), folder
writer = EventFileWriter(folder)
for step in range(3):
    value = Summary.Value(tag="loss", simple_value=1.0 / (step + 1))
    writer.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=[value])))
writer.close()
print("wrote", sorted(os.listdir(folder)))
"""


def run_folder(broker: Broker, experiment_id: str, client: httpx.Client | None = None) -> str:
    """``<tracking experiment>/<run>`` of the experiment's current attempt."""
    answer = (client or broker.client).get(f"{broker.url}/api/v1/experiment/artifacts/{experiment_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()["attributes"]["location"].removesuffix("/artifacts")


def listing(client: httpx.Client, url: str, path: str) -> list[str]:
    answer = client.get(f"{url}/api/2.0/mlflow-artifacts/artifacts", params={"path": path})
    assert answer.status_code == 200, answer.text
    return [f["path"] for f in answer.json().get("files", [])]


def scalar_tags(client: httpx.Client, url: str, experiment_id: str) -> dict[str, list[str]] | None:
    answer = client.get(f"{url}/tensorboard/{experiment_id}/data/plugin/scalars/tags")
    assert answer.status_code == 200, answer.text
    return {run: sorted(tags) for run, tags in answer.json().items()} or None


def test_event_files_reach_the_store_and_tensorboard_shows_them(broker: Broker) -> None:
    info = broker.client.get("/experiment/tensorboard").json()["result"]
    assert info == {"available": True, "url": f"{broker.url}/tensorboard/"}

    experiment_id = broker.submit(python_spec(WRITE_EVENTS, name="tb"))["experimentId"]
    broker.wait_status(experiment_id, "Succeeded")
    folder = run_folder(broker, experiment_id)
    files = listing(broker.client, broker.url, f"{folder}/tensorboard/worker-0")
    assert len(files) == 1 and files[0].startswith("events.out.tfevents."), files

    tags = wait_for(
        lambda: scalar_tags(broker.client, broker.url, experiment_id),
        timeout=60,
        what="TensorBoard to load the scalar",
    )
    assert tags == {"attempt-1/worker-0": ["loss"]}
    page = broker.client.get(f"{broker.url}/tensorboard/{experiment_id}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    moved = broker.client.get(f"{broker.url}/tensorboard/{experiment_id}", follow_redirects=False)
    assert moved.status_code == 307 and moved.headers["location"].endswith(f"/tensorboard/{experiment_id}/")

    board = processes_with(f"/tensorboard/{experiment_id}")
    assert len(board) == 1
    argv = psutil.Process(board[0]).cmdline()
    direct = f"http://127.0.0.1:{argv[argv.index('--port') + 1]}/tensorboard/{experiment_id}/"
    assert httpx.get(direct).status_code == 403  # only the broker gets answers: it has the secret
    broker.stop()
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in board)


def test_another_teams_tensorboard_is_not_found(broker_factory: Callable[..., Broker]) -> None:
    broker = broker_factory(auth="token", start=False)
    tokens = make_users(broker)
    broker.start()
    alice, bob = (
        httpx.Client(base_url=broker.url, headers={"Authorization": f"Bearer {tokens[n]}"}, timeout=60)
        for n in ("alice", "bob")
    )
    with alice, bob:
        made = alice.post("/api/v1/experiment", json=python_spec(WRITE_EVENTS, name="tb-vision"))
        assert made.status_code == 200, made.text
        experiment_id = made.json()["result"]["experimentId"]
        broker.client.headers["Authorization"] = f"Bearer {tokens['alice']}"
        broker.wait_status(experiment_id, "Succeeded")

        for path in ("/", "/data/plugin/scalars/tags"):
            refused = bob.get(f"/tensorboard/{experiment_id}{path}")
            assert refused.status_code == 404, refused.text
            assert experiment_id in refused.json()["message"]
        assert httpx.get(f"{broker.url}/tensorboard/{experiment_id}/").status_code == 401

        folder = run_folder(broker, experiment_id, alice)
        assert listing(alice, broker.url, f"{folder}/tensorboard/worker-0")
        tags = wait_for(lambda: scalar_tags(alice, broker.url, experiment_id), timeout=60, what="the scalar")
        assert tags == {"attempt-1/worker-0": ["loss"]}
        # A signed-in browser opens it with the cookie the sign-in page set; bob's cookie does not.
        for name, status in (("alice", 200), ("bob", 404)):
            page = httpx.get(
                f"{broker.url}/tensorboard/{experiment_id}/",
                cookies={"submarine_broker_token": tokens[name]},
            )
            assert page.status_code == status, (name, page.text)
