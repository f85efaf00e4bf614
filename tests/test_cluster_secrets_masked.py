"""A secret in a cluster's file (the password or token in an address's ``user:secret@``, a header, a
secret field) never shows: not in the cluster API (to a member or an admin), not in the CLI, not in
the broker's log, not in any experiment's events, statusMessage or reason, even when the cluster is
unreachable, refuses work or quotes its own credentials in its errors (the ``faulty`` double's
``endpoint``/``token``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.doubles.faulty import write_faults
from tests.support import Broker, free_port, hold_code, python_spec, wait_for
from tests.test_permissions import make_users

FAULTY = {"faulty": "tests.doubles.faulty:FaultyAdapter"}
RAY_PASSWORD = "S3cretRayPass"
RAY_HEADER_TOKEN = "HeaderTok0123456"
LEAKY_PASSWORD = "Pw0rdLeaky"
LEAKY_TOKEN = "FaultyTok456789"
SECRETS = (RAY_PASSWORD, RAY_HEADER_TOKEN, LEAKY_PASSWORD, LEAKY_TOKEN)
ENDPOINT = f"http://svc:{LEAKY_PASSWORD}@10.255.0.9:9000"


class Scene:
    def __init__(self, broker: Broker, tokens: dict[str, str], dead_port: int, dirs: dict[str, Path]) -> None:
        self.broker = broker
        self.tokens = tokens
        self.dead_port = dead_port
        self.dirs = dirs
        self.clients = {
            name: httpx.Client(
                base_url=broker.url + "/api/v1", headers={"Authorization": f"Bearer {tok}"}, timeout=30
            )
            for name, tok in tokens.items()
        }

    def get(self, user: str, path: str) -> dict[str, Any]:
        answer = self.clients[user].get(path)
        return {"code": answer.status_code, "body": answer.json()}

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        return self.get("alice", f"/experiment/{experiment_id}")["body"]["result"]

    def events(self, experiment_id: str) -> list[str]:
        return [
            e["reason"] for e in self.get("alice", f"/experiment/{experiment_id}/events")["body"]["result"]
        ]

    def cli(self, user: str, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "broker", "--url", self.broker.url, "--token", self.tokens[user], *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    root = tmp_path_factory.mktemp("masked")
    dead_port = free_port()  # nothing listens there: the Ray cluster is unreachable
    careless = {"endpoint": ENDPOINT, "token": LEAKY_TOKEN}
    broker = Broker(
        root / "broker",
        auth="token",
        extra_kinds=FAULTY,
        loops={
            "health_interval": 0.4,
            "monitor_interval": 0.3,
            "dispatch_interval": 0.3,
            "cluster_loss_grace": 2,
            "dispatch_backoff_max": 0.3,
        },
        clusters={
            "rayx": {
                "kind": "ray",
                "address": f"http://admin:{RAY_PASSWORD}@127.0.0.1:{dead_port}",
                "headers": {"Authorization": f"Bearer {RAY_HEADER_TOKEN}"},
            },
        },
    )
    faults = {
        "leaky": {},
        "refusing": {"reject_submit": "quota exceeded (injected)"},
        "queued": {"pending": "waiting in the queue (injected)"},
    }
    dirs: dict[str, Path] = {}
    for name, injected in faults.items():
        # A local-kind cluster of a token broker runs work as run_as users, in a work dir they reach.
        shared = broker.shared(name)
        dirs[name] = Path(shared.get("work_dir") or root / f"{name}-work")
        write_faults(dirs[name], **injected)
        broker.add_cluster(name, kind="faulty", **{**shared, "work_dir": str(dirs[name])}, **careless)
    tokens = make_users(broker)
    broker.start()
    scene = Scene(broker, tokens, dead_port, dirs)
    yield scene
    for client in scene.clients.values():
        client.close()
    broker.close()


def hold(root: Path, name: str, cluster: str) -> dict[str, Any]:
    spec = python_spec(
        hold_code(root / f"release-{name}"), name=name, namespace="vision", placement={"cluster": cluster}
    )
    return spec


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} shown in {where}: {text[:3000]}"


def test_secrets_in_cluster_files_never_show(scene: Scene, tmp_path: Path) -> None:
    broker, alice = scene.broker, scene.clients["alice"]

    def submit(name: str, cluster: str) -> str:
        answer = alice.post(
            "/experiment", json=hold(broker.scratch or tmp_path, name, cluster)
        )  # run-as users reach it
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]["experimentId"]

    on_ray = submit("on-ray", "rayx")
    refused = submit("refused", "refusing")
    queued = submit("queued", "queued")
    lost = submit("lost", "leaky")
    stopped = submit("stopped", "leaky")

    # An unreachable Ray cluster: its work waits, saying why.
    wait_for(
        lambda: "rayx" in (scene.experiment(on_ray).get("statusMessage") or ""),
        what="the Ray experiment's waiting message",
    )
    # A cluster refusing every submit: the experiment fails, the reason quoting the refusal.
    wait_for(lambda: scene.experiment(refused)["status"] == "Failed", timeout=60, what="5 refusals")
    # A cluster whose queue holds the work.
    wait_for(
        lambda: "waiting in the queue" in (scene.experiment(queued).get("statusMessage") or ""),
        what="the queue reason",
    )
    # A cluster that goes silent while running work: logs cannot be read, a stop cannot reach it,
    # the rest of its work fails over (no retries: it fails, cluster_lost).
    for experiment in (lost, stopped):
        wait_for(lambda e=experiment: scene.experiment(e)["status"] == "Running", timeout=60, what="running")
    write_faults(scene.dirs["leaky"], unreachable=True)
    wait_for(
        lambda: scene.get("alice", "/cluster/leaky")["body"]["result"]["state"] == "Unreachable",
        what="leaky unreachable",
    )
    logs = scene.get("alice", f"/experiment/logs/{lost}")
    stop = alice.post(f"/experiment/{stopped}/stop")
    assert stop.status_code == 200, stop.text
    wait_for(lambda: scene.experiment(lost)["status"] == "Failed", timeout=60, what="lost to fail over")

    shown: dict[str, str] = {}
    for user in ("alice", "root"):
        shown[f"GET /cluster as {user}"] = json.dumps(scene.get(user, "/cluster"))
        shown[f"GET /cluster/errors as {user}"] = json.dumps(scene.get(user, "/cluster/errors"))
        for name in ("rayx", "leaky", "refusing", "queued"):
            shown[f"GET /cluster/{name} as {user}"] = json.dumps(scene.get(user, f"/cluster/{name}"))
    for experiment in (on_ray, refused, queued, lost, stopped):
        shown[f"experiment {experiment}"] = json.dumps(scene.get("alice", f"/experiment/{experiment}?"))
        shown[f"events of {experiment}"] = json.dumps(scene.events(experiment))
        shown[f"placement of {experiment}"] = json.dumps(
            scene.get("alice", f"/experiment/{experiment}/placement")
        )
    shown["experiment list"] = json.dumps(scene.get("root", "/experiment?status=Deleted")) + json.dumps(
        scene.get("root", "/experiment")
    )
    shown["logs while unreachable"] = json.dumps(logs)
    for name in ("rayx", "leaky"):
        shown[f"CLI cluster get {name}"] = scene.cli("alice", "cluster", "get", name)
        shown[f"CLI cluster get {name} --json"] = scene.cli("root", "cluster", "get", name, "--json")
    shown["CLI cluster list"] = scene.cli("alice", "cluster", "list")
    shown["CLI experiment get"] = scene.cli("alice", "experiment", "get", refused)
    shown["broker log"] = broker.log()
    for where, text in shown.items():
        assert_no_secret(where, text)

    # Masked, not dropped: what is not secret still says where and why.
    ray = scene.get("alice", "/cluster/rayx")["body"]["result"]
    masked_address = f"http://******@127.0.0.1:{scene.dead_port}"
    assert ray["config"]["address"] == masked_address
    assert ray["config"]["headers"] == "******"
    assert ray["state"] == "Unreachable" and masked_address in ray["message"]
    assert masked_address in scene.experiment(on_ray)["statusMessage"]
    leaky = scene.get("root", "/cluster/leaky")["body"]["result"]
    assert leaky["config"]["endpoint"] == "http://******@10.255.0.9:9000"
    assert leaky["config"]["token"] == "******"
    assert (
        "connection refused (injected) (at http://******@10.255.0.9:9000, token ******)" in leaky["message"]
    )
    failed = scene.experiment(refused)
    assert failed["reason"].startswith("refused by refusing 5 times: quota exceeded (injected)")
    assert "token ******" in failed["reason"]
    assert "token ******" in scene.experiment(queued)["statusMessage"]
    assert logs["code"] == 503 and "token ******" in logs["body"]["message"]
    assert scene.experiment(lost)["failureCategory"] == "cluster_lost"
    assert any(
        "could not stop it on cluster leaky" in e and "token ******" in e for e in scene.events(stopped)
    )
    assert "token ******" in broker.log()
