"""Requests that cost more than they are worth: each is refused with a 4xx naming the limit or the
field, stores nothing and leaves every listing strict JSON, on SQLite and on PostgreSQL.

Request-level tests run the broker's app in-process (tests/inprocess.py); the one about ``/ping``
staying prompt while bombs arrive runs a real broker.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.inprocess import InProcessBroker
from tests.support import Broker, python_spec

BIG_LOCAL = {"local": {"kind": "local", "capacity": {"cpu": 100000, "memory": "100000Gi"}}}


def strict_json(body: str) -> Any:
    """``body`` parsed as strict JSON: NaN, Infinity and -Infinity are errors."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(body, parse_constant=refuse)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessBroker]:
    """The broker app on each database, with a local cluster big enough to take anything."""
    url = request.getfixturevalue("pg_module_url") if request.param == "postgres" else None
    broker = InProcessBroker(tmp_path_factory.mktemp(request.param), database_url=url, clusters=BIG_LOCAL)
    yield broker
    broker.close()


@pytest.fixture(scope="module")
def accepted(app: InProcessBroker) -> str:
    """An Accepted experiment (nothing is dispatched in-process) to PATCH."""
    answer = app.post("/experiment", json=spec())
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]["experimentId"]


def spec(**meta: Any) -> dict[str, Any]:
    return python_spec("pass", roles={"Worker": {"replicas": 1, "resources": "cpu=0.1,memory=64M"}}, **meta)


def stored(app: InProcessBroker) -> tuple[int, int]:
    """How many experiments and notebooks the broker holds; both listings must be strict JSON."""
    experiments = app.get("/experiment")
    notebooks = app.get("/notebook")
    assert experiments.status_code == 200 and notebooks.status_code == 200, (experiments.text, notebooks.text)
    return strict_json(experiments.text)["attributes"]["total"], len(strict_json(notebooks.text)["result"])


def refused(answer: httpx.Response, code: int, needle: str, field: str | None = None) -> dict[str, Any]:
    """Assert ``answer`` is a ``code`` envelope whose message holds ``needle`` (and names ``field``)."""
    assert answer.status_code == code, answer.text[:2000]
    envelope = strict_json(answer.text)
    assert list(envelope) == ["status", "code", "success", "message", "result", "attributes"]
    assert envelope["code"] == code and envelope["result"] is None
    assert needle in envelope["message"], envelope["message"][:2000]
    if field is not None:
        fields = [e["field"] for e in envelope["attributes"].get("errors", [])]
        assert field in fields, (fields, envelope["message"][:2000])
        assert f"{field}: " in envelope["message"]
    return envelope


def post_raw(
    app: InProcessBroker, path: str, body: bytes, content_type: str = "application/json"
) -> httpx.Response:
    return app.request(*path.split(" ", 1), content=body, headers={"content-type": content_type})


# -- YAML: aliases and anchors --------------------------------------------------------------------

#: The reproduction: under 500 bytes that PyYAML expands to millions of nodes in a free-form field
#: (stored whole, then echoed by every listing).
ALIAS_BOMB = (
    b"meta: {name: bomb, framework: python, cmd: 'true'}\n"
    b"spec: {Worker: {replicas: 1, resources: 'cpu=0.1'}}\n"
    b"environment:\n"
    b"  kernelSpec:\n"
    b"    a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    b"    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    b"    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    b"    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    b"    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    b"    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    b"    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
)

