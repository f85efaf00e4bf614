"""The submit form's mapping to an ExperimentSpec and back, and the metric charts' geometry."""

from __future__ import annotations

import math

from broker.errors import FieldProblem
from broker.tracking.experiment_view import SeriesPoint
from broker.web.charts import Line, all_charts
from broker.web.spec_form import document_of, field_errors, values_of

FORM = {
    "name": "mnist",
    "namespace": "",
    "framework": "tensorflow",
    "cmd": "python train.py",
    "env": "A=1\nB=two",
    "tags": "a, b",
    "environment": "",
    "image": "python:3.11",
    "cluster": "",
    "selector": "gpu=a100,zone=x",
    "preferred": "east, west",
    "Ps.replicas": "1",
    "Ps.resources": "cpu=1,memory=1Gi",
    "Worker.replicas": "2",
    "Worker.resources": "cpu=2,memory=2Gi",
    "Master.replicas": "0",
    "Chief.replicas": "",
}


def test_a_form_becomes_a_spec_and_the_spec_fills_the_form_again() -> None:
    document = document_of(FORM)
    assert document == {
        "meta": {
            "name": "mnist",
            "framework": "tensorflow",
            "cmd": "python train.py",
            "envVars": {"A": "1", "B": "two"},
            "tags": ["a", "b"],
            "placement": {
                "clusterSelector": {"gpu": "a100", "zone": "x"},
                "preferredClusters": ["east", "west"],
            },
        },
        "spec": {
            "Ps": {"replicas": 1, "resources": "cpu=1,memory=1Gi"},
            "Worker": {"replicas": 2, "resources": "cpu=2,memory=2Gi"},
        },
        "environment": {"image": "python:3.11"},
    }
    again = values_of(document)
    for name in ("name", "framework", "cmd", "env", "tags", "image", "selector", "preferred"):
        assert again[name] == FORM[name], name
    assert again["Worker.replicas"] == "2" and again["Ps.resources"] == "cpu=1,memory=1Gi"
    # A replica count that is not a number goes to the service as it is, to be refused there.
    assert document_of({**FORM, "Worker.replicas": "two"})["spec"]["Worker"]["replicas"] == "two"


def test_problems_land_on_their_form_fields() -> None:
    found = field_errors(
        [
            FieldProblem("spec.Worker.resources", "bad cpu"),
            FieldProblem("meta.name", "too long"),
            FieldProblem("spec.Bogus", "unknown role"),
            FieldProblem("params.lr", "is required"),
        ]
    )
    assert found == {
        "Worker.resources": "bad cpu",
        "name": "too long",
        "roles": "unknown role",
        "params.lr": "is required",
    }


def test_a_chart_has_one_line_per_replica_inside_its_box_and_skips_non_finite_values() -> None:
    points = [SeriesPoint(step, 1000 + step * 500, 1.0 / (step + 1)) for step in range(4)]
    lines = [
        Line("e1", 1, "worker-0", points, origin=1000),
        Line("e1", 1, "worker-1", [*points, SeriesPoint(9, 9000, math.nan)], origin=1000),
        Line("e2", 1, "worker-0", points[:1], compared=True, origin=1000),
    ]
    (chart,) = all_charts({"loss": lines}, by_time=True)
    assert [line.replica for line in chart.lines] == ["worker-0", "worker-1", "worker-0"]
    assert [line.dashed for line in chart.lines] == [False, False, True]
    assert chart.lines[2].dots and chart.lines[0].label == "e1 · worker-0"
    for line in chart.lines:
        for pair in line.points.split():
            x, y = map(float, pair.split(","))
            assert chart.left <= x <= chart.right and chart.top <= y <= chart.bottom
    assert len(chart.lines[1].points.split()) == 4  # the NaN point is left out
    assert chart.x_label.startswith("seconds")
