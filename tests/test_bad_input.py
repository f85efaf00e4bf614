"""Bad input gets a 4xx Submarine envelope whose message names the field, and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import Broker, python_spec


def _post_raw(
    broker: Broker, body: bytes, content_type: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    answer = broker.client.post("/experiment", content=body, headers={"content-type": content_type})
    return answer.status_code, answer.json()


def _stored(broker: Broker) -> int:
    return broker.client.get("/experiment").json()["attributes"]["total"]


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker for the read-only error cases of this module (starting one per case is slow)."""
    broker = Broker(tmp_path_factory.mktemp("bad-input")).start()
    yield broker
    broker.close()


def _spec(**changes: Any) -> dict[str, Any]:
    spec = python_spec("pass", framework="pytorch", roles={"Worker": {"replicas": 1, "resources": "cpu=0.1"}})
    for path, value in changes.items():
        target = spec
        *parents, leaf = path.split("__")
        for key in parents:
            target = target[key]
        if value is _DROP:
            target.pop(leaf)
        else:
            target[leaf] = value
    return spec


_DROP = object()

CASES = [
    ("malformed JSON", b'{"meta": {"name": "x",', 400, "malformed JSON body at line 1"),
    ("not an object", b"[1, 2, 3]", 400, "must be a JSON object"),
    ("empty body", b"", 400, "body is empty"),
    ("not UTF-8", b'{"meta": "\xff\xfe"}', 400, "not UTF-8"),
    ("wrong type", json.dumps(_spec(spec__Worker__replicas="two")).encode(), 400, "spec.Worker.replicas"),
    (
        "unknown framework",
        json.dumps(_spec(meta__framework="caffe")).encode(),
        400,
        "unknown framework 'caffe'",
    ),
    ("unknown role key", json.dumps(_spec(spec={"worker": {"replicas": 1}})).encode(), 400, "spec.worker"),
    (
        "bad resources",
        json.dumps(_spec(spec__Worker__resources="cpu=lots")).encode(),
        400,
        "spec.Worker.resources",
    ),
    (
        "unknown resource",
        json.dumps(_spec(spec__Worker__resources="tpu=1")).encode(),
        400,
        "unknown resource 'tpu'",
    ),
    ("empty cmd", json.dumps(_spec(meta__cmd="   ")).encode(), 400, "meta.cmd"),
    ("missing cmd", json.dumps(_spec(meta__cmd=_DROP)).encode(), 400, "meta.cmd"),
    ("negative replicas", json.dumps(_spec(spec__Worker__replicas=-1)).encode(), 400, "spec.Worker.replicas"),
    ("zero roles", json.dumps(_spec(spec={})).encode(), 400, "spec"),
    ("missing meta", json.dumps(_spec(meta=_DROP)).encode(), 400, "meta: is required"),
    ("unknown field", json.dumps(_spec(meta__nmae="typo")).encode(), 400, "meta.nmae: unknown field"),
    (
        "unknown cluster",
        json.dumps(_spec(meta__placement={"cluster": "gpu-east"})).encode(),
        400,
        "meta.placement.cluster: unknown cluster 'gpu-east'",
    ),
    ("bad namespace", json.dumps(_spec(meta__namespace="Team_A")).encode(), 400, "meta.namespace"),
]


@pytest.mark.parametrize(("label", "body", "code", "needle"), CASES, ids=[c[0] for c in CASES])
def test_bad_submission_is_a_clear_4xx_and_stores_nothing(
    shared_broker: Broker, label: str, body: bytes, code: int, needle: str
) -> None:
    broker = shared_broker
    before = _stored(broker)
    status, envelope = _post_raw(broker, body)
    assert status == code, envelope
    assert envelope["code"] == code and envelope["success"] is None and envelope["result"] is None
    assert list(envelope) == ["status", "code", "success", "message", "result", "attributes"]
    assert needle in envelope["message"], envelope["message"]
    assert _stored(broker) == before


