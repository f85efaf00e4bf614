"""The verbs every workload kind shares (broker/workloads), in-process: each service sees only its
kind, the permission guard decides 404 or 403 without the web layer, and new_attempt's rules.

Services are called directly where the caller matters (a guard over a scripted policy), through the
REST app where what users see matters.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from broker.errors import ApiError
from broker.guard import Guard
from broker.state import IllegalTransition, Status
from broker.workloads.model import Workload
from broker.workloads.rows import events_of, new_attempt
from tests.inprocess import InProcessBroker, scripted_clusters

EXPERIMENT = {
    "meta": {"name": "mnist", "namespace": "vision", "framework": "python", "cmd": "python train.py"},
    "spec": {"Worker": {"replicas": 1, "resources": "cpu=1,memory=1Gi"}},
}
NOTEBOOK = {"meta": {"name": "nb", "namespace": "vision"}, "spec": {"resources": "cpu=1,memory=1Gi"}}


class Rules:
    """An authorizer that allows exactly the ``(user, namespace, object, action)`` it was given."""

    def __init__(self, *allowed: tuple[str, str, str, str]) -> None:
        self.allowed = set(allowed)

    def enforce(self, user: str, namespace: str, obj: str, action: str) -> bool:
        return (user, namespace, obj, action) in self.allowed


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[InProcessBroker]:
    made = InProcessBroker(tmp_path, **scripted_clusters("east"))
    yield made
    made.close()


def both(broker: InProcessBroker) -> tuple[str, str]:
    exp = broker.result("POST", "/experiment", json=EXPERIMENT)["experimentId"]
    nid = broker.result("POST", "/notebook", json=NOTEBOOK)["notebookId"]
    return exp, nid


def test_each_service_finds_only_workloads_of_its_kind(broker) -> None:
    exp, nid = both(broker)

    for method, path in (("GET", ""), ("GET", "/events"), ("POST", "/stop"), ("DELETE", "")):
        as_experiment = broker.request(method, f"/experiment/{nid}{path}")
        assert (as_experiment.status_code, as_experiment.json()["message"]) == (
            404,
            f"Not found experiment: {nid}",
        )
        as_notebook = broker.request(method, f"/notebook/{exp}{path}")
        assert (as_notebook.status_code, as_notebook.json()["message"]) == (404, "Notebook not found.")

    assert [e["experimentId"] for e in broker.result("GET", "/experiment")] == [exp]
    assert [n["notebookId"] for n in broker.result("GET", "/notebook")] == [nid]
    assert broker.result("GET", f"/experiment/{exp}")["status"] == "Accepted"
    assert broker.result("GET", f"/notebook/{nid}")["status"] == "waiting"


def test_the_guard_hides_what_a_caller_may_not_read_and_forbids_what_it_may_not_do(broker) -> None:
    exp, nid = both(broker)
    experiments, notebooks = broker.context.experiments, broker.context.notebooks
    stranger = Guard("bob", Rules())
    reader = Guard(
        "carol",
        Rules(
            ("carol", "vision", f"experiment/{exp}", "read"), ("carol", "vision", f"notebook/{nid}", "read")
        ),
    )

    for service, ident, missing in (
        (experiments, exp, f"Not found experiment: {exp}"),
        (notebooks, nid, "Notebook not found."),
    ):
        with pytest.raises(ApiError) as hidden:
            broker.run(service.get(ident, stranger))
        assert (hidden.value.code, hidden.value.message) == (404, missing)
        assert broker.run(service.get(ident, reader)).id == ident
        for verb, action in ((service.stop, "kill"), (service.delete, "delete")):
            with pytest.raises(ApiError) as refused:
                broker.run(verb(ident, reader))
            kind = service.kind.value
            assert (refused.value.code, refused.value.message) == (
                403,
                f"carol may not {action} {kind}/{ident} in namespace vision",
            )
    assert broker.run(experiments.list(stranger)) == ([], 0)
    assert [r.id for r in broker.run(notebooks.list(reader))] == [nid]
    assert broker.result("GET", f"/experiment/{exp}")["status"] == "Accepted"  # nothing was stopped


def rows(broker: InProcessBroker) -> dict[str, Workload]:
    exp, nid = both(broker)
    return {
        "experiment": broker.context.db.call(lambda s: s.get(Workload, exp)),
        "notebook": broker.context.db.call(lambda s: s.get(Workload, nid)),
    }


def moved(broker: InProcessBroker, ident: str, change: Any) -> Workload:
    def apply(session: Session) -> Workload:
        row = session.get(Workload, ident)
        assert row is not None
        change(session, row)
        return row

    return broker.context.db.call(apply)


def test_a_new_attempt_from_accepted_keeps_the_status_and_opens_the_attempt_with_a_note(broker) -> None:
    exp = rows(broker)["experiment"]
    before = exp.uid

    after = moved(broker, exp.id, lambda s, row: new_attempt(s, row, "the submit went to a lost cluster"))

    assert (after.status, after.attempt, after.cluster) == ("Accepted", 2, None) and after.uid != before
    last = broker.context.db.call(events_of(exp.id))[-1]
    assert (last.attempt, last.from_status, last.to_status, last.reason) == (
        2,
        "Accepted",
        None,
        "the submit went to a lost cluster",
    )


def test_only_a_restartable_kind_is_revived_and_nothing_comes_back_from_deleted(broker) -> None:
    made = rows(broker)

    def failed(session: Session, row: Workload) -> None:
        row.status = Status.FAILED.value

    for ident in (made["experiment"].id, made["notebook"].id):
        moved(broker, ident, failed)
    with pytest.raises(IllegalTransition):
        moved(broker, made["experiment"].id, lambda s, row: new_attempt(s, row, "again", revive=True))
    with pytest.raises(IllegalTransition):  # without revive, an ended run stays ended
        moved(broker, made["notebook"].id, lambda s, row: new_attempt(s, row, "again"))
    revived = moved(broker, made["notebook"].id, lambda s, row: new_attempt(s, row, "again", revive=True))
    assert (revived.status, revived.attempt) == ("Accepted", 2)

    def deleted(session: Session, row: Workload) -> None:
        row.status = Status.DELETED.value

    moved(broker, made["notebook"].id, deleted)
    with pytest.raises(IllegalTransition):
        moved(broker, made["notebook"].id, lambda s, row: new_attempt(s, row, "again", revive=True))
    stored = broker.context.db.call(lambda s: s.get(Workload, made["notebook"].id))
    assert (stored.status, stored.attempt) == ("Deleted", 2)
