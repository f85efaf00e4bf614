"""The experiment state machine against a real (in-memory SQLite) database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.state import (
    TERMINAL,
    TRANSITIONS,
    FailureCategory,
    IllegalTransition,
    Status,
    can_move,
    record,
    transition,
)
from broker.store.database import make_engine
from broker.store.models import Base
from broker.workloads.model import Event, Workload

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ALL = list(Status)

#: The allowed moves, written out by hand: changing broker/state.py's table must change this too.
EXPECTED_MOVES = {
    ("Accepted", "Created"),
    ("Accepted", "Failed"),
    ("Accepted", "Deleted"),
    ("Created", "Running"),
    ("Created", "Succeeded"),
    ("Created", "Failed"),
    ("Created", "Deleted"),
    ("Created", "Accepted"),  # failover: a new attempt after the cluster was lost
    ("Running", "Accepted"),  # failover
    ("Running", "Succeeded"),
    ("Running", "Failed"),
    ("Running", "Deleted"),
    ("Succeeded", "Deleted"),
    ("Failed", "Deleted"),
}


@pytest.fixture
def session() -> Iterator[Session]:
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as db:
        yield db
    engine.dispose()


def add_experiment(
    session: Session, status: Status = Status.ACCEPTED, ident: str = "experiment-1-0001"
) -> Workload:
    experiment = Workload(
        id=ident,
        uid=f"uid-{ident}",
        name="mnist",
        namespace="default",
        owner="admin",
        framework="pytorch",
        status=status.value,
        spec={"meta": {"name": "mnist"}},
        accepted_at=T0,
        updated_at=T0,
    )
    session.add(experiment)
    session.commit()
    return experiment


def events(session: Session, experiment: Workload) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.workload_id == experiment.id).order_by(Event.id)))


def snapshot(experiment: Workload) -> dict[str, object]:
    return {c.key: getattr(experiment, c.key) for c in Workload.__table__.columns}


def test_happy_path_stamps_times_and_writes_events(session: Session) -> None:
    experiment = add_experiment(session)
    steps = [
        (Status.CREATED, "submitted to local", T0 + timedelta(seconds=1)),
        (Status.RUNNING, "all replicas started", T0 + timedelta(seconds=2)),
        (Status.SUCCEEDED, "", T0 + timedelta(seconds=3)),
    ]
    for target, reason, at in steps:
        assert transition(session, experiment, target, reason, at=at) is True
    session.commit()
    session.expire_all()

    assert experiment.status == "Succeeded"
    assert experiment.created_at == T0 + timedelta(seconds=1)
    assert experiment.running_at == T0 + timedelta(seconds=2)
    assert experiment.finished_at == T0 + timedelta(seconds=3)
    assert experiment.updated_at == T0 + timedelta(seconds=3)
    assert experiment.deleted_at is None
    assert experiment.reason is None
    assert experiment.failure_category is None

    rows = events(session, experiment)
    assert [(e.from_status, e.to_status, e.reason) for e in rows] == [
        ("Accepted", "Created", "submitted to local"),
        ("Created", "Running", "all replicas started"),
        ("Running", "Succeeded", ""),
    ]
    assert [e.at for e in rows] == [at for _, _, at in steps]
    assert all(e.attempt == 1 for e in rows)


def test_created_straight_to_succeeded(session: Session) -> None:
    experiment = add_experiment(session, Status.CREATED)
    assert transition(session, experiment, Status.SUCCEEDED, "finished between polls", at=T0)
    session.commit()
    assert experiment.status == "Succeeded"
    assert experiment.finished_at == T0
    assert experiment.running_at is None
    assert experiment.reason == "finished between polls"
    assert [(e.from_status, e.to_status) for e in events(session, experiment)] == [("Created", "Succeeded")]


def test_transition_defaults_its_time_to_now(session: Session) -> None:
    experiment = add_experiment(session)
    before = datetime.now(UTC)
    transition(session, experiment, Status.CREATED)
    after = datetime.now(UTC)
    assert before <= experiment.created_at <= after


@pytest.mark.parametrize(
    ("start", "target"),
    [(s, t) for s in (Status.SUCCEEDED, Status.FAILED) for t in ALL if t not in (s, Status.DELETED)],
)
def test_terminal_states_refuse_every_move_but_delete(
    session: Session, start: Status, target: Status
) -> None:
    experiment = add_experiment(session, start)
    before = snapshot(experiment)
    with pytest.raises(IllegalTransition) as info:
        transition(session, experiment, target, "late report", category=FailureCategory.KILLED)
    assert (info.value.current, info.value.target) == (start, target)
    assert f"{start.value} → {target.value}" in str(info.value)
    assert experiment.id in str(info.value)
    session.commit()
    session.expire_all()
    assert snapshot(experiment) == before
    assert events(session, experiment) == []


@pytest.mark.parametrize("start", [Status.SUCCEEDED, Status.FAILED])
def test_terminal_states_may_be_deleted(session: Session, start: Status) -> None:
    experiment = add_experiment(session, start)
    experiment.finished_at = T0
    assert transition(session, experiment, Status.DELETED, "by admin", at=T0 + timedelta(minutes=1))
    session.commit()
    assert experiment.status == "Deleted"
    assert experiment.deleted_at == T0 + timedelta(minutes=1)
    assert experiment.finished_at == T0


@pytest.mark.parametrize("target", [s for s in ALL if s is not Status.DELETED])
def test_deleted_is_final(session: Session, target: Status) -> None:
    experiment = add_experiment(session, Status.DELETED)
    before = snapshot(experiment)
    with pytest.raises(IllegalTransition):
        transition(session, experiment, target)
    session.commit()
    assert snapshot(experiment) == before
    assert events(session, experiment) == []


@pytest.mark.parametrize("status", ALL)
def test_same_status_is_a_no_op(session: Session, status: Status) -> None:
    experiment = add_experiment(session, status)
    before = snapshot(experiment)
    assert transition(session, experiment, status, "again") is False
    session.commit()
    assert snapshot(experiment) == before
    assert events(session, experiment) == []


def test_running_reported_twice_keeps_first_running_time(session: Session) -> None:
    experiment = add_experiment(session, Status.CREATED)
    transition(session, experiment, Status.RUNNING, at=T0)
    assert transition(session, experiment, Status.RUNNING, at=T0 + timedelta(hours=1)) is False
    assert experiment.running_at == T0


@pytest.mark.parametrize(
    ("category", "stored"),
    [(FailureCategory.EXIT_CODE, "exit_code"), ("timeout", "timeout"), (None, None)],
)
def test_failed_records_reason_and_category(
    session: Session, category: FailureCategory | str | None, stored: str | None
) -> None:
    experiment = add_experiment(session, Status.RUNNING)
    transition(session, experiment, Status.FAILED, "worker-1 exited with code 3", category=category, at=T0)
    session.commit()
    session.expire_all()
    assert experiment.status == "Failed"
    assert experiment.reason == "worker-1 exited with code 3"
    assert experiment.failure_category == stored
    assert experiment.finished_at == T0
    (event,) = events(session, experiment)
    assert (event.from_status, event.to_status, event.reason) == (
        "Running",
        "Failed",
        "worker-1 exited with code 3",
    )


def test_failed_from_accepted_stamps_only_finished(session: Session) -> None:
    experiment = add_experiment(session)
    transition(session, experiment, Status.FAILED, "no cluster", category=FailureCategory.REJECTED, at=T0)
    assert (experiment.created_at, experiment.running_at, experiment.finished_at) == (None, None, T0)
    assert experiment.failure_category == "rejected"


def test_unknown_failure_category_leaves_the_row_unchanged(session: Session) -> None:
    experiment = add_experiment(session, Status.RUNNING)
    before = snapshot(experiment)
    with pytest.raises(ValueError):
        transition(session, experiment, Status.FAILED, "x", category="no-such-category")
    assert snapshot(experiment) == before


def test_transition_clears_the_status_message(session: Session) -> None:
    experiment = add_experiment(session)
    experiment.status_message = "waiting: no cluster fits now"
    transition(session, experiment, Status.CREATED, at=T0)
    assert experiment.status_message is None


def test_event_carries_the_attempt(session: Session) -> None:
    experiment = add_experiment(session)
    experiment.attempt = 3
    transition(session, experiment, Status.CREATED, at=T0)
    session.commit()
    assert events(session, experiment)[0].attempt == 3


def test_record_writes_a_note_event(session: Session) -> None:
    experiment = add_experiment(session, Status.CREATED)
    record(session, experiment, "placed on local", at=T0)
    session.commit()
    (event,) = events(session, experiment)
    assert (event.from_status, event.to_status, event.reason, event.at) == (
        "Created",
        None,
        "placed on local",
        T0,
    )
    assert experiment.status == "Created"


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("running", Status.RUNNING),
        ("RUNNING", Status.RUNNING),
        (" Succeeded ", Status.SUCCEEDED),
        ("deleted", Status.DELETED),
        ("accepted", Status.ACCEPTED),
    ],
)
def test_status_parse_is_case_insensitive(text: str, status: Status) -> None:
    assert Status.parse(text) is status


def test_status_parse_error_lists_valid_values() -> None:
    with pytest.raises(ValueError) as info:
        Status.parse("finished")
    message = str(info.value)
    assert "'finished'" in message
    for value in ("Accepted", "Created", "Running", "Succeeded", "Failed", "Deleted"):
        assert value in message


def test_status_values_are_submarines() -> None:
    assert [s.value for s in Status] == ["Accepted", "Created", "Running", "Succeeded", "Failed", "Deleted"]


def test_terminal_set() -> None:
    assert {s.value for s in TERMINAL} == {"Succeeded", "Failed", "Deleted"}
    assert [s.value for s in Status if s.is_terminal] == ["Succeeded", "Failed", "Deleted"]


def test_transition_table_is_exactly_the_expected_set() -> None:
    assert set(TRANSITIONS) == set(Status)
    actual = {(a.value, b.value) for a, targets in TRANSITIONS.items() for b in targets}
    assert actual == EXPECTED_MOVES


@pytest.mark.parametrize(("current", "target"), [(a, b) for a in ALL for b in ALL])
def test_can_move_and_transition_agree_with_the_table(
    session: Session, current: Status, target: Status
) -> None:
    allowed = (current.value, target.value) in EXPECTED_MOVES
    assert can_move(current, target) is allowed
    experiment = add_experiment(session, current)
    if current is target:
        assert transition(session, experiment, target) is False
    elif allowed:
        assert transition(session, experiment, target, category="killed") is True
        assert experiment.status == target.value
    else:
        with pytest.raises(IllegalTransition):
            transition(session, experiment, target)
        assert experiment.status == current.value
