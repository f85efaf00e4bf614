"""``PATCH /api/v1/experiment/{id}``: replace the spec while Accepted, only tags once dispatched.

Through real brokers (REST), plus one in-process test of the race the replacement must win or lose
cleanly: a dispatch pass that read the old spec must never submit it.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.experiments.patch import changed_fields, in_namespace, keep_secrets
from broker.experiments.views import SECRET_MASK, stored_spec
from broker.scheduler.dispatch import Dispatcher
from broker.store.database import Database
from broker.store.migrate import upgrade
from broker.workloads.model import Event, Workload
from broker.workloads.rows import insert_accepted, new_row
from clusters.base import Capability, Handle
from clusters.local.config import LocalClusterConfig
from policies.placement import Decision
from runtimes.plan import LaunchPlan, StaticAddressing
from runtimes.spec import ExperimentSpec
from tests.support import Broker, hold_code, python_spec, wait_for

ONE_CPU = {"Worker": {"replicas": 1, "resources": "cpu=1,memory=64M"}}


def _patch(broker: Broker, experiment_id: str, spec: dict[str, Any]) -> Any:
    return broker.client.patch(f"/experiment/{experiment_id}", json=spec)


def _reasons(broker: Broker, experiment_id: str) -> list[str]:
    return [e["reason"] for e in broker.events(experiment_id)]


@pytest.fixture
def busy(broker_factory) -> tuple[Broker, str, Path]:
    """A broker whose only cluster (one CPU) is held by a running experiment; returns the holder's
    id and the file that releases it."""
    broker = broker_factory(clusters={"local": {"kind": "local", "capacity": {"cpu": 1}}})
    release = broker.root / "release"
    holder = broker.submit(python_spec(hold_code(release), name="holder", roles=ONE_CPU, tags=["a"]))
    broker.wait_status(holder["experimentId"], "Running")
    return broker, holder["experimentId"], release


def test_an_accepted_experiment_gets_its_spec_replaced_and_runs_the_new_one(busy) -> None:
    broker, holder, release = busy
    waiting = broker.submit(python_spec("print('old')", name="waiting", roles=ONE_CPU))
    exp_id = waiting["experimentId"]
    wait_for(lambda: broker.experiment(exp_id)["statusMessage"], what="a waiting reason")

    new = python_spec("print('new')", name="renamed", roles=ONE_CPU, tags=["v2"])
    answer = _patch(broker, exp_id, new)
    assert answer.status_code == 200, answer.text
    patched = answer.json()["result"]
    assert patched["experimentId"] == exp_id and patched["status"] == "Accepted"
    assert patched["spec"]["meta"]["name"] == "renamed" and patched["spec"]["meta"]["tags"] == ["v2"]
    assert patched["spec"]["meta"]["cmd"] == new["meta"]["cmd"] and patched["namespace"] == "default"
    assert patched["uid"] != waiting["uid"]  # a new attempt uid: no dispatch of the old spec can claim it
    replaced = [r for r in _reasons(broker, exp_id) if r.startswith("spec replaced by admin")]
    assert replaced == ["spec replaced by admin (changed: meta.cmd, meta.name, meta.tags); placing it again"]

    # The same patch again changes nothing and records nothing.
    again = _patch(broker, exp_id, new)
    assert again.status_code == 200 and again.json()["result"]["uid"] == patched["uid"]
    assert len([r for r in _reasons(broker, exp_id) if r.startswith("spec replaced")]) == 1

    release.touch()
    broker.wait_status(holder, "Succeeded")
    broker.wait_status(exp_id, "Succeeded")
    assert broker.logs(exp_id)[f"{exp_id}-worker-0"] == ["new"]


def test_an_accepted_patch_is_checked_like_a_submit(busy) -> None:
    broker, _, _ = busy
    exp_id = broker.submit(python_spec("print('old')", name="waiting", roles=ONE_CPU))["experimentId"]
    before = broker.experiment(exp_id)

    never = python_spec("print(1)", roles={"Worker": {"replicas": 1, "resources": "cpu=64"}})
    refused = _patch(broker, exp_id, never)
    assert refused.status_code == 422 and "can ever take" in refused.json()["message"], refused.text

    bad = python_spec("print(1)", roles={"Worker": {"replicas": 0}})
    invalid = _patch(broker, exp_id, bad)
    assert invalid.status_code == 400 and "spec.Worker.replicas" in invalid.json()["message"], invalid.text

    moved = _patch(broker, exp_id, python_spec("print(1)", namespace="other", roles=ONE_CPU))
    assert moved.status_code == 409 and moved.json()["message"].startswith("meta.namespace: "), moved.text

    unknown = _patch(broker, exp_id, python_spec("print(1)", roles=ONE_CPU, placement={"cluster": "nowhere"}))
    assert unknown.status_code == 400 and "meta.placement.cluster" in unknown.json()["message"]

    after = broker.experiment(exp_id)
    assert (after["spec"], after["uid"], after["status"]) == (before["spec"], before["uid"], "Accepted")
    assert not any(r.startswith("spec replaced") for r in _reasons(broker, exp_id))
    assert _patch(broker, "experiment-1-0001", never).status_code == 404


def test_the_cli_patches_from_a_file(busy, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from broker.cli.main import main

    broker, holder, _ = busy
    exp_id = broker.submit(python_spec("print('old')", name="waiting", roles=ONE_CPU))["experimentId"]
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        yaml.safe_dump(python_spec("print('new')", name="waiting", roles=ONE_CPU, tags=["cli"]))
    )
    cli = CliRunner()
    done = cli.invoke(main, ["--url", broker.url, "experiment", "patch", exp_id, "-f", str(spec_file)])
    assert done.exit_code == 0, done.output
    assert done.stdout == f"experiment {exp_id} patched: Accepted (tags: cli)\n"
    assert broker.experiment(exp_id)["spec"]["meta"]["tags"] == ["cli"]

    refused = cli.invoke(main, ["--url", broker.url, "experiment", "patch", holder, "-f", str(spec_file)])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert (
        f"Error: experiment {holder} is Running: once dispatched only meta.tags may change" in refused.output
    )


def test_a_dispatched_experiment_only_takes_new_tags(busy) -> None:
    broker, holder, release = busy
    shown = broker.experiment(holder)

    # What GET shows, tags changed, is a valid patch (echo fields such as resourceMap included).
    retagged = copy.deepcopy(shown["spec"])
    retagged["meta"]["tags"] = ["a", "b"]
    answer = _patch(broker, holder, retagged)
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["spec"]["meta"]["tags"] == ["a", "b"]
    assert answer.json()["result"]["status"] == "Running" and answer.json()["result"]["uid"] == shown["uid"]
    assert broker.experiment(holder)["spec"]["meta"]["tags"] == ["a", "b"]
    assert "tags changed by admin: ['a'] -> ['a', 'b']" in _reasons(broker, holder)

    changed = copy.deepcopy(retagged)
    changed["meta"]["cmd"] = "python -c 'print(2)'"
    changed["spec"]["Worker"]["replicas"] = 1
    refused = _patch(broker, holder, changed)
    assert refused.status_code == 409, refused.text
    assert refused.json()["message"] == (
        f"experiment {holder} is Running: once dispatched only meta.tags may change, "
        "and this patch changes meta.cmd"
    )
    both = copy.deepcopy(changed)
    both["environment"]["image"] = "python:3.12"
    message = _patch(broker, holder, both).json()["message"]
    assert message.endswith("this patch changes environment.image, meta.cmd")
    assert broker.experiment(holder)["spec"]["meta"]["cmd"] == shown["spec"]["meta"]["cmd"]

    release.touch()
    broker.wait_status(holder, "Succeeded")
    finished = copy.deepcopy(retagged)
    finished["meta"]["tags"] = ["done"]
    assert _patch(broker, holder, finished).json()["result"]["spec"]["meta"]["tags"] == ["done"]


def test_patch_permissions_follow_the_teams(tmp_path) -> None:
    from tests.test_permissions import make_users

    broker = Broker(tmp_path / "secured", auth="token", loops={"dispatch_paused": True})
    tokens = make_users(broker)
    broker.start()
    try:

        def as_user(name: str) -> None:
            broker.client.headers["Authorization"] = f"Bearer {tokens[name]}"

        as_user("alice")
        exp_id = broker.submit(python_spec("print(1)", name="mine", namespace="vision"))["experimentId"]
        new = python_spec("print(2)", name="mine", namespace="vision", tags=["t"])
        for other in ("bob", "carol"):  # another team, no team: as if it did not exist
            as_user(other)
            answer = _patch(broker, exp_id, new)
            assert answer.status_code == 404 and answer.json()["message"] == f"Not found experiment: {exp_id}"
        as_user("alice")
        assert _patch(broker, exp_id, new).status_code == 200
        as_user("root")
        by_admin = _patch(broker, exp_id, python_spec("print(3)", name="mine", namespace="vision"))
        assert by_admin.status_code == 200 and by_admin.json()["result"]["owner"] == "alice"
        assert any(r.startswith("spec replaced by root") for r in _reasons(broker, exp_id))
    finally:
        broker.close()


# ---------------------------------------------------------------------------- the dispatch race
@dataclass
class RecordingAdapter:
    """Just enough of a cluster adapter for dispatch: records the plans it is asked to start."""

    submitted: list[LaunchPlan] = field(default_factory=list)
    capabilities: frozenset[Capability] = frozenset({Capability.IMAGES})

    def addressing(self, uid: str) -> StaticAddressing:
        return StaticAddressing(lambda _role, _index: "127.0.0.1", lambda: 1234)

    async def submit(self, plan: LaunchPlan) -> Handle:
        self.submitted.append(plan)
        return Handle(plan.uid)


class Registry:
    def __init__(self, adapter: RecordingAdapter) -> None:
        from broker.registry import ClusterState

        self.cluster = ClusterState(config=LocalClusterConfig(name="local", kind="local"), adapter=adapter)  # type: ignore[arg-type]
        self.cluster.reachable = True

    def get(self, name: str) -> Any:
        return self.cluster if name == "local" else None


class PatchingPlanner:
    """Chooses ``local``; the first time, a patch lands between the dispatcher's read and its claim."""

    def __init__(self, patch: Any) -> None:
        self.patch = patch

    def snapshot(self) -> PatchingPlanner:
        return self

    def take(self, cluster: str, resources: Any) -> None:
        pass

    def decide(
        self, spec: Any, namespace: str, owner: str, refused_by: Any = frozenset(), **_: Any
    ) -> Decision:
        if self.patch is not None:
            self.patch()
            self.patch = None
        return Decision("local", [], revision=1)


