"""The CLI against a real broker: serve flags, submit, wait, logs, list, delete, clusters."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

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
    assert run.returncode == 0 and "revision 0005" in run.stdout
    assert (broker.data_dir / "broker.db").exists()
