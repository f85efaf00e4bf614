"""Filling an experiment template by Submarine's rules: by placeholder name, by ``<path>:name``
and by path; the three submission 400s; a GPU request that survives; and what a template must
be to be stored at all."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from broker.errors import BadRequest
from broker.experiments.validation import parse_experiment_spec
from broker.templates.spec import (
    TemplateSpec,
    check_template,
    fill,
    given_params,
    parse_template,
    with_role_params,
)
from tests.support import REPO


def document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "tf-mnist",
        "author": "alice",
        "description": "mnist",
        "parameters": [
            {"name": "learning_rate", "value": "0.1", "required": "true", "description": "lr"},
            {"name": "experiment_name", "required": True},
            {"name": "batch", "value": 32, "required": False},
        ],
        "experimentSpec": {
            "meta": {
                "name": "{{experiment_name}}",
                "framework": "tensorflow",
                "cmd": "python m.py --lr={{learning_rate}} --batch={{ batch }}",
                "envVars": {"BATCH": "{{batch}}"},
            },
            "environment": {"image": "python:3.11"},
            "spec": {"Worker": {"replicas": 1, "resources": "cpu=1,memory=1G,gpu=1"}},
        },
    }
    doc.update(changes)
    return doc


def stored(doc: dict[str, Any] | None = None) -> TemplateSpec:
    spec = with_role_params(parse_template(doc or document()))
    check_template(spec)
    return spec


def refusal(call: Any) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        call()
    assert caught.value.code == 400
    return caught.value


def test_placeholders_are_filled_by_name_and_defaults_apply() -> None:
    filled = fill(stored(), {"learning_rate": "0.01", "experiment_name": "run1"})
    meta = filled.document["meta"]
    assert meta["name"] == "run1"
    assert meta["cmd"] == "python m.py --lr=0.01 --batch=32"  # batch: its default, spaces in {{ }} too
    assert meta["envVars"] == {"BATCH": "32"}
    assert filled.params == {"learning_rate": "0.01", "experiment_name": "run1"}


def test_a_path_qualified_param_wins_over_the_plain_one_for_its_field() -> None:
    doc = document()
    doc["parameters"].append({"name": "meta.envVars.BATCH:batch", "value": "64"})
    filled = fill(stored(doc), {"learning_rate": "1", "experiment_name": "x"})
    assert filled.document["meta"]["envVars"] == {"BATCH": "64"}
    assert filled.document["meta"]["cmd"].endswith("--batch=32")


def test_a_param_named_like_a_path_replaces_that_value_with_its_type() -> None:
    doc = document()
    doc["parameters"].append({"name": "meta.cmd", "value": None})
    spec = stored(doc)
    names = [p.name for p in spec.parameters]
    # Submarine's per-role parameters are added to the template, once.
    assert names[-3:] == [
        "spec.Worker.replicas",
        "spec.Worker.resourceMap.cpu",
        "spec.Worker.resourceMap.memory",
    ]
    filled = fill(
        spec,
        {
            "learning_rate": "1",
            "experiment_name": "x",
            "meta.cmd": "python other.py",
            "spec.Worker.replicas": "3",
        },
    )
    assert filled.document["meta"]["cmd"] == "python other.py"
    assert filled.document["spec"]["Worker"]["replicas"] == 3  # a number, as the spec had it


def test_the_gpu_survives_submission_and_a_resource_param_changes_one_entry() -> None:
    spec = stored()
    plain = fill(spec, {"learning_rate": "1", "experiment_name": "x"})
    assert plain.document["spec"]["Worker"]["resources"] == "cpu=1,memory=1G,gpu=1"
    more = fill(spec, {"learning_rate": "1", "experiment_name": "x", "spec.Worker.resourceMap.cpu": "2"})
    assert more.document["spec"]["Worker"]["resources"] == "cpu=2,memory=1G,gpu=1"


def test_an_unknown_param_key_is_a_400_naming_it() -> None:
    error = refusal(lambda: fill(stored(), {"learning_rate": "1", "experiment_name": "x", "lr": "2"}))
    assert error.message.startswith("Parameters contains illegal key: [lr]")
    assert [p.field for p in error.problems] == ["params.lr"]


def test_a_missing_required_param_is_a_400_naming_it() -> None:
    error = refusal(lambda: fill(stored(), {"experiment_name": "x"}))
    assert error.message.startswith("Missing required parameter: [learning_rate]")
    assert [p.field for p in error.problems] == ["params.learning_rate"]


def test_a_placeholder_left_without_a_value_is_a_400_naming_it() -> None:
    doc = document()
    doc["parameters"].append({"name": "data"})  # optional, no default
    doc["experimentSpec"]["meta"]["envVars"]["DATA"] = "/data/{{data}}"
    error = refusal(lambda: fill(stored(doc), {"learning_rate": "1", "experiment_name": "x"}))
    assert error.message.startswith("Template contains unmapped value: [meta.envVars.DATA:data]")
    filled = fill(stored(doc), {"learning_rate": "1", "experiment_name": "x", "data": "mnist"})
    assert filled.document["meta"]["envVars"]["DATA"] == "/data/mnist"


def test_a_value_landing_in_the_git_password_is_recorded_masked() -> None:
    doc = document()
    doc["parameters"].append({"name": "token", "required": True})
    doc["experimentSpec"]["code"] = {
        "syncMode": "git",
        "git": {"url": "https://x/y.git", "password": "{{token}}"},
    }
    filled = fill(stored(doc), {"learning_rate": "1", "experiment_name": "x", "token": "s3cret"})
    assert filled.document["code"]["git"]["password"] == "s3cret"
    assert filled.params["token"] == "******"


def test_params_must_be_an_object_of_scalars() -> None:
    assert given_params({"a": 1, "b": True, "c": None, "d": "x"}) == {"a": "1", "b": "true", "d": "x"}
    assert refusal(lambda: given_params(["a"])).field == "params"
    assert refusal(lambda: given_params({"a": {"b": 1}})).field == "params.a"


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"name": "bad name"}, "name", "is not a template name"),
        ({"name": None}, "name", "a template name is required"),
        ({"experimentSpec": None}, "experimentSpec", "is required"),
        ({"parameters": [{"value": "1"}]}, "parameters.0.name", "is required"),
        ({"parameters": [{"name": "a", "colour": 1}]}, "parameters.0.colour", "unknown field"),
        ({"parameters": [{"name": "a", "required": "maybe"}]}, "parameters.0.required", "true or false"),
        ({"owner": "x"}, "owner", "unknown field"),
    ],
)
def test_a_bad_template_document_is_a_400_naming_the_field(
    changes: dict[str, Any], field: str, message: str
) -> None:
    error = refusal(lambda: stored(document(**changes)))
    assert field in [p.field for p in error.problems], error.problems
    assert message in error.message


def test_a_template_no_params_could_make_valid_is_refused_when_stored() -> None:
    undeclared = document()
    undeclared["experimentSpec"]["meta"]["cmd"] = "python m.py --lr={{learning_rate}} --x={{nowhere}}"
    undeclared["experimentSpec"]["meta"]["envVars"] = {"BATCH": "{{batch}}"}
    error = refusal(lambda: stored(undeclared))
    assert error.message.startswith("Template contains unmapped value: [meta.cmd:nowhere]")

    unused = document()
    unused["parameters"].append({"name": "dropout", "value": "0.5"})
    assert refusal(lambda: stored(unused)).message.startswith("Parameters contains unused key: [dropout]")

    bad_framework = document()
    bad_framework["experimentSpec"]["meta"]["framework"] = "caffe"
    error = refusal(lambda: stored(bad_framework))
    assert [p.field for p in error.problems] == ["experimentSpec.meta.framework"]
    assert "unknown framework 'caffe'" in error.message


def test_fields_a_parameter_decides_are_checked_at_submission_only() -> None:
    doc = document()
    doc["parameters"].append({"name": "workers", "required": True})
    doc["experimentSpec"]["spec"]["Worker"]["replicas"] = "{{workers}}"
    spec = stored(doc)  # "{{workers}}" is no number, but a submission may give one
    filled = fill(spec, {"learning_rate": "1", "experiment_name": "x", "workers": "2"})
    assert filled.document["spec"]["Worker"]["replicas"] == "2"
    # Submarine's per-role replicas parameter has no default where the spec's is a placeholder.
    assert next(p for p in spec.parameters if p.name == "spec.Worker.replicas").value is None


def test_the_readme_template_is_stored_and_filled_as_the_readme_says() -> None:
    text = (REPO / "README.md").read_text()
    found = re.search(r"```yaml\n# an experiment template, in mnist-template.yaml\n(.*?)```", text, re.S)
    assert found is not None
    spec = stored(yaml.safe_load(found.group(1)))
    filled = fill(spec, {"learning_rate": "0.01"})
    experiment = parse_experiment_spec(filled.document)
    assert experiment.meta.cmd == "python train.py --lr=0.01 --epochs=3"
    assert filled.document["spec"]["Worker"]["resources"] == "cpu=2,memory=4G,gpu=1"


def test_a_template_read_back_with_a_role_renamed_drops_the_old_roles_parameters() -> None:
    first = stored()
    again = document(parameters=[p.to_json() for p in first.parameters])
    roles = again["experimentSpec"]["spec"]
    roles["Chief"] = roles.pop("Worker")
    names = [p.name for p in stored(again).parameters]
    assert "spec.Worker.replicas" not in names and "spec.Chief.replicas" in names
    # The same document read back unchanged keeps its parameters once each.
    assert [
        p.name for p in stored(document(parameters=[p.to_json() for p in first.parameters])).parameters
    ] == [p.name for p in first.parameters]


def test_a_stale_per_role_default_never_overrides_the_spec() -> None:
    first = stored()
    edited = document(parameters=[p.to_json() for p in first.parameters])  # read back: cpu "1"
    edited["experimentSpec"]["spec"]["Worker"]["resources"] = "cpu=4,memory=1G,gpu=1"
    edited["experimentSpec"]["spec"]["Worker"]["replicas"] = 2
    again = stored(edited)
    assert {p.name: p.value for p in again.parameters if p.name.startswith("spec.")} == {
        "spec.Worker.replicas": "2",
        "spec.Worker.resourceMap.cpu": "4",
        "spec.Worker.resourceMap.memory": "1G",
    }
    filled = fill(again, {"learning_rate": "1", "experiment_name": "x"})
    assert filled.document["spec"]["Worker"] == {"replicas": 2, "resources": "cpu=4,memory=1G,gpu=1"}
