"""The Submarine ExperimentSpec: roles per framework, commands, images and refused typos."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from runtimes.spec import FRAMEWORK_ROLES, ExperimentSpec, SpecFieldError, cross_field_problems, split_command


def doc(framework: str = "pytorch", spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    """A minimal submission; ``meta`` keys override the defaults (``cmd=None`` removes it)."""
    body: dict[str, Any] = {"name": "mnist", "framework": framework, "cmd": "python train.py"}
    body.update(meta)
    body = {k: v for k, v in body.items() if v is not None}
    return {"meta": body, "spec": spec if spec is not None else {"Worker": {"replicas": 1}}}


def refuse(document: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        ExperimentSpec.model_validate(document)
    return info.value


def field_error(document: dict[str, Any]) -> SpecFieldError:
    """The SpecFieldError pydantic wrapped (what the API turns into a 400 naming the field)."""
    error = refuse(document).errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    assert isinstance(cause, SpecFieldError), error
    return cause


EXPECTED_ROLES = {
    "tensorflow": ["Chief", "Master", "Worker", "Ps", "Evaluator"],
    "pytorch": ["Master", "Worker"],
    "xgboost": ["Master", "Worker"],
    "python": ["Master", "Worker"],
}


@pytest.mark.parametrize(
    ("framework", "role"), [(f, r) for f, roles in EXPECTED_ROLES.items() for r in roles]
)
def test_each_framework_accepts_its_roles(framework: str, role: str) -> None:
    spec = ExperimentSpec.model_validate(doc(framework, {role: {"replicas": 1}}))
    assert list(spec.spec) == [role]


def test_role_table_is_as_documented() -> None:
    assert {k: list(v) for k, v in FRAMEWORK_ROLES.items()} == EXPECTED_ROLES


@pytest.mark.parametrize(
    ("framework", "role"),
    [
        ("pytorch", "worker"),
        ("pytorch", "Ps"),
        ("pytorch", "Chief"),
        ("xgboost", "Evaluator"),
        ("tensorflow", "ps"),
        ("python", "Chief"),
        ("tensorflow", "Launcher"),
    ],
)
def test_unknown_role_refused_naming_the_key(framework: str, role: str) -> None:
    error = field_error(doc(framework, {role: {"replicas": 1}}))
    assert error.field == f"spec.{role}"
    assert str(error).startswith(f"spec.{role}: ")
    assert f"'{role}'" in error.reason
    for allowed in EXPECTED_ROLES[framework]:
        assert allowed in error.reason


def test_lower_case_worker_message_mentions_case() -> None:
    error = field_error(doc("pytorch", {"worker": {"replicas": 2}}))
    assert "case-sensitive" in error.reason


def test_unknown_framework_refused() -> None:
    error = refuse(doc("mxnet")).errors()[0]
    assert error["loc"] == ("meta", "framework")
    assert "mxnet" in error["msg"]
    for known in ("tensorflow", "pytorch", "xgboost", "python"):
        assert known in error["msg"]


@pytest.mark.parametrize("framework", ["TensorFlow", "PYTORCH", " XGBoost ", "Python"])
def test_framework_is_case_insensitive(framework: str) -> None:
    spec = ExperimentSpec.model_validate(doc(framework))
    assert spec.meta.framework == framework.strip().lower()


@pytest.mark.parametrize("replicas", [0, -1])
def test_replicas_must_be_positive(replicas: int) -> None:
    error = refuse(doc(spec={"Worker": {"replicas": replicas}})).errors()[0]
    assert error["loc"] == ("spec", "Worker", "replicas")


def test_replicas_default_to_one() -> None:
    assert ExperimentSpec.model_validate(doc(spec={"Worker": {}})).spec["Worker"].replicas == 1


def test_unknown_task_field_refused_with_its_path() -> None:
    errors = refuse(doc(spec={"Worker": {"replica": 2}})).errors()
    assert errors[0]["type"] == "extra_forbidden"
    assert errors[0]["loc"] == ("spec", "Worker", "replica")


def test_unknown_meta_field_refused() -> None:
    errors = refuse(doc(frameworks="pytorch")).errors()
    assert errors[0]["loc"] == ("meta", "frameworks")


def test_echo_fields_accepted() -> None:
    document = doc(experimentId="experiment-1-0001")
    document["spec"] = {
        "Worker": {
            "replicas": 2,
            "resources": "cpu=2,memory=2G",
            "resourceMap": {"cpu": "2", "memory": "2G"},
            "cpu": "2",
            "gpu": None,
            "memory": "2G",
            "name": None,
            "image": None,
            "cmd": None,
            "envVars": None,
        }
    }
    spec = ExperimentSpec.model_validate(document)
    assert spec.spec["Worker"].replicas == 2
    assert spec.spec["Worker"].resources == "cpu=2,memory=2G"


def test_bad_resources_refused_with_the_field() -> None:
    error = refuse(doc(spec={"Worker": {"resources": "cpu=abc"}})).errors()[0]
    assert error["loc"] == ("spec", "Worker", "resources")
    assert "cpu 'abc'" in error["msg"]


@pytest.mark.parametrize("cmd", [None, "", "   "])
def test_empty_command_names_meta_cmd(cmd: str | None) -> None:
    error = field_error(doc(cmd=cmd))
    assert error.field == "meta.cmd"


def test_empty_task_command_names_the_task_cmd() -> None:
    error = field_error(doc(spec={"Worker": {"cmd": "  "}}))
    assert error.field == "spec.Worker.cmd"


def test_task_cmd_is_enough_without_meta_cmd() -> None:
    spec = ExperimentSpec.model_validate(doc(cmd=None, spec={"Worker": {"cmd": "python w.py"}}))
    assert spec.spec["Worker"].cmd == "python w.py"
    assert spec.meta.cmd is None


def test_role_without_cmd_and_no_meta_cmd_is_refused_even_if_another_role_has_one() -> None:
    error = field_error(doc(cmd=None, spec={"Master": {"cmd": "python m.py"}, "Worker": {}}))
    assert error.field == "meta.cmd"


def test_bad_quoting_in_meta_cmd() -> None:
    error = field_error(doc(cmd='python -c "print(1)'))
    assert error.field == "meta.cmd"
    assert "cannot split" in error.reason


def test_bad_quoting_in_task_cmd() -> None:
    error = field_error(doc(spec={"Worker": {"cmd": "python 'x"}}))
    assert error.field == "spec.Worker.cmd"


def test_split_command_quotes() -> None:
    assert split_command('python -c "print(1)"') == ["python", "-c", "print(1)"]
    assert split_command("python train.py --lr 0.01") == ["python", "train.py", "--lr", "0.01"]
    assert split_command("echo 'a b'  c") == ["echo", "a b", "c"]


@pytest.mark.parametrize("cmd", ["", "   "])
def test_split_command_refuses_empty(cmd: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        split_command(cmd)


@pytest.mark.parametrize("framework", ["pytorch", "xgboost"])
def test_more_than_one_master_refused(framework: str) -> None:
    error = field_error(doc(framework, {"Master": {"replicas": 2}, "Worker": {"replicas": 1}}))
    assert error.field == "spec.Master.replicas"


def test_one_master_accepted() -> None:
    spec = ExperimentSpec.model_validate(
        doc("pytorch", {"Master": {"replicas": 1}, "Worker": {"replicas": 4}})
    )
    assert spec.spec["Master"].replicas == 1


def test_more_than_one_chief_refused() -> None:
    error = field_error(doc("tensorflow", {"Chief": {"replicas": 2}, "Worker": {}}))
    assert error.field == "spec.Chief.replicas"


def test_ordered_roles_puts_chief_first() -> None:
    spec = ExperimentSpec.model_validate(
        doc("tensorflow", {"Evaluator": {}, "Ps": {}, "Worker": {}, "Chief": {}})
    )
    assert [role for role, _ in spec.ordered_roles()] == ["Chief", "Worker", "Ps", "Evaluator"]


def test_ordered_roles_puts_master_first() -> None:
    spec = ExperimentSpec.model_validate(doc("pytorch", {"Worker": {"replicas": 2}, "Master": {}}))
    assert [role for role, _ in spec.ordered_roles()] == ["Master", "Worker"]


def _imaged(task: str | None, image: str | None, docker: str | None) -> ExperimentSpec:
    document = doc(spec={"Worker": {"image": task} if task else {}})
    document["environment"] = {k: v for k, v in {"image": image, "dockerImage": docker}.items() if v}
    return ExperimentSpec.model_validate(document)


@pytest.mark.parametrize(
    ("task", "image", "docker", "expected"),
    [
        ("t:1", "e:1", "d:1", "t:1"),
        (None, "e:1", "d:1", "e:1"),
        (None, None, "d:1", "d:1"),
        ("t:1", None, "d:1", "t:1"),
        (None, None, None, None),
    ],
)
def test_image_precedence(
    task: str | None, image: str | None, docker: str | None, expected: str | None
) -> None:
    assert _imaged(task, image, docker).image("Worker") == expected


def test_image_is_per_role() -> None:
    document = doc(spec={"Master": {"image": "m:1"}, "Worker": {}})
    document["environment"] = {"image": "e:1"}
    spec = ExperimentSpec.model_validate(document)
    assert (spec.image("Master"), spec.image("Worker")) == ("m:1", "e:1")


def test_name_is_lower_cased() -> None:
    assert ExperimentSpec.model_validate(doc(name="MNIST-Run")).meta.name == "mnist-run"


@pytest.mark.parametrize("name", ["", "   "])
def test_blank_name_refused(name: str) -> None:
    # A whitespace-only name must not become an experiment called "".
    error = refuse(doc(name=name)).errors()[0]
    assert error["loc"] == ("meta", "name")


def test_empty_spec_refused() -> None:
    error = refuse(doc(spec={})).errors()[0]
    assert error["loc"] == ("spec",)


def test_spec_field_error_carries_field_and_reason() -> None:
    error = SpecFieldError("spec.Worker.replicas", "must be positive")
    assert (error.field, error.reason) == ("spec.Worker.replicas", "must be positive")
    assert str(error) == "spec.Worker.replicas: must be positive"
    assert isinstance(error, ValueError)


def test_non_numeric_cpu_nan_is_a_field_error_not_a_crash() -> None:
    # "cpu=NaN" must come back as a validation error on the resources field (a 400),
    # not as an unhandled decimal.InvalidOperation (a 500).
    error = refuse(doc(spec={"Worker": {"resources": "cpu=NaN"}})).errors()[0]
    assert error["loc"] == ("spec", "Worker", "resources")


def test_every_cross_field_problem_is_carried_at_once() -> None:
    document = doc(
        "pytorch",
        {"worker": {}, "Master": {"replicas": "3"}, "Worker": {"cmd": "python 'x"}, "Chief": {}},
        cmd="  ",
    )
    error = field_error(document)
    assert [(p.field, p.reason.split(";")[0]) for p in error.problems] == [
        ("spec.worker", "unknown role 'worker' for framework pytorch"),
        ("meta.cmd", "the command is empty"),
        ("spec.Worker.cmd", "cannot split the command: No closing quotation"),
        ("spec.Chief", "unknown role 'Chief' for framework pytorch"),
        ("spec.Master.replicas", "a PyTorch experiment has exactly one Master"),
    ]
    assert [p.field for p in cross_field_problems(document)] == [p.field for p in error.problems]


def test_cross_field_problems_are_found_when_other_fields_are_refused_too() -> None:
    document = doc("pytorch", {"worker": {"replicas": "many"}}, bogus=1)
    fields = {tuple(e["loc"]) for e in refuse(document).errors()}
    assert ("meta", "bogus") in fields  # pydantic stops before the roles...
    assert [p.field for p in cross_field_problems(document)] == ["spec.worker"]  # ...this does not
    assert cross_field_problems(doc("caffe", {"worker": {}})) == []  # nothing checked against it
    assert cross_field_problems({"meta": "x", "spec": []}) == []
