"""``submarine-broker environment ...`` against a real broker: create from a file, list, get,
update, prepare on a cluster with an environment cache (and the refusal of one without), delete,
and the errors a user sees."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.scripted_environments import EXTRA_KINDS
from tests.support import Broker

SPEC = {
    "name": "torch-2",
    "dockerImage": "python:3.11-slim",
    "kernelSpec": {"name": "python3", "pipDependencies": ["numpy", "requests"]},
    "description": "training",
}


def cli(broker: Broker, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", "--url", broker.url, "environment", *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def ok(broker: Broker, *args: str, stdin: str | None = None) -> str:
    done = cli(broker, *args, stdin=stdin)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def fails(broker: Broker, *args: str) -> str:
    done = cli(broker, *args)
    assert done.returncode == 1, done.stdout + done.stderr
    return done.stderr


def test_environment_commands(broker_factory: Callable[..., Broker], tmp_path: Path) -> None:
    broker = broker_factory(
        clusters={"east": {"kind": "scripted-cache"}, "plain": {"kind": "scripted"}}, extra_kinds=EXTRA_KINDS
    )
    spec_file = tmp_path / "env.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    assert "environment torch-2 created: revision 1" in ok(broker, "create", "-f", str(spec_file))
    assert "already exists" in fails(broker, "create", "-f", str(spec_file))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "bad", "kernelSpec": {"pipDependencies": ["-e ."]}}))
    assert "kernelSpec.pipDependencies[0]" in fails(broker, "create", "-f", str(bad))

    table = ok(broker, "list")
    assert "torch-2" in table and "python:3.11-slim" in table and "notebook-env" in table
    listed = json.loads(ok(broker, "list", "--json"))
    assert [e["environmentSpec"]["name"] for e in listed] == ["notebook-env", "torch-2"]

    details = ok(broker, "get", "torch-2")
    assert "numpy, requests" in details and "Not built on any cluster yet." in details
    assert "Environment not found." in fails(broker, "get", "nope")

    changed = json.dumps({**SPEC, "kernelSpec": {"pipDependencies": ["numpy"]}})
    assert "environment torch-2: revision 2" in ok(broker, "update", "torch-2", "-f", "-", stdin=changed)

    assert "keeps no environment cache" in fails(broker, "prepare", "torch-2", "--cluster", "plain")
    assert "mars" in fails(broker, "prepare", "torch-2", "--cluster", "mars")
    revision = json.loads(ok(broker, "get", "torch-2", "--json"))
    assert f"environment torch-2 built on east ({revision['hash'][:16]})" in ok(
        broker, "prepare", "torch-2", "--cluster", "east"
    )
    built = ok(broker, "get", "torch-2")
    assert "east" in built and "built" in built

    assert "environment torch-2 deleted" in ok(broker, "delete", "torch-2")
    assert "Environment not found." in fails(broker, "delete", "torch-2")
