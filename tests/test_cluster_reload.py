"""Hot reload of clusters.d against a real broker: add, change, break, fix and remove cluster files,
a busy cluster drained to the end of its work, and no secret in any answer or log line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import Broker, python_spec, wait_for

#: The requirement: a file change takes effect within five seconds.
RELOAD = 5.0
MARKER = "sekrit-MARKER-7d41e0"


def clusters(broker: Broker) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    answer = broker.client.get("/cluster")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return {c["name"]: c for c in body["result"]}, body["attributes"]["configErrors"]


def cluster_where(broker: Broker, name: str, check: Callable[[dict[str, Any]], bool], what: str) -> dict:
    def probe() -> dict[str, Any] | None:
        found = clusters(broker)[0].get(name)
        return found if found is not None and check(found) else None

    return wait_for(probe, timeout=RELOAD, interval=0.1, what=what)


def run_on(broker: Broker, cluster: str, code: str = "print('hi')") -> dict[str, Any]:
    spec = python_spec(code, placement={"cluster": cluster})
    return broker.submit(spec)


def test_add_change_break_fix_and_remove_a_cluster_file(broker: Broker) -> None:
    broker.add_cluster("second", kind="local", labels={"site": "b"})
    second = cluster_where(broker, "second", lambda c: c["state"] == "Ready", "the new cluster, Ready")
    assert second["source"] == str(broker.clusters_dir / "second.yaml") and second["labels"] == {"site": "b"}
    exp = run_on(broker, "second")
    done = broker.wait_status(exp["experimentId"], "Succeeded")
    assert done["cluster"] == "second" and done["spec"]["meta"]["placement"]["cluster"] == "second"

    broker.add_cluster("second", kind="local", labels={"site": "c"}, weight=2)
    cluster_where(broker, "second", lambda c: c["labels"] == {"site": "c"}, "the changed labels")

    path = broker.clusters_dir / "second.yaml"
    path.write_text("name: second\nkind: local\nlabels:\n  site: [d\n")
    wait_for(lambda: clusters(broker)[1], timeout=RELOAD, what="the config error of the broken file")
    found, errors = clusters(broker)
    assert [(e["file"], e["line"]) for e in errors] == [(str(path), errors[0]["line"])]
    assert errors[0]["line"] >= 3 and "YAML" in errors[0]["reason"]
    assert found["second"]["labels"] == {"site": "c"} and found["second"]["state"] == "Ready"
    assert found["second"]["configError"] == errors[0]
    assert broker.client.get("/cluster/errors").json()["result"] == errors
    exp = run_on(broker, "second")
    assert broker.wait_status(exp["experimentId"], "Succeeded")["cluster"] == "second"

    path.write_text("name: second\nkind: local\nlabels: {site: e}\nweight: lots\n")
    wait_for(
        lambda: [(e["key"], e["line"]) for e in clusters(broker)[1]] == [("weight", 4)],
        timeout=RELOAD,
        what="the validation error naming key and line",
    )
    broker.add_cluster("second", kind="local", labels={"site": "f"})
    cluster_where(broker, "second", lambda c: c["labels"] == {"site": "f"}, "the fixed file")
    assert clusters(broker)[1] == [] and broker.client.get("/cluster/errors").json()["result"] == []

    path.unlink()
    wait_for(lambda: "second" not in clusters(broker)[0], timeout=RELOAD, what="the idle cluster to leave")
    assert broker.client.get("/cluster/second").status_code == 404
    assert "local" in clusters(broker)[0]


def test_a_removed_busy_cluster_drains_to_the_end_of_its_work(broker: Broker, tmp_path: Path) -> None:
    broker.add_cluster("busy", kind="local")
    cluster_where(broker, "busy", lambda c: c["state"] == "Ready", "the busy cluster, Ready")
    flag = tmp_path / "finish"
    code = f"import os, time\nwhile not os.path.exists({str(flag)!r}):\n    time.sleep(0.05)\nprint('done')"
    exp_id = run_on(broker, "busy", code)["experimentId"]
    broker.wait_status(exp_id, "Running")
    broker.add_cluster("busy", kind="local", labels={"changed": "while-running"})
    cluster_where(
        broker,
        "busy",
        lambda c: c["labels"] == {"changed": "while-running"} and c["running"] == 1,
        "new labels",
    )
    assert broker.experiment(exp_id)["status"] == "Running"  # a new adapter does not disturb the work

    (broker.clusters_dir / "busy.yaml").unlink()
    draining = cluster_where(broker, "busy", lambda c: c["state"] == "Draining", "the busy cluster draining")
    assert draining["removed"] is True and "removed" in draining["message"]
    other = broker.submit(python_spec("print('elsewhere')"))
    assert broker.wait_status(other["experimentId"], "Succeeded")["cluster"] == "local"
    assert broker.experiment(exp_id)["status"] == "Running"
    assert "busy" in clusters(broker)[0]

    flag.touch()
    assert broker.wait_status(exp_id, "Succeeded")["cluster"] == "busy"
    assert broker.logs(exp_id)[f"{exp_id}-worker-0"] == ["done"]
    wait_for(lambda: "busy" not in clusters(broker)[0], timeout=RELOAD, what="the drained cluster to leave")


def test_no_secret_from_a_cluster_file_in_any_answer_or_log_line(
    broker_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUSTER_TOKEN", MARKER)  # the broker subprocess inherits it
    broker = broker_factory(start=False)
    broker.add_cluster("boot", kind="local", token=MARKER)  # refused at start-up
    broker.start()
    write = broker.clusters_dir.joinpath
    write("unknown.yaml").write_text(f"name: unknown\nkind: local\napi_token: {MARKER}\n")
    write("typed.yaml").write_text(f"name: typed\nkind: local\nweight: {MARKER}\n")
    write("env.yaml").write_text("name: env\nkind: local\ncapacity:\n  memory: ${CLUSTER_TOKEN}\n")
    write("quoted.yaml").write_text(f'name: quoted\nkind: local\nlabels: "{MARKER}"\n')
    write("alias.yaml").write_text(f"name: alias\nkind: local\ntoken: *{MARKER}\n")
    write("many.yaml").write_text(f"name: many\nkind: local\ntoken: {MARKER}\nweight: {MARKER}\n")
    write("unclosed.yaml").write_text(f'name: unclosed\nkind: local\nlabels: {{a: "{MARKER}\n')
    expected = {"boot.yaml", "unknown.yaml", "typed.yaml", "env.yaml", "quoted.yaml", "alias.yaml"}
    expected |= {"many.yaml", "unclosed.yaml"}
    wait_for(
        lambda: {Path(e["file"]).name for e in clusters(broker)[1]} == expected,
        timeout=RELOAD,
        what="all eight files refused",
    )
    answers = [broker.client.get(path) for path in ("/cluster", "/cluster/errors", "/cluster/local")]
    answers += [broker.client.get(f"/cluster/{name}") for name in ("boot", "unknown", "typed", "env")]
    for answer in answers:
        assert MARKER not in answer.text, answer.request.url
    errors = clusters(broker)[1]
    assert {e["key"] for e in errors} >= {"token", "api_token", "weight", "capacity.memory", "labels"}
    assert all(e["line"] for e in errors if len(e["problems"]) == 1), json.dumps(errors)
    by_name = {Path(e["file"]).name: e for e in errors}
    assert [(p["key"], p["line"]) for p in by_name["many.yaml"]["problems"]] == [("token", 3), ("weight", 4)]
    assert by_name["unclosed.yaml"]["problems"] == [
        {
            "key": None,
            "line": 4,
            "column": 1,
            "reason": "not valid YAML: while scanning a quoted scalar (line 3, column 13): "
            "found unexpected end of stream",
        }
    ]
    log = broker.log()
    assert "cluster file refused" in log and "typed.yaml" in log and MARKER not in log
    assert f"cluster file refused: {broker.clusters_dir / 'many.yaml'}: 2 problems: line 3: token" in log

    shown = subprocess.run(
        [sys.executable, "-m", "broker", "--url", broker.url, "cluster", "errors"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "1000"},  # one line per problem, however long the paths
    )
    assert shown.returncode == 0 and MARKER not in shown.stdout, shown.stderr
    many = str(broker.clusters_dir / "many.yaml")
    assert (
        f"  {many}: 2 problems:\n      line 3: token: unknown field\n      line 4: weight: " in shown.stdout
    )
    unclosed = str(broker.clusters_dir / "unclosed.yaml")
    assert (
        f"  {unclosed}:4:1: not valid YAML: while scanning a quoted scalar (line 3, column 13)"
        in shown.stdout
    )
