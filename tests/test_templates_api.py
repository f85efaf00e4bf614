"""Experiment templates through a real token broker, on SQLite and PostgreSQL: Submarine's
``/api/v1/template`` answers, submission with ``POST /api/v1/experiment/{template}`` (the GPU
kept, the template recorded on the experiment, the three 400s), permissions (another team's
template is 404 until an admin shares it; sharing is an admin's), and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import Broker, python_spec
from tests.test_model_registry_api import Api, refused, result
from tests.test_permissions import make_users

TEMPLATE = "mnist"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def teams(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Broker, dict[str, Api]]]:
    """A token broker with alice (vision), bob (nlp), root (admin); its local cluster has 2 GPUs."""
    url = request.getfixturevalue("pg_module_url") if request.param == "postgres" else None
    broker = Broker(tmp_path_factory.mktemp(f"templates-{request.param}"), auth="token", database_url=url)
    broker.add_cluster("local", kind="local", capacity={"gpu": 2}, **broker.shared("local"))
    tokens = make_users(broker)
    broker.start()
    users = {name: Api(broker, token) for name, token in tokens.items()}
    yield broker, users
    for user in users.values():
        user.http.close()
    broker.close()


def template_doc(name: str = TEMPLATE, **changes: Any) -> dict[str, Any]:
    spec = python_spec(
        "print('lr={{learning_rate}} batch={{batch}}')",
        name="{{experiment_name}}",
        roles={"Worker": {"replicas": 1, "resources": "cpu=0.1,memory=64M,gpu=1"}},
    )
    return {
        "name": name,
        "author": "alice",
        "description": "digits",
        "parameters": [
            {"name": "learning_rate", "value": "0.1", "required": "true", "description": "step size"},
            {"name": "experiment_name", "required": "true"},
            {"name": "batch", "value": "32", "required": "false"},
        ],
        "experimentSpec": spec,
        **changes,
    }


def submitted(user: Api, template: str, params: dict[str, Any], **body: Any) -> httpx.Response:
    return user.post(f"/experiment/{template}", json={"name": template, "params": params, **body})


def test_templates_are_stored_read_and_changed_as_submarine_answers(
    teams: tuple[Broker, dict[str, Api]],
) -> None:
    _, users = teams
    alice = users["alice"]
    created = result(alice.post("/template", json=template_doc("crud")))
    ident = created["experimentTemplateId"]
    assert isinstance(ident["id"], int) and isinstance(ident["serverTimestamp"], int)
    spec = created["experimentTemplateSpec"]
    assert (spec["name"], spec["author"], spec["namespace"], spec["shared"]) == (
        "crud",
        "alice",
        "vision",
        False,
    )
    assert spec["parameters"][0] == {
        "name": "learning_rate",
        "value": "0.1",
        "required": "true",
        "description": "step size",
    }
    # Submarine's per-role parameters, defaulting to the spec's own values.
    assert {p["name"]: p["value"] for p in spec["parameters"][3:]} == {
        "spec.Worker.replicas": "1",
        "spec.Worker.resourceMap.cpu": "0.1",
        "spec.Worker.resourceMap.memory": "64M",
    }

    listed = result(alice.get("/template"))
    mine = next(t for t in listed if t["experimentTemplateSpec"]["name"] == "crud")
    assert mine["experimentTemplateId"] is None  # as Submarine answered from its database
    got = result(alice.get("/template/crud"))
    assert got["experimentTemplateId"] is None and got["experimentTemplateSpec"] == spec

    message = refused(alice.post("/template", json=template_doc("crud")), 409)
    assert "crud" in message
    changed = result(alice.patch("/template/crud", json=template_doc("crud", description="digits, v2")))
    assert changed["experimentTemplateSpec"]["description"] == "digits, v2"
    assert changed["experimentTemplateId"]["id"] == ident["id"]
    assert result(alice.get("/template/crud"))["experimentTemplateSpec"]["description"] == "digits, v2"
    refused(alice.patch("/template/crud", json=template_doc("other")), 400, "name")

    deleted = result(alice.delete("/template/crud"))
    assert deleted["experimentTemplateSpec"]["name"] == "crud"
    assert refused(alice.get("/template/crud"), 404) == "ExperimentTemplate not found."
    assert refused(alice.delete("/template/crud"), 404) == "ExperimentTemplate not found."
    assert (
        refused(alice.patch("/template/crud", json=template_doc("crud")), 404)
        == "ExperimentTemplate not found."
    )


def test_bad_templates_are_400s_naming_the_field(teams: tuple[Broker, dict[str, Api]]) -> None:
    _, users = teams
    alice = users["alice"]
    refused(alice.post("/template", json=template_doc("bad name")), 400, "name")
    bad = template_doc("bad")
    bad["experimentSpec"]["meta"]["framework"] = "caffe"
    refused(alice.post("/template", json=bad), 400, "experimentSpec.meta.framework")
    unmapped = template_doc("bad")
    unmapped["experimentSpec"]["meta"]["envVars"] = {"DATA": "{{dataset}}"}
    message = refused(alice.post("/template", json=unmapped), 400, "experimentSpec.meta.envVars.DATA")
    assert message.startswith("Template contains unmapped value: [meta.envVars.DATA:dataset]")
    refused(alice.post("/template", json={**template_doc("bad"), "parameters": "x"}), 400, "parameters")
    assert refused(alice.get("/template/bad"), 404) == "ExperimentTemplate not found."


def test_an_experiment_from_a_template_is_filled_keeps_its_gpu_and_records_the_template(
    teams: tuple[Broker, dict[str, Api]],
) -> None:
    broker, users = teams
    alice = users["alice"]
    result(alice.post("/template", json=template_doc(TEMPLATE)))
    # The path names the template; the body's name (Submarine's model has one) does not count.
    answer = alice.post(
        f"/experiment/{TEMPLATE}",
        json={"name": "elsewhere", "params": {"learning_rate": 0.5, "experiment_name": "Run-1"}},
    )
    experiment = result(answer)
    assert experiment["status"] == "Accepted" and experiment["namespace"] == "vision"
    assert experiment["template"] == {
        "name": TEMPLATE,
        "namespace": "vision",
        "params": {"learning_rate": "0.5", "experiment_name": "Run-1"},
    }
    spec = experiment["spec"]
    assert spec["meta"]["name"] == "run-1"  # a name as every experiment's: lower-cased
    assert "lr=0.5 batch=32" in spec["meta"]["cmd"]
    assert spec["spec"]["Worker"]["resources"] == "cpu=0.1,memory=64M,gpu=1"
    assert spec["spec"]["Worker"]["resourceMap"]["gpu"] == "1"
    stored = result(alice.get(f"/experiment/{experiment['experimentId']}"))
    assert stored["template"]["name"] == TEMPLATE

    scaled = result(
        submitted(
            alice,
            TEMPLATE,
            {"learning_rate": "1", "experiment_name": "run-2", "spec.Worker.resourceMap.cpu": "0.2"},
        )
    )
    assert scaled["spec"]["spec"]["Worker"]["resources"] == "cpu=0.2,memory=64M,gpu=1"


def test_submissions_with_bad_params_are_400s_naming_them(teams: tuple[Broker, dict[str, Api]]) -> None:
    _, users = teams
    alice = users["alice"]
    result(alice.post("/template", json=template_doc("strict")))
    message = refused(
        submitted(alice, "strict", {"learning_rate": "1", "experiment_name": "x", "lr": "2"}),
        400,
        "params.lr",
    )
    assert message.startswith("Parameters contains illegal key: [lr]")
    message = refused(submitted(alice, "strict", {"experiment_name": "x"}), 400, "params.learning_rate")
    assert message.startswith("Missing required parameter: [learning_rate]")
    optional = template_doc("optional")
    optional["parameters"].append({"name": "dataset", "required": "false"})
    optional["experimentSpec"]["meta"]["envVars"] = {"DATA": "/data/{{dataset}}"}
    result(alice.post("/template", json=optional))
    message = refused(
        submitted(alice, "optional", {"learning_rate": "1", "experiment_name": "x"}), 400, "params"
    )
    assert message.startswith("Template contains unmapped value: [meta.envVars.DATA:dataset]")
    refused(submitted(alice, "strict", {"learning_rate": {"x": 1}}), 400, "params.learning_rate")
    # A filled spec that is no valid experiment: the experiment's own 400, naming the field.
    refused(
        submitted(
            alice, "strict", {"learning_rate": "1", "experiment_name": "x", "spec.Worker.replicas": "0"}
        ),
        400,
        "spec.Worker.replicas",
    )
    assert refused(submitted(alice, "nowhere", {}), 404) == "ExperimentTemplate not found."


def test_another_teams_template_is_404_until_an_admin_shares_it(teams: tuple[Broker, dict[str, Api]]) -> None:
    _, users = teams
    alice, bob, root = users["alice"], users["bob"], users["root"]
    result(alice.post("/template", json=template_doc("vision-only")))
    params = {"learning_rate": "1", "experiment_name": "from-bob"}
    for answer in (
        bob.get("/template/vision-only"),
        bob.delete("/template/vision-only"),
        bob.patch("/template/vision-only", json=template_doc("vision-only")),
        submitted(bob, "vision-only", params),
    ):
        assert refused(answer, 404) == "ExperimentTemplate not found."
    names = [t["experimentTemplateSpec"]["name"] for t in result(bob.get("/template"))]
    assert "vision-only" not in names
    message = refused(bob.post("/template", json=template_doc("into-vision", namespace="vision")), 403)
    assert "bob may not edit template/into-vision in namespace vision" in message

    # Sharing is an admin's, not the owning team's.
    message = refused(
        alice.patch("/template/vision-only", json=template_doc("vision-only", shared=True)), 403
    )
    assert "alice may not admin template/vision-only in namespace vision" in message
    refused(alice.post("/template", json=template_doc("shared-by-alice", shared=True)), 403)
    shared = result(root.patch("/template/vision-only", json=template_doc("vision-only", shared=True)))
    assert shared["experimentTemplateSpec"]["shared"] is True
    assert shared["experimentTemplateSpec"]["namespace"] == "vision"

    assert result(bob.get("/template/vision-only"))["experimentTemplateSpec"]["shared"] is True
    names = [t["experimentTemplateSpec"]["name"] for t in result(bob.get("/template"))]
    assert "vision-only" in names
    experiment = result(submitted(bob, "vision-only", params))
    assert experiment["namespace"] == "nlp" and experiment["owner"] == "bob"  # the submitter's team
    assert experiment["template"]["namespace"] == "vision"
    # Reading a shared template is not changing it.
    refused(bob.patch("/template/vision-only", json=template_doc("vision-only")), 403)
    refused(bob.delete("/template/vision-only"), 403)
    # An edit that leaves `shared` out keeps it.
    kept = result(alice.patch("/template/vision-only", json=template_doc("vision-only", description="v2")))
    assert kept["experimentTemplateSpec"]["shared"] is True
    result(alice.delete("/template/vision-only"))


def cli(broker: Broker, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", "--url", broker.url, "--token", token, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_the_cli_creates_lists_submits_from_and_deletes_a_template(
    teams: tuple[Broker, dict[str, Api]], tmp_path: Path
) -> None:
    broker, users = teams
    token = users["alice"].token
    source = tmp_path / "template.yaml"
    source.write_text(yaml.safe_dump(template_doc("cli-mnist")))
    made = cli(broker, token, "template", "create", "-f", str(source))
    assert made.returncode == 0, made.stderr
    assert "template cli-mnist created in namespace vision" in made.stdout
    listed = cli(broker, token, "template", "list")
    assert listed.returncode == 0 and "cli-mnist" in listed.stdout, listed.stderr
    shown = cli(broker, token, "template", "get", "cli-mnist")
    assert shown.returncode == 0 and "learning_rate" in shown.stdout and "step size" in shown.stdout

    ran = cli(
        broker,
        token,
        "experiment",
        "submit",
        "--template",
        "cli-mnist",
        "--param",
        "learning_rate=0.25",
        "--param",
        "experiment_name=cli-run",
        "--wait",
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    experiment_id = next(w for w in ran.stdout.split() if w.startswith("experiment-"))
    logs = cli(broker, token, "experiment", "logs", experiment_id)
    assert "lr=0.25 batch=32" in logs.stdout, logs.stdout + logs.stderr
    got = cli(broker, token, "experiment", "get", experiment_id)
    assert "cli-mnist (learning_rate=0.25, experiment_name=cli-run)" in got.stdout, got.stdout

    bad = cli(
        broker, token, "experiment", "submit", "--template", "cli-mnist", "--param", "experiment_name=x"
    )
    assert bad.returncode == 1 and "Missing required parameter: [learning_rate]" in bad.stderr
    neither = cli(broker, token, "experiment", "submit", "--param", "a=b")
    assert neither.returncode == 2 and "give either -f FILE or --template NAME" in neither.stderr
    gone = cli(broker, token, "template", "delete", "cli-mnist")
    assert gone.returncode == 0 and "template cli-mnist deleted" in gone.stdout
    missing = cli(broker, token, "template", "get", "cli-mnist", "--json")
    assert missing.returncode == 1 and "ExperimentTemplate not found." in missing.stderr
    assert json.loads(cli(broker, token, "template", "list", "--json").stdout) is not None
