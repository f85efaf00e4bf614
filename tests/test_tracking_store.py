"""The tracking store's write and read paths on SQLite and PostgreSQL: bulk metric writes with
deduplication, MLflow's latest-metric rule, NaN/±Inf, paged history, replicas, run search."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.api.mlflow_errors import MlflowError
from broker.store.database import Database
from broker.store.migrate import upgrade
from broker.tracking import experiments, metrics, run_search, runs
from broker.tracking.metrics import Point
from broker.tracking.run_search import Visibility


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tracking.db'}"
        database = Database(url)
        upgrade(database.engine)
        yield database
        database.dispose()
    else:
        url = request.getfixturevalue("pg_url")
        database = Database(url)
        upgrade(database.engine)
        yield database
        database.dispose()


def new_run(
    db: Database, experiment_id: int = 0, name: str | None = None, tags: list[tuple[str, str]] | None = None
) -> str:
    return db.call(
        lambda s: runs.create(
            s,
            experiment_id=experiment_id,
            namespace="team",
            user_id="u",
            run_name=name,
            start_time=None,
            tags=tags or [],
        )
    )


def read(db: Database, fn):  # type: ignore[no-untyped-def]
    with db.engine.connect() as conn:
        return fn(conn)


def test_points_are_stored_once_with_their_replica(db: Database) -> None:
    run_id = new_run(db)
    batch = [Point("loss", 1.0, 10, 0), Point("loss", 1.0, 10, 0), Point("loss", 0.5, 11, 1)]
    db.call(lambda s: metrics.log_points(s, run_id, batch, "worker-1"))
    db.call(lambda s: metrics.log_points(s, run_id, batch[:1], "worker-1"))  # a retry: nothing new
    # Another replica logging the very same value at the same step and millisecond (an
    # all-reduced loss) is a point of its own.
    db.call(lambda s: metrics.log_points(s, run_id, batch[:1], "worker-0"))
    points = read(db, lambda c: metrics.metric_history(c, run_id, "loss"))
    assert sorted((p.step, p.value, p.replica) for p in points) == [
        (0, 1.0, "worker-0"),
        (0, 1.0, "worker-1"),
        (1, 0.5, "worker-1"),
    ]


def test_special_values_and_the_latest_rule(db: Database) -> None:
    run_id = new_run(db)
    db.call(
        lambda s: metrics.log_points(
            s,
            run_id,
            [
                Point("x", math.nan, 1, 0),
                Point("x", math.inf, 1, 1),
                Point("x", -math.inf, 1, 2),
                Point("y", 3.0, 5, 2),
            ],
        )
    )
    values = [p.value for p in read(db, lambda c: metrics.metric_history(c, run_id, "x"))]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf]
    db.call(lambda s: metrics.log_points(s, run_id, [Point("y", 9.0, 99, 1)]))  # a lower step never wins
    db.call(
        lambda s: metrics.log_points(s, run_id, [Point("y", 2.0, 5, 2)])
    )  # same step and time, lower value
    db.call(lambda s: metrics.log_points(s, run_id, [Point("y", 4.0, 5, 2)]))  # higher value wins
    db.call(lambda s: metrics.log_points(s, run_id, [Point("x", math.nan, 1, 5)]))
    latest = {m["key"]: m for m in read(db, lambda c: metrics.latest_of(c, [run_id]))[run_id]}
    assert (latest["y"]["value"], latest["y"]["step"]) == (4.0, 2)
    assert (latest["x"]["value"], latest["x"]["step"]) == ("NaN", 5)


def test_history_pages_and_intervals(db: Database) -> None:
    run_id = new_run(db)
    db.call(lambda s: metrics.log_points(s, run_id, [Point("m", float(i), i, i) for i in range(1000)]))
    pages = [
        read(db, lambda c, o=o: metrics.metric_history(c, run_id, "m", limit=300, offset=o))
        for o in range(0, 1000, 300)
    ]
    assert [len(p) for p in pages] == [300, 300, 300, 100]
    assert [p.step for page in pages for p in page] == list(range(1000))
    sampled = read(db, lambda c: metrics.history_interval(c, [run_id], "m", 100, 199, 11))
    assert sampled[0].step == 100 and sampled[-1].step == 199 and len(sampled) == 11


def test_params_refuse_a_new_value(db: Database) -> None:
    run_id = new_run(db)
    db.call(lambda s: runs.log_params(s, run_id, [("lr", "0.1")]))
    db.call(lambda s: runs.log_params(s, run_id, [("lr", "0.1"), ("b", "2")]))
    with pytest.raises(MlflowError) as refused:
        db.call(lambda s: runs.log_params(s, run_id, [("lr", "0.2")]))
    assert refused.value.error_code == "INVALID_PARAMETER_VALUE"


def test_search_filters_orders_and_pages(db: Database) -> None:
    experiment_id = db.call(lambda s: experiments.create(s, "searched", "team", "u", []))
    made = {}
    for index, name in enumerate("abcdef"):
        run_id = new_run(db, experiment_id, name, [("parity", "even" if index % 2 == 0 else "odd")])
        db.call(lambda s, r=run_id, i=index: metrics.log_points(s, r, [Point("loss", 1.0 / (i + 1), 1, 0)]))
        db.call(lambda s, r=run_id, i=index: runs.log_params(s, r, [("n", str(i))]))
        made[name] = run_id

    def search(
        filter_text: str | None = None, order_by: list[str] | None = None, offset: int = 0, limit: int = 100
    ) -> list[str]:
        rows, _ = read(
            db,
            lambda c: run_search.search(
                c,
                experiment_ids=[experiment_id],
                filter_text=filter_text,
                order_by=order_by or [],
                view_type="ACTIVE_ONLY",
                visibility=Visibility(everything=True),
                offset=offset,
                limit=limit,
            ),
        )
        return [r.name for r in rows]

    assert search("metrics.loss >= 0.25", ["metrics.loss DESC"]) == ["a", "b", "c", "d"]
    assert search("metrics.loss < 0.4 AND tags.parity = 'even'", ["metrics.loss ASC"]) == ["e", "c"]
    assert search("params.n IN ('1', '2')", ["attributes.run_name DESC"]) == ["c", "b"]
    assert search("attributes.run_name LIKE 'A%'") == []
    assert search("attributes.run_name ILIKE 'A%'") == ["a"]
    assert search(order_by=["params.n ASC"], offset=2, limit=2) == ["c", "d"]
    visible_rows, _ = read(
        db,
        lambda c: run_search.search(
            c,
            experiment_ids=[experiment_id],
            filter_text=None,
            order_by=[],
            view_type="ALL",
            visibility=Visibility(runs={made["b"]}),
            offset=0,
            limit=10,
        ),
    )
    assert [r.name for r in visible_rows] == ["b"]
    page = read(db, lambda c: runs.to_json(c, [runs.require(c, made["a"])]))[0]
    assert page["data"]["params"] == [{"key": "n", "value": "0"}]
    assert page["data"]["metrics"][0]["value"] == 1.0
