"""``submarine-broker model ...`` against a real broker: list, get, versions, promote, alias, tag,
untag, history and delete, as a user sees them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.model_folders import model_folder
from tests.support import Broker


def cli(broker: Broker, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", "--url", broker.url, "model", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def ok(broker: Broker, *args: str) -> str:
    done = cli(broker, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def fails(broker: Broker, *args: str) -> str:
    done = cli(broker, *args)
    assert done.returncode == 1, done.stdout + done.stderr
    return done.stderr


@pytest.fixture
def registered(broker: Broker) -> Broker:
    """A model ``churn`` with two versions, made through Submarine's REST."""
    http = broker.client
    assert (
        http.post("/registered-model", json={"name": "churn", "description": "who leaves"}).status_code == 200
    )
    for _ in range(2):
        base_dir = model_folder(broker.url)
        answer = http.post("/model-version", params={"baseDir": base_dir}, json={"name": "churn"})
        assert answer.status_code == 200, answer.text
    return broker


def test_list_get_and_versions(registered: Broker) -> None:
    listed = ok(registered, "list")
    assert "churn" in listed and "NAME" in listed
    assert [m["name"] for m in json.loads(ok(registered, "list", "--json"))] == ["churn"]
    got = ok(registered, "get", "churn")
    assert "who leaves" in got and "tensorflow" in got
    versions = json.loads(ok(registered, "versions", "churn", "--json"))
    assert [v["version"] for v in versions] == [1, 2]
    table = ok(registered, "versions", "churn").splitlines()
    rows = [[cell.strip() for cell in line.split("│")] for line in table]
    assert any(row[:2] == ["1", "None"] and "tensorflow" in row for row in rows), table
    assert "no-such-model" in fails(registered, "get", "no-such-model")


def test_promote_alias_tag_history_and_delete(registered: Broker) -> None:
    out = ok(registered, "promote", "churn", "1", "Production", "-m", "beats baseline")
    assert "churn version 1 is now in Production" in out
    assert "currentStage" in fails(registered, "promote", "churn", "1", "Live")
    ok(registered, "promote", "churn", "2", "production", "--archive-existing")
    stages = {
        v["version"]: v["currentStage"] for v in json.loads(ok(registered, "versions", "churn", "--json"))
    }
    assert stages == {1: "Archived", 2: "Production"}

    assert "churn@champion -> version 2" in ok(registered, "alias", "set", "churn", "champion", "2")
    assert json.loads(ok(registered, "get", "churn", "--json"))["aliases"] == {"champion": 2}
    ok(registered, "alias", "delete", "churn", "champion")
    assert json.loads(ok(registered, "get", "churn", "--json"))["aliases"] == {}

    ok(registered, "tag", "churn", "owner=vision")
    ok(registered, "tag", "churn", "--version", "2", "validated")
    assert json.loads(ok(registered, "get", "churn", "--json"))["tags"] == ["owner=vision"]
    assert json.loads(ok(registered, "versions", "churn", "--json"))[1]["tags"] == ["validated"]
    ok(registered, "untag", "churn", "owner")
    assert json.loads(ok(registered, "get", "churn", "--json"))["tags"] == []
    assert "owner" in fails(registered, "untag", "churn", "owner")

    history = ok(registered, "history", "churn")
    for action in (
        "model_created",
        "version_created",
        "stage_changed",
        "alias_set",
        "alias_deleted",
        "model_tag_set",
    ):
        assert action in history, history
    assert "beats baseline" in history
    events = json.loads(ok(registered, "history", "churn", "--version", "1", "--json"))
    assert [(e["from"], e["to"]) for e in events if e["action"] == "stage_changed"] == [
        ("None", "Production"),
        ("Production", "Archived"),
    ]

    refusal = fails(registered, "delete", "churn")
    assert "Production" in refusal
    assert "churn version 2 deleted" in ok(registered, "delete", "churn", "--version", "2")
    assert "model churn deleted" in ok(registered, "delete", "churn")
    assert "No registered models." in ok(registered, "list")
    assert "model_deleted" in ok(registered, "history", "churn")