def test_a_dispatch_pass_that_read_the_old_spec_never_submits_it(tmp_path: Path) -> None:
    from broker.experiments.patch import replace_spec

    db = Database(f"sqlite:///{tmp_path / 'broker.db'}")
    upgrade(db.engine)
    try:
        old = ExperimentSpec.model_validate(python_spec("print('old')"))
        new = ExperimentSpec.model_validate(python_spec("print('new')"))
        values = new_row(
            "experiment-1-0001",
            name="job",
            namespace="default",
            owner="admin",
            framework="python",
            spec=stored_spec(old, "experiment-1-0001", "default"),
        )
        db.call(insert_accepted(values, "submitted"))
        unit = replace_spec(
            "experiment-1-0001",
            values["uid"],
            stored_spec(new, "experiment-1-0001", "default"),
            name="job",
            framework="python",
            user="admin",
        )
        adapter = RecordingAdapter()
        planner = PatchingPlanner(lambda: db.call(unit))
        dispatcher = Dispatcher(db, Registry(adapter), planner, backoff_max=1, extra_env={})  # type: ignore[arg-type]

        assert asyncio.run(dispatcher.run_once()) == 0  # the claim of the old spec fails
        row = db.call(lambda s: s.get(Workload, "experiment-1-0001"))
        assert row.status == "Accepted" and row.cluster is None and row.uid != values["uid"]
        assert adapter.submitted == []

        assert asyncio.run(dispatcher.run_once()) == 1  # the next pass takes the new spec
        (plan,) = adapter.submitted
        assert plan.uid == row.uid and "print('new')" in " ".join(plan.replicas[0].argv)
        reasons = db.call(lambda s: [e.reason for e in s.query(Event).order_by(Event.id)])
        assert [r.split(" (")[0] for r in reasons] == [
            "submitted",
            "spec replaced by admin",
            "placed on local",
            "submitted to local",
        ]
    finally:
        db.dispose()


