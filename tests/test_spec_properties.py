"""Property: no submitted document, however hostile, gets a 500 or stores a row that fails to show.

Documents follow the ExperimentSpec and NotebookSpec structure (so many get past the first
checks) with up to three hostile values or parts anywhere: NaN and infinities, integers past 64 bits, NUL and lone
surrogates, ``=`` in names, unicode, wrong types, deep nesting, resource strings out of range. Each
is POSTed as JSON or YAML through the whole app, in-process, on SQLite and on PostgreSQL. Every
answer is below 500 and strict JSON; an accepted one then reads back, lists and shows its logs
and events as strict JSON too, and is removed so the next listing stays small.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.inprocess import InProcessBroker
from tests.test_hostile_bodies import strict_json

#: Examples per test and database; raise it (SB_PROPERTY_EXAMPLES=2000) for a longer hunt.
EXAMPLES = int(os.environ.get("SB_PROPERTY_EXAMPLES", "120"))

HOSTILE_SCALARS = st.sampled_from(
    [
        math.nan,
        math.inf,
        -math.inf,
        1e308,
        -0.0,
        2**63,
        -(2**63) - 1,
        10**30,
        2**63 - 1,
        0,
        -1,
        "",
        " ",
        "\x00",
        "a\x00b",
        "=",
        "A=B",
        "\ud800",
        "inf",
        "NaN",
        "1e400",
        "ünïcødé ☃ 𝄞",
        "x" * 300,
        True,
        None,
    ]
)
SCALARS = st.one_of(
    HOSTILE_SCALARS,
    st.text(max_size=20),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
#: Free-form JSON, deep enough to pass the depth limit now and then.
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


DEEP = st.integers(min_value=20, max_value=1200).map(deep)


NAME = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
ENV_NAME = st.one_of(
    st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True), st.sampled_from(["", "A=B", "A\x00"])
)
ENV = st.dictionaries(ENV_NAME, st.text(max_size=10), max_size=3)
RESOURCES = st.one_of(
    st.sampled_from(["cpu=0.1,memory=64M", "cpu=1,memory=1Gi", "cpu=500m,nvidia.com/gpu=0"]),
    st.sampled_from(
        [
            "cpu=1m",
            "cpu=1e-12",
            "cpu=1e400",
            "cpu=NaN",
            "cpu=Infinity",
            "cpu=-1",
            "memory=1e400Gi",
            "memory=" + "9" * 60 + "Ei",
            "gpu=" + "9" * 5000,
            "nvidia.com/gpu=1",
            "cpu=0.1,cpu=0.2",
            "tpu=1",
        ]
    ),
    st.text(max_size=20),
)
SECONDS = st.one_of(
    st.floats(min_value=0, max_value=1e6),
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from([1e300, "inf", "1e400", "NaN"]),
)
COMMAND = st.one_of(st.just("python -c pass"), st.just("python train.py --lr 0.1"), st.text(max_size=20))
TEXT = st.text(max_size=12)


def optional(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


PLACEMENT = optional(
    {
        "cluster": st.sampled_from(["local", "other"]),
        "clusterSelector": st.dictionaries(TEXT, TEXT, max_size=2),
        "preferredClusters": st.lists(st.sampled_from(["local", "other"]), max_size=2),
    }
)
TASK = optional(
    {
        "replicas": st.one_of(st.integers(min_value=1, max_value=3), st.integers(min_value=0, max_value=300)),
        "resources": RESOURCES,
        "cmd": COMMAND,
        "envVars": ENV,
        "image": TEXT,
        "name": TEXT,
        "resourceMap": st.dictionaries(st.sampled_from(["cpu", "memory"]), SCALARS, max_size=2),
        "cpu": SCALARS,
        "gpu": SCALARS,
        "memory": SCALARS,
    }
)
ENVIRONMENT = optional(
    {
        "name": TEXT,
        "image": st.just("python:3.11"),
        "dockerImage": TEXT,
        "kernelSpec": st.dictionaries(TEXT, ANY_JSON, max_size=3),
        "description": TEXT,
    }
)
EXPERIMENT = st.fixed_dictionaries(
    {
        "meta": st.fixed_dictionaries(
            {
                "name": NAME,
                "framework": st.sampled_from(
                    ["python", "python", "tensorflow", "pytorch", "PyTorch", "caffe"]
                ),
                "cmd": COMMAND,
            },
            optional={
                "namespace": st.sampled_from(["default", "default", "vision", "Team_A"]),
                "envVars": ENV,
                "tags": st.lists(TEXT, max_size=3),
                "placement": PLACEMENT,
                "maxRetries": st.integers(min_value=0, max_value=200),
                "clusterLossGraceSeconds": SECONDS,
                "experimentId": TEXT,
            },
        ),
        "spec": st.dictionaries(
            st.sampled_from(["Worker", "Worker", "Master", "Ps", "Chief", "Evaluator", "worker"]),
            TASK,
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "environment": ENVIRONMENT,
        "code": optional({"syncMode": TEXT, "git": optional({"url": TEXT, "password": TEXT})}),
        "experimentHandlerSpec": st.dictionaries(TEXT, TEXT, max_size=2),
    },
)
NOTEBOOK = st.fixed_dictionaries(
    {
        "meta": st.fixed_dictionaries(
            {"name": NAME},
            optional={
                "namespace": st.sampled_from(["default", "Team_A"]),
                "labels": ENV,
                "placement": PLACEMENT,
            },
        )
    },
    optional={
        "environment": ENVIRONMENT,
        "spec": optional(
            {"envVars": ENV, "resources": RESOURCES, "idleTimeoutSeconds": SECONDS, "cpu": SCALARS}
        ),
    },
)
#: What replaces a leaf or a part: a bad number or string, a wrong type, deep nesting.
HOSTILE = st.one_of(HOSTILE_SCALARS, ANY_JSON, DEEP)


def _places(value: Any) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) in ``value``, containers included, top first."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in list(items):
        yield value, key
        yield from _places(item)


@st.composite
def with_hostile_parts(draw: st.DrawFn, documents: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A document of the spec's structure with zero to three of its values (or parts) replaced by
    something hostile, or an unknown key added."""
    document = draw(documents)
    places = list(_places(document))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        container, key = draw(st.sampled_from(places))
        if draw(st.booleans()) and isinstance(container, dict):
            container[draw(st.sampled_from(["extra", "A\x00", "\ud800", "=", ""]))] = draw(HOSTILE)
        else:
            container[key] = draw(HOSTILE)
    return document