YAML_CASES = [
    ("alias bomb", ALIAS_BOMB, 400, "YAML aliases/anchors are not accepted"),
    (
        "recursive alias",
        b"meta: {name: r, framework: python, cmd: 'true'}\nspec: {Worker: {}}\n"
        b"environment: {kernelSpec: &k {self: *k}}\n",
        400,
        "YAML aliases/anchors are not accepted",
    ),
    (
        "anchor alone",
        b"meta: &m {name: a, framework: python, cmd: 'true'}\nspec: {Worker: {}}\n",
        400,
        "YAML aliases/anchors are not accepted",
    ),
    ("deep nesting", b"meta: " + b"[" * 5000 + b"]" * 5000 + b"\n", 400, "limits.max_body_depth"),
    (
        "deep kernelSpec",
        b"meta: {name: d, framework: python, cmd: 'true'}\nspec: {Worker: {}}\n"
        b"environment: {kernelSpec: " + b"{a: " * 40 + b"1" + b"}" * 40 + b"}\n",
        400,
        "limits.max_body_depth",
    ),
    (
        "too many values",
        b"meta: {name: n, framework: python, cmd: 'true', tags: [" + b"t, " * 20000 + b"t]}\n",
        413,
        "limits.max_body_nodes",
    ),
    (
        "a .nan",
        b"meta: {name: f, framework: python, cmd: 'true', clusterLossGraceSeconds: .nan}\n",
        400,
        "meta.clusterLossGraceSeconds",
    ),
    (
        "a .inf",
        b"meta: {name: f, framework: python, cmd: 'true', clusterLossGraceSeconds: .inf}\n",
        400,
        "meta.clusterLossGraceSeconds",
    ),
    (
        "a 1e400",
        b"meta: {name: f, framework: python, cmd: 'true', clusterLossGraceSeconds: 1e400}\n",
        400,
        "meta.clusterLossGraceSeconds",
    ),
    (
        "a huge int",
        b"meta: {name: f, framework: python, cmd: 'true', maxRetries: " + b"9" * 5000 + b"}\n",
        400,
        "meta.maxRetries",
    ),
    ("binary", b"meta: {name: f, framework: python, cmd: !!binary aGVsbG8=}\n", 400, "!!binary"),
]