# ---------------------------------------------------------------------------- helpers
def test_changed_fields_and_secrets() -> None:
    old = {"meta": {"cmd": "a", "tags": ["x"], "envVars": {"A": "1"}}, "spec": {"Worker": {"replicas": 1}}}
    new = {
        "meta": {"cmd": "a", "tags": ["y"], "envVars": {"A": "2"}},
        "spec": {"Worker": {"replicas": 1}, "Ps": {}},
    }
    assert changed_fields(old, new) == [("meta", "envVars", "A"), ("meta", "tags"), ("spec", "Ps")]
    assert changed_fields(old, copy.deepcopy(old)) == []

    stored = {"code": {"git": {"url": "u", "password": "s3cret"}}}
    sent_back = {"code": {"git": {"url": "u", "password": SECRET_MASK}}}
    assert keep_secrets(sent_back, stored) == stored
    assert (
        keep_secrets({"code": {"git": {"url": "u", "password": "new"}}}, stored)["code"]["git"]["password"]
        == "new"
    )

    assert in_namespace({"meta": {"name": "x"}}, "vision") == {"meta": {"name": "x", "namespace": "vision"}}
    assert in_namespace({"meta": {"name": "x", "namespace": "nlp"}}, "vision")["meta"]["namespace"] == "nlp"
    assert in_namespace({"meta": "bad"}, "vision") == {"meta": "bad"}  # left for validation to refuse
