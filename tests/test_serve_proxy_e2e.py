"""The proxy end to end: a version registered through MLflow, served on the local kind with two
replicas, predicted through ``/serve/<namespace>/<name>/invocations`` on a token broker."""

from __future__ import annotations

from typing import Any

from tests.test_serving import OWN_PYTHON, iris, register_sklearn, secured, wait_ready  # noqa: F401 - fixtures

BODY = {"dataframe_split": {"columns": ["x"], "data": [[1.0], [4.0]]}}


def test_predictions_through_the_proxy_with_the_callers_permissions(secured: Any, iris: str) -> None:  # noqa: F811
    broker, clients, _ = secured
    alice, bob = clients["alice"], clients["bob"]
    made = alice.post(
        "/api/v1/serve",
        json={
            "modelName": iris,
            "modelVersion": 1,
            "name": "proxied",
            "replicas": 2,
            "environment": OWN_PYTHON,
        },
    )
    assert made.status_code == 200, made.text
    serve = made.json()["result"]
    try:
        wait_ready(alice, serve["id"], broker)
        answers = [alice.post(serve["url"] + "invocations", json=BODY) for _ in range(4)]
        assert [a.status_code for a in answers] == [200] * 4, answers[0].text
        assert answers[0].json()["predictions"] == [3.0, 9.0]  # y = 2x + 1
        malformed = alice.post(
            serve["url"] + "invocations", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 400 and malformed.json()["error_code"] == "BAD_REQUEST"
        assert bob.post(serve["url"] + "invocations", json=BODY).status_code == 404
    finally:
        assert alice.delete(f"/api/v1/serve/{serve['id']}").status_code == 200