def encode(document: Any, as_yaml: bool) -> tuple[bytes, str]:
    """The document as a body: JSON as Python writes it (NaN and Infinity included), or YAML."""
    if as_yaml:
        try:
            return yaml.safe_dump(document, allow_unicode=False).encode(), "application/yaml"
        except (yaml.YAMLError, RecursionError):
            pass  # something PyYAML cannot write (a lone surrogate): send JSON instead
    return json.dumps(document).encode(), "application/json"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessBroker]:
    url = request.getfixturevalue("pg_module_url") if request.param == "postgres" else None
    broker = InProcessBroker(tmp_path_factory.mktemp(request.param), database_url=url)
    yield broker
    broker.close()


def answered(app: InProcessBroker, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """The envelope of a request that must not be a 500 and must be strict JSON."""
    answer = app.request(method, path, **kwargs)
    assert answer.status_code < 500, answer.text[:3000]
    return strict_json(answer.text)


PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@PROPERTY
@given(document=with_hostile_parts(EXPERIMENT), as_yaml=st.booleans())
def test_no_experiment_document_gets_a_500_or_stores_what_cannot_be_shown(
    app: InProcessBroker, document: dict[str, Any], as_yaml: bool
) -> None:
    body, content_type = encode(document, as_yaml)
    created = answered(app, "POST", "/experiment", content=body, headers={"content-type": content_type})
    event(f"answered {created['code']}")
    if created["code"] != 200:
        assert created["message"], created
        return
    experiment_id = created["result"]["experimentId"]
    name = created["result"]["spec"]["meta"]["name"]
    for path in (
        f"/experiment/{experiment_id}",
        f"/experiment/{experiment_id}/events",
        f"/experiment/logs/{experiment_id}",
        f"/experiment/{experiment_id}/placement",
    ):
        assert answered(app, "GET", path)["code"] == 200, path
    listed = answered(app, "GET", "/experiment", params={"name": name})
    assert experiment_id in [e["experimentId"] for e in listed["result"]]
    assert answered(app, "GET", "/experiment/logs")["code"] == 200
    explained = answered(
        app, "POST", "/placement/explain", content=body, headers={"content-type": content_type}
    )
    assert explained["code"] in (200, 422), explained
    assert answered(app, "DELETE", f"/experiment/{experiment_id}")["code"] == 200


@PROPERTY
@given(document=with_hostile_parts(NOTEBOOK), as_yaml=st.booleans())
def test_no_notebook_document_gets_a_500_or_stores_what_cannot_be_shown(
    app: InProcessBroker, document: dict[str, Any], as_yaml: bool
) -> None:
    body, content_type = encode(document, as_yaml)
    created = answered(app, "POST", "/notebook", content=body, headers={"content-type": content_type})
    event(f"answered {created['code']}")
    if created["code"] != 200:
        assert created["message"], created
        return
    notebook_id = created["result"]["notebookId"]
    assert answered(app, "GET", f"/notebook/{notebook_id}")["code"] == 200
    assert notebook_id in [n["notebookId"] for n in answered(app, "GET", "/notebook")["result"]]
    assert answered(app, "GET", f"/notebook/{notebook_id}/events")["code"] == 200
    assert answered(app, "DELETE", f"/notebook/{notebook_id}")["code"] == 200