def test_body_over_the_limit_is_refused_with_413(broker_factory) -> None:
    broker = broker_factory(max_body_bytes=2048)
    spec = _spec()
    spec["meta"]["envVars"] = {"BIG": "x" * 5000}
    status, envelope = _post_raw(broker, json.dumps(spec).encode())
    assert status == 413 and "limit of 2048 bytes" in envelope["message"]

    # Chunked upload without a Content-Length is cut off while reading, too.
    def chunks():
        yield json.dumps(spec).encode()

    answer = broker.client.post("/experiment", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413, answer.text
    assert _stored(broker) == 0


def test_yaml_body_is_accepted_and_bad_yaml_named(broker: Broker) -> None:
    import yaml

    status, envelope = _post_raw(broker, yaml.safe_dump(_spec()).encode(), "application/yaml")
    assert status == 200 and envelope["result"]["status"] == "Accepted"
    status, envelope = _post_raw(broker, b"meta: [unclosed\n", "application/yaml")
    assert status == 400 and "malformed YAML body at line" in envelope["message"]


@pytest.mark.parametrize(
    ("method", "path", "code", "needle"),
    [
        ("GET", "/experiment/experiment-1-0001", 404, "experiment-1-0001"),
        ("DELETE", "/experiment/nope", 404, "nope"),
        ("GET", "/experiment/logs/nope", 404, "nope"),
        ("GET", "/nothing-here", 404, "no such endpoint"),
        ("PUT", "/experiment", 405, "PUT is not allowed"),
        ("GET", "/experiment?status=bogus", 400, "unknown status 'bogus'"),
        ("GET", "/experiment?page=abc", 400, "page"),
        ("GET", "/experiment?pageSize=0", 400, "pageSize"),
        ("GET", "/cluster/nope", 404, "nope"),
    ],
)
def test_errors_are_envelopes(shared_broker: Broker, method: str, path: str, code: int, needle: str) -> None:
    answer = shared_broker.client.request(method, path)
    assert answer.status_code == code, answer.text
    envelope = answer.json()
    assert envelope["code"] == code and needle in envelope["message"], envelope


def test_a_spec_with_several_problems_names_them_all(shared_broker: Broker, tmp_path) -> None:
    import subprocess
    import sys

    import yaml

    spec = _spec(meta__foo=1, spec={"Worker": {"replicas": 0}, "worker": {}, "Master": {"replicas": 2}})
    spec["meta"]["placement"] = {"cluster": "gpu-east"}
    status, envelope = _post_raw(shared_broker, json.dumps(spec).encode())
    assert status == 400, envelope
    problems = [
        ("meta.foo", "unknown field"),
        ("spec.Worker.replicas", "Input should be greater than or equal to 1"),
        (
            "spec.worker",
            "unknown role 'worker' for framework pytorch; expected one of Master, Worker "
            "(role keys are case-sensitive)",
        ),
        ("spec.Master.replicas", "a PyTorch experiment has exactly one Master"),
        ("meta.placement.cluster", "unknown cluster 'gpu-east' (known: local)"),
    ]
    assert envelope["attributes"]["errors"] == [{"field": f, "problem": p} for f, p in problems]
    assert envelope["message"] == "Invalid experiment spec: " + "; ".join(f"{f}: {p}" for f, p in problems)
    assert "more problem" not in envelope["message"]

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "--url",
            shared_broker.url,
            "experiment",
            "submit",
            "-f",
            str(spec_file),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 1
    assert cli.stderr.splitlines() == [
        "Error: Invalid experiment spec (5 problems):",
        *(f"  {f}: {p}" for f, p in problems),
    ]


def test_a_notebook_spec_with_several_problems_names_them_all(shared_broker: Broker) -> None:
    body = {"meta": {"name": "Bad Name", "namespace": "Team_A"}, "spec": {"bogus": 1}}
    answer = shared_broker.client.post("/notebook", json=body)
    assert answer.status_code == 400, answer.text
    errors = answer.json()["attributes"]["errors"]
    assert [e["field"] for e in errors] == ["meta.name", "meta.namespace", "spec.bogus"]
    assert answer.json()["message"].startswith("Invalid notebook spec: meta.name: must be a DNS label")


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "problem"),
    [
        ("GET", "/experiment?pageSize=0", None, "pageSize", "must be between 1 and 1000"),
        ("GET", "/experiment?page=abc", None, "page", "'abc' is not a whole number"),
        ("POST", "/placement/explain?kind=job", {}, "kind", "'job' is not experiment or notebook"),
        ("POST", "/experiment", _spec(meta__namespace="Team_A"), "meta.namespace", "must be a DNS label"),
    ],
)
def test_every_400_naming_a_field_lists_it_in_attributes_errors(
    shared_broker: Broker, method: str, path: str, body: Any, field: str, problem: str
) -> None:
    answer = shared_broker.client.request(method, path, json=body)
    assert answer.status_code == 400, answer.text
    (error,) = answer.json()["attributes"]["errors"]
    assert error["field"] == field and error["problem"].startswith(problem), error
    assert f"{field}: {error['problem']}" in answer.json()["message"]
