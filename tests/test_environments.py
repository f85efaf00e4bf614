"""Environments through the REST API of an in-process broker on scripted clusters: Submarine's
CRUD and its bad input, revisions (running work keeps the one it was submitted with), the
submit-time 400 for an unknown name, placement (a cluster that cannot apply it is out with its
reason, the warm cluster wins a tie), prepare, builds recorded from what ran, the build's status
message and failure, and housekeeping that never removes a build in use. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import update

from broker.config.models import BrokerConfig
from broker.environments.model import EnvironmentBuild
from broker.guard import Forbidden, Guard
from broker.state import now
from clusters.errors import EnvironmentBuildFailed
from runtimes.environment import EnvironmentPlan
from tests.inprocess import InProcessBroker
from tests.scripted_environments import EXTRA_KINDS, cache

ENV = {
    "name": "torch-2",
    "dockerImage": "python:3.11-slim",
    "kernelSpec": {
        "name": "python3",
        "channels": ["defaults"],
        "condaDependencies": [],
        "pipDependencies": ["Torch_Vision >= 0.1", "numpy"],
    },
    "description": "training",
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def make(tmp_path: Path, database_url: str | None, **clusters: dict[str, Any]) -> InProcessBroker:
    bodies = clusters or {"east": {"kind": "scripted-cache"}, "west": {"kind": "scripted-cache"}}
    return InProcessBroker(tmp_path, database_url=database_url, clusters=bodies, extra_kinds=EXTRA_KINDS)


@pytest.fixture
def broker(tmp_path: Path, database_url: str | None) -> Iterator[InProcessBroker]:
    made = make(tmp_path, database_url)
    yield made
    made.close()


def experiment(env: dict[str, Any] | None = None, name: str = "mnist", **meta: Any) -> dict[str, Any]:
    return {
        "meta": {"name": name, "framework": "python", "cmd": "python train.py", **meta},
        "environment": env if env is not None else {"name": "torch-2"},
        "spec": {"Worker": {"replicas": 1, "resources": "cpu=1,memory=1Gi"}},
    }


def create(broker: InProcessBroker, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return broker.result("POST", "/environment", json=body or ENV)


def submit(broker: InProcessBroker, **kwargs: Any) -> str:
    return broker.result("POST", "/experiment", json=experiment(**kwargs))["experimentId"]


def shown(broker: InProcessBroker, exp: str) -> dict[str, Any]:
    return broker.result("GET", f"/experiment/{exp}")


def errors(answer: Any) -> list[str]:
    return [e["field"] for e in answer.json()["attributes"]["errors"]]


def test_create_get_list_update_delete(broker: InProcessBroker) -> None:
    made = create(broker)
    assert re.fullmatch(r"environment_\d{13,}_\d{4}", made["environmentId"])
    assert made["environmentSpec"]["name"] == "torch-2"
    assert made["environmentSpec"]["kernelSpec"]["pipDependencies"] == ["Torch_Vision >= 0.1", "numpy"]
    assert made["revision"] == 1
    expected = EnvironmentPlan.of(
        "torch-2", image="python:3.11-slim", pip=["torch-vision>=0.1", "numpy"], channels=["defaults"]
    )
    assert made["hash"] == expected.hash

    again = broker.request("POST", "/environment", json=ENV)
    assert again.status_code == 409 and "torch-2" in again.json()["message"]

    got = broker.result("GET", "/environment/torch-2")
    assert (got["environmentId"], got["revision"], got["builds"]) == (made["environmentId"], 1, [])
    create(broker, {"name": "bare", "dockerImage": "busybox"})
    listed = [e["environmentSpec"]["name"] for e in broker.result("GET", "/environment")]
    assert listed == ["bare", "notebook-env", "torch-2"]  # notebook-env: Submarine's, seeded

    # The same content again changes nothing; new content is a new revision, a new hash.
    assert broker.result("PATCH", "/environment/torch-2", json=ENV)["revision"] == 1
    pip = {**ENV["kernelSpec"], "pipDependencies": ["numpy", "pandas"]}
    second = broker.result("PATCH", "/environment/torch-2", json={**ENV, "kernelSpec": pip})
    assert (second["revision"], second["environmentId"]) == (2, made["environmentId"])
    assert second["hash"] != made["hash"]
    # A description is content too (a revision), but installs nothing new (the same hash).
    third = broker.result(
        "PATCH", "/environment/torch-2", json={**ENV, "kernelSpec": pip, "description": "x"}
    )
    assert (third["revision"], third["hash"]) == (3, second["hash"])

    gone = broker.result("DELETE", "/environment/torch-2")
    assert gone["environmentSpec"]["description"] == "x"
    missing = broker.request("GET", "/environment/torch-2")
    assert (missing.status_code, missing.json()["message"]) == (404, "Environment not found.")
    for method in ("PATCH", "DELETE"):
        answer = broker.request(method, "/environment/torch-2", json=ENV)
        assert (answer.status_code, answer.json()["message"]) == (404, "Environment not found.")


def test_bad_input_names_every_field(broker: InProcessBroker) -> None:
    answer = broker.request(
        "POST",
        "/environment",
        json={
            "name": "no spaces",
            "dockerImage": 3,
            "kernelSpec": {"pipDependencies": ["ok", "--index-url=http://x", ""], "conda": []},
            "colour": "red",
        },
    )
    assert answer.status_code == 400
    assert set(errors(answer)) == {
        "name",
        "dockerImage",
        "kernelSpec.pipDependencies[1]",
        "kernelSpec.pipDependencies[2]",
        "kernelSpec.conda",
        "colour",
    }
    assert "installer option" in answer.json()["message"]
    nameless = broker.request("POST", "/environment", json={"dockerImage": "busybox"})
    assert (nameless.status_code, errors(nameless)) == (400, ["name"])
    listed = broker.request("POST", "/environment", json={**ENV, "kernelSpec": {"pipDependencies": "numpy"}})
    assert (listed.status_code, errors(listed)) == (400, ["kernelSpec.pipDependencies"])
    create(broker)
    renamed = broker.request("PATCH", "/environment/torch-2", json={**ENV, "name": "other"})
    assert renamed.status_code == 400 and "cannot be renamed" in renamed.json()["message"]
    # Nothing half-written: the failed PATCH left revision 1.
    assert broker.result("GET", "/environment/torch-2")["revision"] == 1
    assert broker.request("POST", "/environment/torch-2/prepare").status_code == 400  # no ?cluster=


def test_unknown_environment_is_a_400_naming_it(broker: InProcessBroker) -> None:
    answer = broker.request("POST", "/experiment", json=experiment({"name": "nope"}))
    assert answer.status_code == 400
    assert "environment.name" in answer.json()["message"] and "nope" in answer.json()["message"]
    assert errors(answer) == ["environment.name"]
    notebook = {"meta": {"name": "nb"}, "environment": {"name": "nope"}, "spec": {"resources": "cpu=1"}}
    refused = broker.request("POST", "/notebook", json=notebook)
    assert refused.status_code == 400 and errors(refused) == ["environment.name"]
    explained = broker.request("POST", "/placement/explain", json=experiment({"name": "nope"}))
    assert explained.status_code == 400


def test_work_keeps_the_revision_it_was_submitted_with(broker: InProcessBroker) -> None:
    first = create(broker)
    exp = submit(broker)
    # Edited before the experiment is even dispatched: it still runs revision 1.
    pip = {**ENV["kernelSpec"], "pipDependencies": ["numpy==2.0"]}
    second = broker.result("PATCH", "/environment/torch-2", json={**ENV, "kernelSpec": pip})
    assert shown(broker, exp)["environment"] == {"name": "torch-2", "revision": 1, "hash": first["hash"]}
    broker.dispatch()
    cluster = shown(broker, exp)["cluster"]
    plan = broker.cluster(cluster).of(exp).plan
    assert plan.environment is not None
    assert (plan.environment.name, plan.environment.revision, plan.environment.hash) == (
        "torch-2",
        1,
        first["hash"],
    )
    assert plan.pip_packages == ["numpy", "torch-vision>=0.1"]
    assert plan.image == "python:3.11-slim"
    later = submit(broker, name="later")
    broker.dispatch()
    later_plan = broker.cluster(shown(broker, later)["cluster"]).of(later).plan
    assert later_plan.environment is not None
    assert (later_plan.environment.revision, later_plan.environment.hash) == (2, second["hash"])
    assert later_plan.pip_packages == ["numpy==2.0"]

    # In use: not deleted; once the work has ended it may be.
    refused = broker.request("DELETE", "/environment/torch-2")
    assert refused.status_code == 409
    assert exp in refused.json()["message"] and later in refused.json()["message"]
    for workload in (exp, later):
        assert broker.delete(f"/experiment/{workload}").status_code == 200
    assert broker.result("DELETE", "/environment/torch-2")["revision"] == 2


def test_inline_environment_is_pinned_as_inline(broker: InProcessBroker) -> None:
    exp = submit(broker, env={"image": "python:3.12", "kernelSpec": {"pipDependencies": ["requests"]}})
    pinned = shown(broker, exp)["environment"]
    assert pinned["name"] == "inline" and pinned["revision"] == 0
    broker.dispatch()
    plan = broker.cluster(shown(broker, exp)["cluster"]).of(exp).plan
    assert plan.environment is not None and plan.environment.hash == pinned["hash"]
    assert (plan.environment.image, plan.environment.pip, plan.pip_packages) == (
        "python:3.12",
        ["requests"],
        ["requests"],
    )
    assert shown(broker, submit(broker, name="plain", env={}))["environment"] is None


def _scores(decision: dict[str, Any], name: str) -> dict[str, float]:
    return next(v for v in decision["verdicts"] if v["cluster"] == name)["scores"]


def test_a_prepared_cluster_is_warm_and_wins_the_tie(broker: InProcessBroker) -> None:
    made = create(broker)
    cold = broker.result("POST", "/placement/explain", json=experiment())
    assert cold["chosen"] == "east"  # the tie goes to the first name
    assert _scores(cold, "east")["warm-environment"] == _scores(cold, "west")["warm-environment"] == 0

    built = broker.result("POST", "/environment/torch-2/prepare", params={"cluster": "west"})
    assert (built["cluster"], built["hash"], built["state"]) == ("west", made["hash"], "built")
    assert cache(broker.data_dir, "west").built.keys() == {made["hash"]}
    assert cache(broker.data_dir, "east").built == {}

    warm = broker.result("POST", "/placement/explain", json=experiment())
    assert warm["environment"] == {"name": "torch-2", "revision": 1, "hash": made["hash"]}
    assert _scores(warm, "west")["warm-environment"] == 1.0
    assert _scores(warm, "east")["warm-environment"] == 0
    assert warm["chosen"] == "west"
    exp = submit(broker)
    broker.dispatch()
    assert shown(broker, exp)["cluster"] == "west"
    builds = broker.result("GET", "/environment/torch-2")["builds"]
    assert [(b["cluster"], b["state"]) for b in builds] == [("west", "built")]


def test_prepare_refusals_and_a_failing_build(tmp_path: Path, database_url: str | None) -> None:
    broker = make(tmp_path, database_url, east={"kind": "scripted-cache"}, plain={"kind": "scripted"})
    try:
        create(broker, {**ENV, "kernelSpec": {"pipDependencies": ["numpy", "nosuchpkg"]}})
        unknown = broker.request("POST", "/environment/torch-2/prepare", params={"cluster": "mars"})
        assert unknown.status_code == 404 and "mars" in unknown.json()["message"]
        missing = broker.request("POST", "/environment/nope/prepare", params={"cluster": "east"})
        assert (missing.status_code, missing.json()["message"]) == (404, "Environment not found.")
        plain = broker.request("POST", "/environment/torch-2/prepare", params={"cluster": "plain"})
        assert plain.status_code == 400 and "keeps no environment cache" in plain.json()["message"]

        cache(broker.data_dir, "east").missing = {"nosuchpkg"}
        failed = broker.request("POST", "/environment/torch-2/prepare", params={"cluster": "east"})
        assert failed.status_code == 422
        assert "No matching distribution found for nosuchpkg" in failed.json()["message"]
        builds = broker.result("GET", "/environment/torch-2")["builds"]
        assert [(b["cluster"], b["state"]) for b in builds] == [("east", "failed")]
        assert "nosuchpkg" in builds[0]["message"]
        # A failed build is not warm.
        decision = broker.result("POST", "/placement/explain", json=experiment())
        assert _scores(decision, "east")["warm-environment"] == 0

        cache(broker.data_dir, "east").missing = set()
        built = broker.result("POST", "/environment/torch-2/prepare", params={"cluster": "east"})
        assert (built["state"], built["message"]) == ("built", None)
    finally:
        broker.close()


def test_a_cluster_that_cannot_apply_it_is_out_with_its_reason(
    tmp_path: Path, database_url: str | None
) -> None:
    broker = make(tmp_path, database_url, east={"kind": "scripted-cache"}, west={"kind": "scripted-cache"})
    try:
        create(broker, {**ENV, "kernelSpec": {"condaDependencies": ["numpy=1.24"]}})
        cache(broker.data_dir, "east").conda = False
        decision = broker.result("POST", "/placement/explain", json=experiment())
        assert decision["chosen"] == "west"
        east = next(v for v in decision["verdicts"] if v["cluster"] == "east")
        environment = next(f for f in east["filters"] if f["name"] == "environment")
        assert environment["passed"] is False and "need conda" in environment["reason"]

        cache(broker.data_dir, "west").conda = False
        refused = broker.request("POST", "/experiment", json=experiment())
        assert refused.status_code == 422
        message = refused.json()["message"]
        assert "no registered cluster can ever take" in message
        assert "east: conda packages (numpy=1.24) need conda" in message and "west:" in message
    finally:
        broker.close()


def test_runs_record_builds_show_progress_and_fail_for_the_environment(broker: InProcessBroker) -> None:
    made = create(broker)
    exp = submit(broker)
    broker.dispatch()
    cluster = shown(broker, exp)["cluster"]
    script = broker.cluster(cluster)
    script.pending(exp, f"building environment torch-2 (2 packages) on {cluster}")
    broker.monitor()
    assert shown(broker, exp)["statusMessage"] == f"building environment torch-2 (2 packages) on {cluster}"
    script.run(exp)
    broker.monitor()
    assert shown(broker, exp)["status"] == "Running"
    builds = broker.result("GET", "/environment/torch-2")["builds"]
    assert [(b["cluster"], b["hash"], b["state"]) for b in builds] == [(cluster, made["hash"], "built")]

    broken = create(broker, {**ENV, "name": "broken", "kernelSpec": {"pipDependencies": ["nosuchpkg"]}})
    bad = submit(broker, name="bad", env={"name": "broken"})
    broker.dispatch()
    where = shown(broker, bad)["cluster"]
    line = "ERROR: No matching distribution found for nosuchpkg"
    attempt = broker.cluster(where).of(bad)
    attempt.phase, attempt.message, attempt.category = attempt.phase.FAILED, line, "environment"
    broker.monitor()
    ended = shown(broker, bad)
    assert (ended["status"], ended["failureCategory"], ended["reason"]) == ("Failed", "environment", line)
    builds = broker.result("GET", "/environment/broken")["builds"]
    assert [(b["cluster"], b["hash"], b["state"], b["message"]) for b in builds] == [
        (where, broken["hash"], "failed", line)
    ]


def _age_builds(broker: InProcessBroker, days: float) -> None:
    stamp = now() - timedelta(days=days)
    broker.context.db.call(lambda s: s.execute(update(EnvironmentBuild).values(last_used_at=stamp)))


def test_housekeeping_removes_unused_builds_never_one_in_use(broker: InProcessBroker) -> None:
    made = create(broker)
    other = create(broker, {"name": "other", "kernelSpec": {"pipDependencies": ["pandas"]}})
    broker.result("POST", "/environment/torch-2/prepare", params={"cluster": "east"})
    broker.result("POST", "/environment/other/prepare", params={"cluster": "east"})
    housekeeping = broker.context.loops.housekeeping
    assert housekeeping is not None and housekeeping.keep_days == 14
    # Fresh builds stay.
    assert broker.run(housekeeping.run_once()).removed == []

    exp = submit(broker)
    broker.dispatch()
    assert shown(broker, exp)["cluster"] == "east"  # warm
    _age_builds(broker, 15)
    swept = broker.run(housekeeping.run_once())
    assert swept.removed == [("east", other["hash"])]
    assert swept.in_use == [("east", made["hash"])]
    east = cache(broker.data_dir, "east")
    assert east.dropped == [other["hash"]] and made["hash"] in east.built
    assert broker.result("GET", "/environment/other")["builds"] == []

    broker.delete(f"/experiment/{exp}")
    swept = broker.run(housekeeping.run_once())
    assert swept.removed == [("east", made["hash"])]
    assert east.built == {}
    assert broker.result("GET", "/environment/torch-2")["builds"] == []


def test_dispatch_marks_a_build_used(broker: InProcessBroker) -> None:
    create(broker)
    broker.result("POST", "/environment/torch-2/prepare", params={"cluster": "west"})
    _age_builds(broker, 15)
    exp = submit(broker)
    broker.dispatch()
    assert shown(broker, exp)["cluster"] == "west"
    (build,) = broker.result("GET", "/environment/torch-2")["builds"]
    assert build["lastUsedAt"] > (now() - timedelta(days=1)).isoformat()
    assert broker.run(broker.context.loops.housekeeping.run_once()).removed == []


def test_notebooks_pin_their_environment_and_notebook_env_is_there(broker: InProcessBroker) -> None:
    create(broker)
    notebook = {"meta": {"name": "nb"}, "environment": {"name": "torch-2"}, "spec": {"resources": "cpu=1"}}
    made = broker.result("POST", "/notebook", json=notebook)
    assert made["environment"]["name"] == "torch-2" and made["environment"]["revision"] == 1
    broker.dispatch()
    shown_nb = broker.result("GET", f"/notebook/{made['notebookId']}")
    plan = broker.cluster(shown_nb["cluster"]).of(made["notebookId"]).plan
    assert plan.environment is not None and plan.environment.name == "torch-2"
    assert plan.pip_packages == ["numpy", "torch-vision>=0.1"]
    # Submarine's customary notebook-env: registered, installing nothing.
    plain = {**notebook, "meta": {"name": "nb2"}, "environment": {"name": "notebook-env"}}
    pinned = broker.result("POST", "/notebook", json=plain)["environment"]
    assert pinned["name"] == "notebook-env"
    seeded = broker.result("GET", "/environment/notebook-env")
    assert seeded["hash"] == pinned["hash"] == EnvironmentPlan.of("notebook-env").hash


def test_a_build_that_fails_at_submit_fails_the_work_for_its_environment(broker: InProcessBroker) -> None:
    made = create(broker)
    line = "ERROR: No matching distribution found for torch-vision>=0.1"

    async def fail_build(plan: Any) -> None:
        raise EnvironmentBuildFailed(line)

    for name in ("east", "west"):
        broker.cluster(name).on_submit = fail_build
    exp = submit(broker)
    broker.dispatch()
    ended = shown(broker, exp)
    assert (ended["status"], ended["failureCategory"], ended["reason"]) == ("Failed", "environment", line)
    builds = broker.result("GET", "/environment/torch-2")["builds"]
    assert [(b["hash"], b["state"], b["message"]) for b in builds] == [(made["hash"], "failed", line)]


def test_who_may_read_edit_and_delete_environments(broker: InProcessBroker) -> None:
    service, authorizer = broker.context.environments, broker.context.policy.authorizer
    alice, admin = Guard("alice", authorizer), Guard("admin", authorizer)
    made = broker.run(service.create(ENV, alice))
    assert made.owner == "alice"
    changed = broker.run(service.update("torch-2", {**ENV, "description": "by alice"}, alice))
    assert changed.revision == 2
    assert [v.name for v in broker.run(service.list(alice))] == ["notebook-env", "torch-2"]
    with pytest.raises(Forbidden, match="alice may not delete environment/torch-2 in namespace"):
        broker.run(service.delete("torch-2", alice))
    assert broker.run(service.delete("torch-2", admin)).name == "torch-2"


def test_environments_settings_are_checked() -> None:
    assert BrokerConfig().environments.keep_days == 14
    for bad in ({"keep_days": 0}, {"warm_weight": -1}, {"housekeeping_interval": 0}, {"keepdays": 3}):
        with pytest.raises(ValidationError):
            BrokerConfig.model_validate({"environments": bad})
