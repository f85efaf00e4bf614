"""The CLI against a real broker: serve flags, submit, wait, logs, list, delete, clusters."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from broker.store.database import Database
from broker.store.migrate import current_revision, head_revision
from tests.support import Broker, free_port, python_spec, wait_for


def cli(broker: Broker, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", "--url", broker.url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_cli_drives_an_experiment_end_to_end(broker: Broker, tmp_path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(python_spec("print('hello from cli')", name="cli-job")))
    submitted = cli(broker, "experiment", "submit", "-f", str(spec_file))
    assert submitted.returncode == 0, submitted.stderr
    exp_id = next(word for word in submitted.stdout.split() if word.startswith("experiment-"))

    waited = cli(broker, "experiment", "wait", exp_id, "--interval", "0.3")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "Succeeded" in waited.stdout

    logs = cli(broker, "experiment", "logs", exp_id)
    assert logs.returncode == 0 and "hello from cli" in logs.stdout
    listed = cli(broker, "experiment", "list", "--json")
    assert exp_id in [e["experimentId"] for e in json.loads(listed.stdout)]
    got = cli(broker, "experiment", "get", exp_id)
    assert "Succeeded" in got.stdout and "local" in got.stdout
    clusters = cli(broker, "cluster", "list")
    assert clusters.returncode == 0 and "local" in clusters.stdout and "Ready" in clusters.stdout

    deleted = cli(broker, "experiment", "delete", exp_id)
    assert deleted.returncode == 0 and "Deleted" in deleted.stdout
    missing = cli(broker, "experiment", "get", exp_id)
    assert missing.returncode == 1 and "Not found experiment" in missing.stderr + missing.stdout


def test_cli_wait_fails_on_a_failed_experiment(broker: Broker) -> None:
    exp_id = broker.submit(python_spec("import sys; sys.exit(7)"))["experimentId"]
    waited = cli(broker, "experiment", "wait", exp_id, "--interval", "0.3")
    assert waited.returncode == 1
    assert "worker-0" in waited.stdout + waited.stderr and "7" in waited.stdout + waited.stderr


FAILING_SECOND_WORKER = (
    "import os, sys\n"
    "for i in range(12):\n"
    "    print(f'line {i}', flush=True)\n"
    "sys.exit(3 if os.environ['SUBMARINE_REPLICA_INDEX'] == '1' else 0)"
)
TWO_WORKERS = {"Worker": {"replicas": 2, "resources": "cpu=0.1,memory=64M"}}


def test_cli_by_name_failure_tail_pod_names_and_logs_after_delete(broker: Broker) -> None:
    exp_id = broker.submit(python_spec(FAILING_SECOND_WORKER, name="by-name", roles=TWO_WORKERS))[
        "experimentId"
    ]

    waited = cli(broker, "experiment", "wait", "by-name", "--interval", "0.3")
    assert waited.returncode == 1, waited.stdout + waited.stderr
    assert f"experiment {exp_id} failed: replica worker-1 exited with code 3 [exit_code]" in waited.stdout
    assert waited.stdout.rstrip().endswith(
        "Last log lines of worker-1:\n" + "\n".join(f"  line {i}" for i in range(2, 12))
    )
    got = cli(broker, "experiment", "get", "by-name")
    assert got.returncode == 0 and "Last log lines of worker-1:" in got.stdout and "  line 11" in got.stdout

    # --replica takes the podName the logs answer shows; the REST call takes it too.
    pod = f"{exp_id}-worker-1"
    one = cli(broker, "experiment", "logs", "by-name", "--replica", pod, "--tail", "2")
    assert one.returncode == 0 and one.stdout.splitlines() == ["line 10", "line 11"], one.stdout + one.stderr
    rest = broker.client.get(f"/experiment/logs/{exp_id}", params={"replica": pod, "tail": 1}).json()
    assert rest["result"]["logContent"] == [{"podName": pod, "podLog": ["line 11"]}]
    followed = cli(
        broker, "experiment", "logs", exp_id, "--follow", "--replica", "worker-1", "--interval", "0.2"
    )
    assert followed.returncode == 1 and followed.stdout.splitlines()[-1] == "line 11"
    assert "failed: replica worker-1 exited with code 3" in followed.stderr

    # A second live experiment with the name: the name alone is ambiguous, the error lists both ids.
    again = broker.submit(python_spec("print('again')", name="by-name"))["experimentId"]
    by_filter = broker.client.get("/experiment", params={"name": "BY-NAME"}).json()["result"]
    assert {e["experimentId"] for e in by_filter} == {exp_id, again}
    ambiguous = cli(broker, "experiment", "stop", "by-name")
    assert ambiguous.returncode == 1
    assert "'by-name' names 2 live experiments in namespace" not in ambiguous.stderr  # no -n given
    assert "'by-name' names 2 live experiments:" in ambiguous.stderr
    assert exp_id in ambiguous.stderr and again in ambiguous.stderr and "give the id" in ambiguous.stderr

    # Deleted: gone for get and logs, but its logs stay readable with --deleted (by id or name).
    assert cli(broker, "experiment", "delete", exp_id).returncode == 0
    assert cli(broker, "experiment", "logs", exp_id).returncode == 1
    for ref in (exp_id, "by-name"):
        kept = cli(broker, "experiment", "logs", ref, "--deleted", "--replica", "worker-1", "--tail", "1")
        assert kept.returncode == 0 and kept.stdout.splitlines() == ["line 11"], kept.stdout + kept.stderr
    assert cli(broker, "experiment", "wait", "by-name", "--interval", "0.3").returncode == 0  # the other one


def test_serve_flags_override_the_config(tmp_path) -> None:
    broker = Broker(tmp_path / "b")
    port = free_port()
    data = tmp_path / "elsewhere"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "broker",
            "serve",
            "--config",
            str(broker.config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import httpx

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/v1/experiment/ping").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=60, what="the broker on the --port given")
        assert (data / "broker.db").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serve_refuses_bad_config_and_open_binds_without_auth(tmp_path) -> None:
    bad = tmp_path / "broker.yaml"
    bad.write_text("port: [1, 2\n")
    run = subprocess.run(
        [sys.executable, "-m", "broker", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "broker.yaml:" in run.stderr and "YAML" in run.stderr
    assert "Traceback" not in run.stderr

    good = Broker(tmp_path / "open")
    run = subprocess.run(
        [sys.executable, "-m", "broker", "serve", "--config", str(good.config_path), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0 and "auth: none serves only loopback" in run.stderr
    assert "Traceback" not in run.stderr


def test_db_upgrade_command(tmp_path) -> None:
    broker = Broker(tmp_path / "b")
    run = subprocess.run(
        [sys.executable, "-m", "broker", "db", "upgrade", "--config", str(broker.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and f"revision {head_revision()}" in run.stdout
    assert (broker.data_dir / "broker.db").exists()
    db = Database(f"sqlite:///{broker.data_dir / 'broker.db'}")
    try:
        assert current_revision(db.engine) == head_revision()
    finally:
        db.dispose()