@pytest.mark.parametrize(("label", "body", "code", "needle"), YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_hostile_yaml_is_refused_and_stores_nothing(
    app: InProcessBroker, label: str, body: bytes, code: int, needle: str
) -> None:
    before = stored(app)
    refused(post_raw(app, "POST /experiment", body, "application/yaml"), code, needle)
    assert stored(app) == before


def test_plain_yaml_is_still_accepted(app: InProcessBroker) -> None:
    import yaml

    answer = post_raw(
        app, "POST /experiment", yaml.safe_dump(spec(name="plain-yaml")).encode(), "application/yaml"
    )
    assert answer.status_code == 200, answer.text
    dated = yaml.safe_dump(spec(name="dated")) + "experimentHandlerSpec: {since: 2024-01-02}\n"
    answer = post_raw(app, "POST /experiment", dated.encode(), "application/yaml")
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["spec"]["experimentHandlerSpec"] == {"since": "2024-01-02"}


# -- JSON: depth, size, numbers ---------------------------------------------------------------------


def _json_with(path: str, token: str) -> bytes:
    """An experiment spec whose field at ``path`` (dots) holds the raw JSON ``token``."""
    document = spec()
    document["environment"]["kernelSpec"] = {"name": "python3"}
    document["spec"]["Worker"]["resourceMap"] = {"cpu": "1"}
    *parents, leaf = path.split(".")
    target = document
    for key in parents:
        target = target.setdefault(key, {})
    target[leaf] = "__TOKEN__"
    return json.dumps(document).replace('"__TOKEN__"', token).encode()


JSON_CASES = [
    ("deep nesting", b'{"meta": ' + b"[" * 100000 + b"]" * 100000 + b"}", 400, "limits.max_body_depth", None),
    (
        "nested kernelSpec",
        _json_with("environment.kernelSpec", '{"a": ' * 900 + "1" + "}" * 900),
        400,
        "limits.max_body_depth",
        None,
    ),
    (
        "kernelSpec past the limit",
        _json_with("environment.kernelSpec", '{"a": ' * 40 + "1" + "}" * 40),
        400,
        "limits.max_body_depth",
        None,
    ),
    ("5000-digit integer", _json_with("meta.maxRetries", "9" * 5000), 400, "64 bits", "meta.maxRetries"),
    (
        "25-digit integer",
        _json_with("environment.kernelSpec.n", "9" * 25),
        400,
        "64 bits",
        "environment.kernelSpec.n",
    ),
    (
        "too many values",
        _json_with("meta.tags", json.dumps(["t"] * 20000)),
        413,
        "limits.max_body_nodes",
        None,
    ),
]


@pytest.mark.parametrize(
    ("label", "body", "code", "needle", "field"), JSON_CASES, ids=[c[0] for c in JSON_CASES]
)
def test_hostile_json_is_refused_and_stores_nothing(
    app: InProcessBroker, label: str, body: bytes, code: int, needle: str, field: str | None
) -> None:
    before = stored(app)
    refused(post_raw(app, "POST /experiment", body), code, needle, field)
    assert stored(app) == before


NUMERIC_FIELDS = [
    "meta.maxRetries",
    "meta.clusterLossGraceSeconds",
    "spec.Worker.replicas",
    "spec.Worker.cpu",
    "spec.Worker.resourceMap.cpu",
    "environment.kernelSpec.n",
]
NON_FINITE = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity"]


@pytest.mark.parametrize("token", NON_FINITE)
@pytest.mark.parametrize("field", NUMERIC_FIELDS)
def test_non_finite_numbers_are_refused_in_every_numeric_field(
    app: InProcessBroker, field: str, token: str
) -> None:
    before = stored(app)
    refused(post_raw(app, "POST /experiment", _json_with(field, token)), 400, "finite", field)
    assert stored(app) == before


@pytest.mark.parametrize("value", ["inf", "-Infinity", "NaN", "1e400", 1e300, -1])
def test_typed_seconds_fields_take_only_sensible_finite_numbers(app: InProcessBroker, value: Any) -> None:
    """pydantic reads "inf" and "1e400" strings as floats: refused too, like absurd durations."""
    before = stored(app)
    for body, field, path in [
        (spec(clusterLossGraceSeconds=value), "meta.clusterLossGraceSeconds", "/experiment"),
        (
            {"meta": {"name": "nb"}, "spec": {"idleTimeoutSeconds": value}},
            "spec.idleTimeoutSeconds",
            "/notebook",
        ),
    ]:
        answer = app.post(path, json=body)
        refused(answer, 400, field, field)
    assert stored(app) == before


@pytest.mark.parametrize("token", NON_FINITE)
def test_notebook_idle_timeout_refuses_non_finite_tokens(app: InProcessBroker, token: str) -> None:
    before = stored(app)
    body = b'{"meta": {"name": "nb"}, "spec": {"idleTimeoutSeconds": %s}}' % token.encode()
    refused(post_raw(app, "POST /notebook", body), 400, "finite", "spec.idleTimeoutSeconds")
    assert stored(app) == before


@pytest.mark.parametrize(
    ("resources", "needle"),
    [
        ("cpu=1e-12", "at least 1m"),
        ("cpu=0.0001", "at least 1m"),
        ("cpu=0.1m", "at least 1m"),
        ("cpu=1e400", "too large"),
        ("cpu=" + "9" * 5000, "too large"),
        ("memory=1e400Gi", "memory"),
        ("memory=" + "9" * 40 + "Gi", "at most"),
        ("nvidia.com/gpu=" + "9" * 5000, "at most"),
        ("gpu=1e400", "whole number"),
    ],
    ids=lambda v: v if len(v) < 30 else v[:20] + "…",
)
def test_resources_out_of_range_are_refused(app: InProcessBroker, resources: str, needle: str) -> None:
    before = stored(app)
    body = spec()
    body["spec"]["Worker"]["resources"] = resources
    envelope = refused(app.post("/experiment", json=body), 400, needle, "spec.Worker.resources")
    assert len(envelope["message"]) < 500  # a long value is shortened, not echoed whole
    notebook = {"meta": {"name": "nb"}, "spec": {"resources": resources}}
    refused(app.post("/notebook", json=notebook), 400, needle, "spec.resources")
    assert stored(app) == before


def test_the_smallest_cpu_is_one_millicore(app: InProcessBroker) -> None:
    body = spec(name="millicore")
    body["spec"]["Worker"]["resources"] = "cpu=1m,memory=64M"
    assert app.post("/experiment", json=body).status_code == 200


# -- replicas ------------------------------------------------------------------------------------


def test_a_4001_replica_tensorflow_spec_is_refused_by_the_default_limits(app: InProcessBroker) -> None:
    """Reproduction: four roles of 1000 and a Chief were placed on the local cluster."""
    before = stored(app)
    roles = {
        r: {"replicas": 1000, "resources": "cpu=1m,memory=1M"}
        for r in ("Master", "Worker", "Ps", "Evaluator")
    }
    body = python_spec("pass", framework="tensorflow", roles={"Chief": {"replicas": 1}, **roles})
    envelope = refused(app.post("/experiment", json=body), 400, "limits.max_replicas_per_workload", "spec")
    fields = {e["field"] for e in envelope["attributes"]["errors"]}
    assert {"spec.Master.replicas", "spec.Worker.replicas", "spec.Ps.replicas"} <= fields
    assert "limits.max_replicas_per_role" in envelope["message"]
    explained = app.post("/placement/explain", json=body)
    refused(explained, 400, "limits.max_replicas_per_workload", "spec")
    assert stored(app) == before


@pytest.mark.parametrize("replicas", [101.0, "101", "\u00b2", 1e300])
def test_replica_counts_written_otherwise_are_checked_too(app: InProcessBroker, replicas: Any) -> None:
    before = stored(app)
    body = spec()
    body["spec"]["Worker"]["replicas"] = replicas
    refused(app.post("/experiment", json=body), 400, "spec.Worker.replicas", "spec.Worker.replicas")
    assert stored(app) == before


def test_replica_limits_come_from_the_configuration(tmp_path) -> None:
    broker = InProcessBroker(
        tmp_path, clusters=BIG_LOCAL, limits={"max_replicas_per_role": 3, "max_replicas_per_workload": 4}
    )
    try:

        def submit(**roles: int) -> httpx.Response:
            body = python_spec(
                "pass", roles={r: {"replicas": n, "resources": "cpu=0.1"} for r, n in roles.items()}
            )
            return broker.post("/experiment", json=body)

        assert submit(Worker=3).status_code == 200
        refused(
            submit(Worker=4),
            400,
            "at most 3 replicas per role (limits.max_replicas_per_role)",
            "spec.Worker.replicas",
        )
        assert submit(Master=1, Worker=3).status_code == 200
        refused(submit(Master=2, Worker=3), 400, "5 replicas in all; at most 4 per experiment", "spec")
    finally:
        broker.close()


# -- strings -------------------------------------------------------------------------------------


def _with(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    target = document
    for key in parents:
        target = target.setdefault(key, {})
    target[leaf] = value
    return document


STRING_CASES = [
    ("NUL in a meta env name", "meta.envVars", {"A\u0000B": "x"}, "meta.envVars", "NUL"),
    ("NUL in a role env name", "spec.Worker.envVars", {"A\u0000B": "x"}, "spec.Worker.envVars", "NUL"),
    ("= in a meta env name", "meta.envVars", {"A=B": "x"}, "meta.envVars", "'='"),
    ("= in a role env name", "spec.Worker.envVars", {"A=B": "x"}, "spec.Worker.envVars", "'='"),
    ("empty env name", "meta.envVars", {"": "x"}, "meta.envVars", "empty"),
    ("NUL in an env value", "meta.envVars.A", "x\u0000y", "meta.envVars.A", "NUL"),
    ("NUL in the name", "meta.name", "job\u0000x", "meta.name", "NUL"),
    ("NUL in the command", "meta.cmd", "true\u0000rm", "meta.cmd", "NUL"),
    ("NUL in a role command", "spec.Worker.cmd", "true\u0000rm", "spec.Worker.cmd", "NUL"),
    ("NUL in the id", "meta.experimentId", "e\u00001", "meta.experimentId", "NUL"),
    ("NUL in a tag", "meta.tags", ["a\u0000"], "meta.tags.0", "NUL"),
    ("NUL in the image", "environment.image", "py\u0000", "environment.image", "NUL"),
]


@pytest.mark.parametrize(
    ("label", "path", "value", "field", "needle"), STRING_CASES, ids=[c[0] for c in STRING_CASES]
)
def test_hostile_strings_are_refused_at_submit_naming_the_field(
    app: InProcessBroker, label: str, path: str, value: Any, field: str, needle: str
) -> None:
    before = stored(app)
    refused(app.post("/experiment", json=_with(spec(), path, value)), 400, needle, field)
    assert stored(app) == before


@pytest.mark.parametrize(
    "path", ["meta.cmd", "meta.envVars.A", "spec.Worker.image", "environment.kernelSpec.k"]
)
def test_a_lone_surrogate_is_refused_naming_the_field(app: InProcessBroker, path: str) -> None:
    """``"\\ud800"`` is valid JSON but no text: it could not be stored on PostgreSQL nor shown."""
    before = stored(app)
    body = json.dumps(_with(spec(), path, "x\ud800")).encode()  # ASCII JSON: the escape itself
    refused(post_raw(app, "POST /experiment", body), 400, "lone surrogate (\\ud800)", path)
    assert stored(app) == before


@pytest.mark.parametrize(
    ("envs", "needle"), [({"A\u0000B": "x"}, "NUL"), ({"A=B": "x"}, "'='"), ({"A": "x\u0000"}, "NUL")]
)
def test_notebook_env_names_and_values_are_checked(
    app: InProcessBroker, envs: dict[str, str], needle: str
) -> None:
    before = stored(app)
    answer = app.post("/notebook", json={"meta": {"name": "nb"}, "spec": {"envVars": envs}})
    refused(answer, 400, needle)
    assert "spec.envVars" in answer.json()["message"]
    assert stored(app) == before


@pytest.mark.parametrize(
    "path",
    [
        "/experiment/experiment-1-0001%00x",
        "/experiment/%00/events",
        "/experiment/logs/%00",
        "/experiment?name=a%00b",
        "/experiment?namespace=%00",
        "/experiment?status=%00",
        "/notebook/%00",
        "/notebook?status=%00",
        "/cluster/%00",
    ],
)
def test_nul_in_a_path_or_query_is_a_4xx(app: InProcessBroker, path: str) -> None:
    answer = app.get(path)
    assert 400 <= answer.status_code < 500, answer.text
    assert "NUL" in strict_json(answer.text)["message"]


def test_an_idempotency_key_must_be_printable(app: InProcessBroker) -> None:
    before = stored(app)
    answer = app.post("/experiment", json=spec(), headers={b"idempotency-key": b"key\x7f"})
    refused(answer, 400, "must be printable text", "Idempotency-Key")
    assert stored(app) == before


# -- query parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("/experiment?page=" + "9" * 30, "page"),
        ("/experiment?page=1_0", "page"),
        ("/experiment?pageSize=" + "9" * 5000, "pageSize"),
        ("/experiment/logs/{id}?tail=" + "9" * 30, "tail"),
        ("/experiment/logs/{id}?tail=1e3", "tail"),
    ],
)
def test_query_numbers_out_of_range_are_400s_naming_them(
    app: InProcessBroker, accepted: str, query: str, field: str
) -> None:
    refused(app.get(query.replace("{id}", accepted)), 400, field, field)


