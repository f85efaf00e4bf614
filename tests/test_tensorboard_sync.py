"""runtimes/tensorboard_sync: what reaches the broker's artifact proxy, and what never fails a replica."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runtimes.tensorboard_sync import LOG_DIR_ENV, TensorBoardSync, absolute_env
from tests.support import free_port


class _Recorder(BaseHTTPRequestHandler):
    """Answers every PUT with 200 and records (path, Authorization, body)."""

    received: list[tuple[str, str, bytes]]

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append((self.path, self.headers.get("Authorization", ""), body))  # type: ignore[attr-defined]
        self.send_response(404 if "refused" in self.path else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def artifact_proxy() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", server.received  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def replica_env(uri: str) -> dict[str, str]:
    return {
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_TRACKING_TOKEN": "sbr_secret",
        "MLFLOW_EXPERIMENT_ID": "7",
        "MLFLOW_RUN_ID": "abc123",
        LOG_DIR_ENV: "tensorboard/worker-0",
    }


def test_new_and_changed_files_are_uploaded_once(tmp_path: Path, artifact_proxy) -> None:
    uri, received = artifact_proxy
    folder = tmp_path / "tensorboard" / "worker-0"
    (folder / "train").mkdir(parents=True)
    (folder / "events.out.tfevents.1").write_bytes(b"first")
    (folder / "train" / "events.out.tfevents.2").write_bytes(b"second")
    sync = TensorBoardSync(replica_env(uri), "worker-0", str(tmp_path))

    assert sync.sync() == 2
    prefix = "/api/2.0/mlflow-artifacts/artifacts/7/abc123/tensorboard/worker-0/"
    assert sorted((p, a, b) for p, a, b in received) == [
        (prefix + "events.out.tfevents.1", "Bearer sbr_secret", b"first"),
        (prefix + "train/events.out.tfevents.2", "Bearer sbr_secret", b"second"),
    ]

    received.clear()
    assert sync.sync() == 0 and received == []  # nothing changed: nothing sent

    (folder / "events.out.tfevents.1").write_bytes(b"first and more")
    assert sync.sync() == 1
    assert received == [(prefix + "events.out.tfevents.1", "Bearer sbr_secret", b"first and more")]


def test_links_are_not_followed(tmp_path: Path, artifact_proxy) -> None:
    uri, received = artifact_proxy
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("not the replica's to send")
    folder = tmp_path / "tensorboard" / "worker-0"
    folder.mkdir(parents=True)
    (folder / "link").symlink_to(secret)
    (folder / "dirlink").symlink_to(tmp_path)
    (folder / "events").write_bytes(b"ok")

    assert TensorBoardSync(replica_env(uri), "worker-0", str(tmp_path)).sync() == 1
    assert [p.rsplit("/", 1)[-1] for p, _, _ in received] == ["events"]


def test_files_of_another_owner_are_skipped(tmp_path: Path, artifact_proxy) -> None:
    uri, received = artifact_proxy
    folder = tmp_path / "tensorboard" / "worker-0"
    folder.mkdir(parents=True)
    (folder / "events").write_bytes(b"mine")
    stranger = os.getuid() + 4242
    sync = TensorBoardSync(replica_env(uri), "worker-0", str(tmp_path), owner=stranger)
    assert sync.sync() == 0 and received == []


def test_a_broker_that_is_down_is_said_and_survived(tmp_path: Path, artifact_proxy) -> None:
    uri, received = artifact_proxy
    folder = tmp_path / "tensorboard" / "worker-0"
    folder.mkdir(parents=True)
    (folder / "events").write_bytes(b"points")
    said = io.StringIO()
    down = TensorBoardSync(
        replica_env(f"http://127.0.0.1:{free_port()}"), "worker-0", str(tmp_path), stderr=said
    )

    assert down.sync() == 0
    assert "events: not uploaded" in said.getvalue() and "sbr_secret" not in said.getvalue()
    assert down.sync(budget=5) == 0  # tried again (not remembered as sent), still no exception

    up = TensorBoardSync(replica_env(uri), "worker-0", str(tmp_path))
    assert up.sync() == 1 and len(received) == 1


def test_a_refused_file_is_not_resent_until_it_changes(tmp_path: Path, artifact_proxy) -> None:
    uri, received = artifact_proxy
    folder = tmp_path / "tensorboard" / "worker-0"
    folder.mkdir(parents=True)
    (folder / "refused").write_bytes(b"x")
    said = io.StringIO()
    sync = TensorBoardSync(replica_env(uri), "worker-0", str(tmp_path), stderr=said)
    assert sync.sync() == 0 and len(received) == 1
    assert "refused: the broker answered HTTP 404" in said.getvalue()
    assert sync.sync() == 0 and len(received) == 1


def test_without_the_tracking_environment_nothing_happens(tmp_path: Path) -> None:
    env = {LOG_DIR_ENV: "tensorboard/worker-0"}
    sync = TensorBoardSync(env, "worker-0", str(tmp_path))
    assert not sync.enabled and sync.sync() == 0


def test_a_missing_folder_is_no_error(tmp_path: Path, artifact_proxy) -> None:
    uri, received = artifact_proxy
    assert TensorBoardSync(replica_env(uri), "worker-0", str(tmp_path)).sync() == 0 and received == []


def test_the_folder_is_made_absolute_in_the_working_directory() -> None:
    assert absolute_env({LOG_DIR_ENV: "tensorboard/worker-1", "X": "1"}, "/work/a") == {
        LOG_DIR_ENV: "/work/a/tensorboard/worker-1",
        "X": "1",
    }
    assert absolute_env({LOG_DIR_ENV: "/logs/mylog"}, "/work/a") == {LOG_DIR_ENV: "/logs/mylog"}
    assert absolute_env({}, "/work/a") == {}


#: A replica that writes one file into its TensorBoard folder, wherever that is.
WRITE_ONE = (
    "import os; d = os.environ['SUBMARINE_TENSORBOARD_LOG_DIR']; assert os.path.isabs(d), d; "
    "os.makedirs(d); open(os.path.join(d, 'events.out.tfevents.9'), 'wb').write(b'scalars')"
)


def test_the_slurm_task_uploads_when_its_replica_ends(tmp_path: Path, artifact_proxy) -> None:
    import sys

    from tests.test_slurm_script import _run_tasks

    uri, received = artifact_proxy
    replica = {"name": "worker-0", "argv": [sys.executable, "-c", WRITE_ONE], "env": replica_env(uri)}
    assert _run_tasks(tmp_path, [replica]) == [0]
    assert (tmp_path / "tensorboard" / "worker-0" / "events.out.tfevents.9").exists()  # in the job's folder
    assert received == [
        (
            "/api/2.0/mlflow-artifacts/artifacts/7/abc123/tensorboard/worker-0/events.out.tfevents.9",
            "Bearer sbr_secret",
            b"scalars",
        )
    ]


def test_the_ray_actor_uploads_when_its_replica_ends(tmp_path: Path, artifact_proxy) -> None:
    import sys

    from runtimes.ray_launcher import ReplicaProcess
    from tests.support import wait_for

    uri, received = artifact_proxy
    replica = ReplicaProcess("worker-1")
    env = {**replica_env(uri), LOG_DIR_ENV: "tensorboard/worker-1"}
    cwd = replica.start([sys.executable, "-c", WRITE_ONE], env, "key-1", str(tmp_path))
    assert cwd == str(tmp_path / "key-1")
    wait_for(lambda: replica.drain()[1] is not None, what="the replica to end")
    assert [(p.rsplit("/", 3)[-3:], b) for p, _, b in received] == [
        (["tensorboard", "worker-1", "events.out.tfevents.9"], b"scalars")
    ]
