"""The MLflow REST API with raw requests: MLflow's error codes and statuses for bad input (never a
5xx, which the client retries for minutes), NaN/Infinity, deduplication, limits, minimal endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.mlflow_support import rest
from tests.support import Broker


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    broker = Broker(tmp_path_factory.mktemp("mlflow-rest")).start()
    with rest(broker) as client:
        yield client
    broker.close()


def ok(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def refused(answer: httpx.Response, status: int, code: str, *words: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error_code"] == code, body
    for word in words:
        assert word in body["message"], body["message"]
    return str(body["message"])


@pytest.fixture
def run_id(api: httpx.Client) -> str:
    experiment = ok(api.get("/experiments/get", params={"experiment_id": "0"}))["experiment"]
    assert experiment["name"] == "Default"
    return str(ok(api.post("/runs/create", json={"experiment_id": "0"}))["run"]["info"]["run_id"])


def history(api: httpx.Client, run_id: str, key: str) -> list[dict[str, Any]]:
    return list(ok(api.get("/metrics/get-history", params={"run_id": run_id, "metric_key": key}))["metrics"])


def test_malformed_bodies_are_400_naming_the_field(api: httpx.Client, run_id: str) -> None:
    bad = api.post("/runs/log-batch", content=b"{not json", headers={"content-type": "application/json"})
    refused(bad, 400, "INVALID_PARAMETER_VALUE", "JSON")
    refused(api.post("/runs/log-batch", json=[1, 2]), 400, "INVALID_PARAMETER_VALUE", "object")
    refused(
        api.post("/runs/log-batch", json={"run_id": run_id, "metrics": 5}),
        400,
        "INVALID_PARAMETER_VALUE",
        "metrics",
    )
    refused(
        api.post(
            "/runs/log-batch",
            json={"run_id": run_id, "metrics": [{"key": "a", "value": "x", "timestamp": 1}]},
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "metrics[0].value",
    )
    refused(
        api.post("/runs/log-batch", json={"run_id": run_id, "metrics": [{"key": "a", "value": 1}]}),
        400,
        "INVALID_PARAMETER_VALUE",
        "metrics[0].timestamp",
    )
    refused(
        api.post("/runs/log-batch", json={"run_id": run_id, "params": [{"key": "p"}]}),
        400,
        "INVALID_PARAMETER_VALUE",
        "params[0].value",
    )
    refused(api.post("/experiments/create", json={"name": 5}), 400, "INVALID_PARAMETER_VALUE", "name")
    refused(api.post("/experiments/create", json={}), 400, "INVALID_PARAMETER_VALUE", "name")
    refused(
        api.post("/runs/log-metric", json={"run_id": run_id, "key": "k", "value": 1, "timestamp": "soon"}),
        400,
        "INVALID_PARAMETER_VALUE",
        "timestamp",
    )
    refused(
        api.post("/runs/search", json={"experiment_ids": ["0"], "filter": "metrics.loss <"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    refused(
        api.post("/runs/search", json={"experiment_ids": ["0"], "filter": "metrics.loss = 'a'"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    refused(
        api.post("/runs/search", json={"experiment_ids": ["0"], "filter": "a = 1 OR b = 2"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    refused(
        api.post("/runs/search", json={"experiment_ids": ["0"], "max_results": 50001}),
        400,
        "INVALID_PARAMETER_VALUE",
        "max_results",
    )
    refused(
        api.post("/runs/search", json={"experiment_ids": ["0"], "page_token": "garbage"}),
        400,
        "INVALID_PARAMETER_VALUE",
        "page token",
    )
    nested = b"[" * 100000 + b"]" * 100000
    refused(api.post("/runs/log-batch", content=nested), 400, "INVALID_PARAMETER_VALUE")


def test_oversized_batches_are_refused_whole(api: httpx.Client, run_id: str) -> None:
    metrics = [{"key": "m", "value": i, "timestamp": 1, "step": i} for i in range(1001)]
    refused(
        api.post("/runs/log-batch", json={"run_id": run_id, "metrics": metrics}),
        400,
        "INVALID_PARAMETER_VALUE",
        "1000 metrics",
    )
    params = [{"key": f"p{i}", "value": "v"} for i in range(101)]
    refused(
        api.post("/runs/log-batch", json={"run_id": run_id, "params": params}),
        400,
        "INVALID_PARAMETER_VALUE",
        "100 params",
    )
    tags = [{"key": f"t{i}", "value": "v"} for i in range(101)]
    refused(
        api.post("/runs/log-batch", json={"run_id": run_id, "tags": tags}),
        400,
        "INVALID_PARAMETER_VALUE",
        "100 tags",
    )
    mixed = {"run_id": run_id, "metrics": metrics[:950], "params": params[:60]}
    refused(api.post("/runs/log-batch", json=mixed), 400, "INVALID_PARAMETER_VALUE", "1000")
    huge = (
        b'{"run_id": "'
        + run_id.encode()
        + b'", "tags": ['
        + b'{"key": "a", "value": "'
        + b"x" * 5_000_000
        + b'"}]}'
    )
    refused(api.post("/runs/log-batch", content=huge), 400, "INVALID_PARAMETER_VALUE", "limit")
    assert history(api, run_id, "m") == []
    assert ok(api.get("/runs/get", params={"run_id": run_id}))["run"]["data"]["params"] == []


def test_nan_and_infinity_round_trip(api: httpx.Client, run_id: str) -> None:
    metrics = [
        {"key": "odd", "value": "NaN", "timestamp": 1, "step": 0},
        {"key": "odd", "value": "Infinity", "timestamp": 1, "step": 1},
        {"key": "odd", "value": "-Infinity", "timestamp": 1, "step": 2},
        {"key": "odd", "value": 1.5, "timestamp": 1, "step": 3},
    ]
    ok(api.post("/runs/log-batch", json={"run_id": run_id, "metrics": metrics}))
    ok(api.post("/runs/log-metric", json={"run_id": run_id, "key": "nan", "value": "NaN", "timestamp": 5}))
    assert [m["value"] for m in history(api, run_id, "odd")] == ["NaN", "Infinity", "-Infinity", 1.5]
    latest = {
        m["key"]: m for m in ok(api.get("/runs/get", params={"run_id": run_id}))["run"]["data"]["metrics"]
    }
    assert latest["odd"]["value"] == 1.5 and latest["odd"]["step"] == 3
    assert latest["nan"]["value"] == "NaN"


def test_an_identical_point_is_stored_once_and_the_latest_follows_mlflow(
    api: httpx.Client, run_id: str
) -> None:
    point = {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 100, "step": 7}
    ok(api.post("/runs/log-metric", json=point))
    ok(api.post("/runs/log-metric", json=point))
    ok(api.post("/runs/log-batch", json={"run_id": run_id, "metrics": [point, point]}))
    assert history(api, run_id, "loss") == [{"key": "loss", "value": 0.5, "timestamp": 100, "step": 7}]
    ok(api.post("/runs/log-metric", json={**point, "step": 3, "timestamp": 999, "value": 9}))  # older step
    ok(api.post("/runs/log-metric", json={**point, "value": 0.4}))  # same step and time, lower value
    latest = ok(api.get("/runs/get", params={"run_id": run_id}))["run"]["data"]["metrics"]
    assert latest == [{"key": "loss", "value": 0.5, "timestamp": 100, "step": 7}]
    assert len(history(api, run_id, "loss")) == 3


def test_unknown_runs_and_experiments_are_404(api: httpx.Client) -> None:
    missing = "0123456789abcdef0123456789abcdef"
    refused(api.get("/runs/get", params={"run_id": missing}), 404, "RESOURCE_DOES_NOT_EXIST")
    refused(
        api.post("/runs/log-metric", json={"run_id": missing, "key": "a", "value": 1, "timestamp": 1}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    refused(
        api.get("/metrics/get-history", params={"run_id": missing, "metric_key": "a"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    refused(api.get("/experiments/get", params={"experiment_id": "987654"}), 404, "RESOURCE_DOES_NOT_EXIST")
    refused(
        api.get("/experiments/get", params={"experiment_id": "99999999999999999999999"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    refused(
        api.get("/experiments/get-by-name", params={"experiment_name": "nope"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    refused(api.post("/runs/create", json={"experiment_id": "987654"}), 404, "RESOURCE_DOES_NOT_EXIST")
    refused(api.get("/logged-models/m-0123"), 404, "RESOURCE_DOES_NOT_EXIST")


def test_keys_that_climb_out_or_hold_odd_characters_are_400(api: httpx.Client, run_id: str) -> None:
    for key in ("../etc", "a/../../b", "/abs", "a//b", "bad\\key", "semi;colon", "x" * 251, ""):
        answer = api.post("/runs/log-metric", json={"run_id": run_id, "key": key, "value": 1, "timestamp": 1})
        refused(answer, 400, "INVALID_PARAMETER_VALUE", "key")
        refused(
            api.post("/runs/log-parameter", json={"run_id": run_id, "key": key, "value": "v"}),
            400,
            "INVALID_PARAMETER_VALUE",
        )
        refused(
            api.post("/runs/set-tag", json={"run_id": run_id, "key": key, "value": "v"}),
            400,
            "INVALID_PARAMETER_VALUE",
        )
    ok(
        api.post(
            "/runs/log-metric",
            json={"run_id": run_id, "key": "sub/dir:a b.c-d_e", "value": 1, "timestamp": 1},
        )
    )


def test_params_keep_their_first_value_and_long_values_are_cut(api: httpx.Client, run_id: str) -> None:
    ok(api.post("/runs/log-parameter", json={"run_id": run_id, "key": "lr", "value": "0.1"}))
    ok(api.post("/runs/log-parameter", json={"run_id": run_id, "key": "lr", "value": "0.1"}))
    message = refused(
        api.post("/runs/log-parameter", json={"run_id": run_id, "key": "lr", "value": "0.2"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert "Changing param values is not allowed" in message
    refused(
        api.post(
            "/runs/log-batch",
            json={
                "run_id": run_id,
                "params": [{"key": "lr", "value": "0.3"}],
                "metrics": [{"key": "z", "value": 1, "timestamp": 1}],
            },
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert history(api, run_id, "z") == []  # the refused batch left nothing behind
    ok(api.post("/runs/log-parameter", json={"run_id": run_id, "key": "long", "value": "v" * 7000}))
    ok(api.post("/runs/set-tag", json={"run_id": run_id, "key": "long", "value": "t" * 9000}))
    data = ok(api.get("/runs/get", params={"run_id": run_id}))["run"]["data"]
    assert {p["key"]: len(p["value"]) for p in data["params"]}["long"] == 6000
    assert {t["key"]: len(t["value"]) for t in data["tags"]}["long"] == 8000


def test_duplicate_experiments_and_deleted_runs_are_400(api: httpx.Client, run_id: str) -> None:
    created = ok(api.post("/experiments/create", json={"name": "twice"}))["experiment_id"]
    experiment = ok(api.get("/experiments/get", params={"experiment_id": created}))["experiment"]
    assert experiment["artifact_location"] == f"mlflow-artifacts:/{created}"
    refused(api.post("/experiments/create", json={"name": "twice"}), 400, "RESOURCE_ALREADY_EXISTS", "twice")
    ok(api.post("/runs/delete", json={"run_id": run_id}))
    refused(
        api.post("/runs/log-metric", json={"run_id": run_id, "key": "a", "value": 1, "timestamp": 1}),
        400,
        "INVALID_PARAMETER_VALUE",
        "active",
    )
    refused(
        api.post("/runs/log-parameter", json={"run_id": run_id, "key": "a", "value": "1"}),
        400,
        "INVALID_PARAMETER_VALUE",
        "active",
    )


def test_logged_models_lifecycle(api: httpx.Client, run_id: str) -> None:
    model = ok(
        api.post(
            "/logged-models",
            json={
                "experiment_id": "0",
                "name": "model",
                "source_run_id": run_id,
                "params": [{"key": "a", "value": "1"}],
                "tags": [{"key": "t", "value": "v"}],
            },
        )
    )["model"]
    info = model["info"]
    assert info["model_id"].startswith("m-") and len(info["model_id"]) == 34
    assert info["status"] == "LOGGED_MODEL_PENDING"
    assert info["artifact_uri"] == f"mlflow-artifacts:/0/models/{info['model_id']}/artifacts"
    assert model["data"]["params"] == [{"key": "a", "value": "1"}]
    model_id = info["model_id"]
    ready = ok(
        api.patch(f"/logged-models/{model_id}", json={"model_id": model_id, "status": "LOGGED_MODEL_READY"})
    )
    assert ready["model"]["info"]["status"] == "LOGGED_MODEL_READY"
    ok(
        api.patch(
            f"/logged-models/{model_id}/tags", json={"tags": [{"key": "mlflow.modelVersions", "value": "[]"}]}
        )
    )
    ok(api.post(f"/logged-models/{model_id}/params", json={"params": [{"key": "b", "value": "2"}]}))
    ok(api.request("DELETE", f"/logged-models/{model_id}/tags/t"))
    ok(api.post("/runs/outputs", json={"run_id": run_id, "models": [{"model_id": model_id, "step": 0}]}))
    found = ok(api.post("/logged-models/search", json={"experiment_ids": ["0"], "filter": "name = 'model'"}))[
        "models"
    ]
    assert [m["info"]["model_id"] for m in found] == [model_id]
    assert {t["key"] for t in found[0]["info"]["tags"]} == {"mlflow.modelVersions"}
    run = ok(api.get("/runs/get", params={"run_id": run_id}))["run"]
    assert run["outputs"]["model_outputs"] == [{"model_id": model_id, "step": 0}]
    ok(api.request("DELETE", f"/logged-models/{model_id}"))
    refused(api.get(f"/logged-models/{model_id}"), 404, "RESOURCE_DOES_NOT_EXIST")
    assert (
        ok(api.get(f"/logged-models/{model_id}", params={"allow_deleted": "true"}))["model"]["info"][
            "model_id"
        ]
        == model_id
    )


def test_minimal_endpoints(api: httpx.Client) -> None:
    base = str(api.base_url).removesuffix("/api/2.0/mlflow/").removesuffix("/api/2.0/mlflow")
    info = ok(httpx.get(base + "/api/3.0/mlflow/server-info"))
    assert info["workspaces_enabled"] is False and info["artifact_serving_enabled"] is True
    assert info["multipart_uploads_enabled"] is False
    refused(httpx.post(base + "/api/3.0/mlflow/traces", json={}), 404, "ENDPOINT_NOT_FOUND")
    refused(httpx.post(base + "/api/2.0/mlflow/traces", json={}), 404, "ENDPOINT_NOT_FOUND")
    assert httpx.get(base + "/version").status_code == 404
    assert (
        ok(httpx.get(base + "/ajax-api/2.0/mlflow/experiments/get", params={"experiment_id": "0"}))[
            "experiment"
        ]["name"]
        == "Default"
    )
    refused(httpx.get(base + "/api/2.0/mlflow/experiments/create"), 404, "ENDPOINT_NOT_FOUND")


def test_nothing_is_a_500(api: httpx.Client, run_id: str) -> None:
    odd_values: list[Any] = [None, True, 1, -1, 1e308, "x", "", [], {}, [{}], "NaN", "\u00e9", "9" * 40]
    paths = [
        "/experiments/create",
        "/experiments/update",
        "/experiments/delete",
        "/experiments/restore",
        "/experiments/set-experiment-tag",
        "/experiments/delete-experiment-tag",
        "/experiments/search",
        "/runs/create",
        "/runs/update",
        "/runs/delete",
        "/runs/restore",
        "/runs/search",
        "/runs/log-metric",
        "/runs/log-parameter",
        "/runs/set-tag",
        "/runs/delete-tag",
        "/runs/log-batch",
        "/runs/log-inputs",
        "/runs/outputs",
        "/logged-models",
        "/logged-models/search",
    ]
    fields = [
        "name",
        "experiment_id",
        "run_id",
        "key",
        "value",
        "timestamp",
        "step",
        "metrics",
        "params",
        "tags",
        "filter",
        "order_by",
        "max_results",
        "page_token",
        "status",
        "datasets",
        "models",
        "new_name",
        "experiment_ids",
        "run_view_type",
        "view_type",
        "end_time",
        "start_time",
    ]
    wrong = []
    for path in paths:
        for field in fields:
            for value in odd_values:
                body = {"run_id": run_id, "experiment_id": "0", field: value}
                answer = api.post(path, json=body)
                if (
                    answer.status_code >= 500
                    or "error_code" not in answer.json()
                    and answer.status_code != 200
                ):
                    wrong.append(f"{path} {field}={value!r}: {answer.status_code} {answer.text[:200]}")
    for path in (
        "/runs/get",
        "/experiments/get",
        "/metrics/get-history",
        "/metrics/get-history-bulk-interval",
        "/experiments/get-by-name",
    ):
        for field in (
            "run_id",
            "experiment_id",
            "metric_key",
            "max_results",
            "page_token",
            "run_ids",
            "start_step",
            "experiment_name",
        ):
            for value in ("", "x", "-1", "99999999999999999999", "NaN", "%"):
                answer = api.get(path, params={field: value})
                if answer.status_code >= 500:
                    wrong.append(f"GET {path} {field}={value!r}: {answer.status_code} {answer.text[:200]}")
    assert not wrong, "\n".join(wrong[:30])