@pytest.mark.parametrize("revision", ["9" * 30, "9" * 5000, "\u00b2", "2147483648"])
def test_a_revision_number_out_of_range_is_a_4xx(app: InProcessBroker, revision: str) -> None:
    before = app.get("/policy").json()["result"]
    answer = app.post(f"/policy/revert/{revision}")
    assert answer.status_code in (400, 404), answer.text
    assert "revision" in strict_json(answer.text)["message"]
    assert app.get("/policy").json()["result"] == before


@pytest.mark.parametrize("declared", ["9" * 5000, "\u00b2"])
def test_a_content_length_that_is_no_number_is_not_a_500(app: InProcessBroker, declared: str) -> None:
    """Servers reject most such headers first; the broker does not rely on it."""
    answer = app.post("/experiment", content=b"{}", headers={b"content-length": declared.encode("latin-1")})
    assert 400 <= answer.status_code < 500, answer.text


# -- every JSON body endpoint ------------------------------------------------------------------------

HOSTILE = [
    (
        "deep",
        b'{"a": ' + b"[" * 50000 + b"]" * 50000 + b"}",
        "application/json",
        400,
        "limits.max_body_depth",
    ),
    ("alias", b"a: &x [1]\nb: *x\n", "application/yaml", 400, "YAML aliases/anchors are not accepted"),
    ("NaN", b'{"lines": [], "user": NaN}', "application/json", 400, "finite"),
    ("huge int", b'{"message": ' + b"9" * 5000 + b"}", "application/json", 400, "64 bits"),
    ("NUL", b'{"message": "a\\u0000b", "user": "a\\u0000"}', "application/json", 400, "NUL"),
    ("values", b'{"lines": [' + b'"x",' * 20000 + b'"x"]}', "application/json", 413, "limits.max_body_nodes"),
]
ENDPOINTS = [
    "POST /experiment",
    "PATCH /experiment/{id}",
    "POST /notebook",
    "POST /placement/explain",
    "POST /placement/explain?kind=notebook",
    "POST /policy",
    "DELETE /policy",
    "PUT /policy",
    "POST /policy/test",
]


@pytest.mark.parametrize(
    ("label", "body", "content_type", "code", "needle"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_json_body_endpoint_refuses_hostile_bodies(
    app: InProcessBroker,
    accepted: str,
    endpoint: str,
    label: str,
    body: bytes,
    content_type: str,
    code: int,
    needle: str,
) -> None:
    policy = app.get("/policy").json()["result"]
    before = stored(app)
    refused(post_raw(app, endpoint.replace("{id}", accepted), body, content_type), code, needle)
    assert stored(app) == before
    assert app.get("/policy").json()["result"] == policy


def test_a_policy_weight_must_be_a_sensible_number(app: InProcessBroker) -> None:
    before = app.get("/policy").json()["result"]
    answer = app.post("/policy", json={"lines": ["p2, *, cluster/local, " + "9" * 400]})
    refused(answer, 400, "weight")
    assert app.get("/policy").json()["result"] == before


# -- what is stored, and what a listing shows ----------------------------------------------------------


def test_a_stored_non_finite_number_never_breaks_a_listing(tmp_path) -> None:
    """Rows written before these checks (SQLite kept ``Infinity``) still list as strict JSON."""
    broker = InProcessBroker(tmp_path)
    try:
        created = broker.post("/experiment", json=spec()).json()["result"]["experimentId"]
        with broker.context.db.engine.begin() as conn:
            raw = conn.execute(
                text("SELECT spec FROM experiment WHERE id = :id"), {"id": created}
            ).scalar_one()
            assert '"clusterLossGraceSeconds": null' in raw
            raw = raw.replace('"clusterLossGraceSeconds": null', '"clusterLossGraceSeconds": Infinity')
            conn.execute(text("UPDATE experiment SET spec = :s WHERE id = :id"), {"s": raw, "id": created})
        for path in ("/experiment", f"/experiment/{created}", "/experiment/logs"):
            answer = broker.get(path)
            assert answer.status_code == 200, answer.text
            strict_json(answer.text)
        shown = strict_json(broker.get(f"/experiment/{created}").text)["result"]["spec"]["meta"]
        assert shown["clusterLossGraceSeconds"] is None
    finally:
        broker.close()


# -- a live broker stays responsive --------------------------------------------------------------------


def test_ping_answers_promptly_while_alias_bombs_are_refused(broker: Broker) -> None:
    """On main one 485-byte bomb took seconds and stalled ``/ping`` for as long; now a bomb is
    refused before it expands, so a ping sent while bombs arrive answers well within a second."""
    sending = threading.Event()
    answers: list[int] = []

    def bombard() -> None:
        with httpx.Client(base_url=broker.url + "/api/v1", timeout=60) as client:
            for _ in range(5):
                sending.set()
                answer = client.post(
                    "/experiment", content=ALIAS_BOMB, headers={"content-type": "application/yaml"}
                )
                answers.append(answer.status_code)

    thread = threading.Thread(target=bombard)
    thread.start()
    try:
        assert sending.wait(10)
        # Generous bound (a ping takes milliseconds): what it guards against is seconds of stall.
        with httpx.Client(base_url=broker.url + "/api/v1", timeout=2.0) as client:
            for _ in range(5):
                started = time.monotonic()
                assert client.get("/experiment/ping").json()["result"] == "Pong"
                assert time.monotonic() - started < 2.0
    finally:
        thread.join(timeout=120)
    assert answers == [400] * 5
    assert broker.client.get("/experiment").json()["attributes"]["total"] == 0
