"""The clusters.d watch in process: add, change, break, fix, duplicate, rename and remove files."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
import yaml

import broker.registry as registry_module
from broker.cluster_watch import ClusterWatch
from broker.config.errors import ConfigError
from broker.registry import ClusterRegistry
from clusters.base import Handle, Observation
from clusters.errors import ClusterUnreachable
from clusters.local.adapter import LocalAdapter

MARKER = "sekrit-MARKER-4f9c2a"


class Fixture:
    def __init__(self, root: Path) -> None:
        self.dir = root / "clusters.d"
        self.dir.mkdir()
        self.registry = ClusterRegistry(str(root / "data"), health_interval=1.0)
        self.busy: set[str] = set()
        self.running: dict[str, list[Handle]] = {}
        self.errors: list[ConfigError] = []
        self.watch = ClusterWatch(
            self.dir,
            self.registry,
            has_work=self._has_work,
            active_handles=self._handles,
            errors=self.errors,
        )

    async def _has_work(self, name: str) -> bool:
        return name in self.busy

    async def _handles(self, name: str) -> list[Handle]:
        return self.running.get(name, [])

    def write(self, file: str, text: str) -> Path:
        path = self.dir / file
        path.write_text(text)
        return path

    def cluster(self, file: str, name: str, **body) -> Path:
        return self.write(file, yaml.safe_dump({"name": name, "kind": "local", **body}))

    def tick(self) -> None:
        asyncio.run(self.watch.tick())

    def names(self) -> list[str]:
        return [c.name for c in self.registry.all()]


@pytest.fixture
def fx(tmp_path: Path) -> Fixture:
    return Fixture(tmp_path)


def test_files_added_and_changed_take_effect_keeping_the_condition(fx: Fixture) -> None:
    fx.cluster("a.yaml", "alpha", labels={"zone": "a"})
    fx.tick()
    alpha = fx.registry.get("alpha")
    assert alpha is not None and alpha.source == str(fx.dir / "a.yaml")
    assert alpha.state == "Ready"  # checked at once, not at the next health tick
    assert not fx.watch.scan()  # nothing changed: nothing to do

    alpha.cordoned = True
    adapter = alpha.adapter
    fx.cluster("a.yaml", "alpha", labels={"zone": "b"}, weight=3)
    fx.tick()
    assert fx.registry.get("alpha") is alpha and alpha.adapter is not adapter
    assert alpha.config.labels == {"zone": "b"} and alpha.config.weight == 3
    assert alpha.cordoned and alpha.state == "Cordoned"

    os.utime(fx.dir / "a.yaml")  # touched, same content: nothing is rebuilt
    adapter = alpha.adapter
    fx.tick()
    assert alpha.adapter is adapter


class Recording(LocalAdapter):
    """A local adapter that remembers what it was asked to poll (or fails the poll)."""

    fail = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.polled: list[str] = []

    async def poll(self, handles) -> dict[str, Observation]:
        self.polled += [h.uid for h in handles]
        if self.fail:
            raise ClusterUnreachable("no answer")
        return await super().poll(handles)


def test_a_rebuilt_adapter_is_shown_the_running_work_before_its_first_check(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_module, "adapter_class", lambda kind: Recording)
    fx.cluster("a.yaml", "alpha")
    fx.tick()
    fx.running["alpha"] = [Handle("uid-1", {"dir": str(fx.dir / "nowhere")})]
    fx.cluster("a.yaml", "alpha", labels={"zone": "b"})
    fx.tick()
    alpha = fx.registry.get("alpha")
    assert alpha.adapter.polled == ["uid-1"] and alpha.state == "Ready"

    Recording.fail = True
    try:
        fx.cluster("a.yaml", "alpha", labels={"zone": "c"})
        fx.tick()
    finally:
        Recording.fail = False
    assert alpha.adapter.polled == ["uid-1"] and alpha.state == "Ready"  # a failed poll is no harm


def test_a_broken_file_is_refused_and_the_last_good_definition_stays(fx: Fixture) -> None:
    fx.cluster("a.yaml", "alpha", labels={"zone": "a"})
    fx.tick()
    errors = fx.errors
    fx.write("a.yaml", "name: alpha\nkind: local\nlabels: {zone: [b\n")
    fx.tick()
    assert fx.errors is errors and len(errors) == 1
    assert errors[0].file == str(fx.dir / "a.yaml") and errors[0].line and "YAML" in errors[0].reason
    alpha = fx.registry.get("alpha")
    assert alpha is not None and alpha.config.labels == {"zone": "a"} and alpha.state == "Ready"

    fx.write("a.yaml", "name: alpha\nkind: local\nweight: -1\n")
    fx.tick()
    assert [(e.key, e.line) for e in fx.errors] == [("weight", 3)]
    fx.cluster("a.yaml", "alpha", labels={"zone": "c"})
    fx.tick()
    assert fx.errors == [] and alpha.config.labels == {"zone": "c"}

    fx.write("new.yaml", "name: Bad_Name\nkind: local\n")
    fx.tick()
    assert [e.key for e in fx.errors] == ["name"] and fx.names() == ["alpha"]


def test_removed_file_drains_a_busy_cluster_and_drops_an_idle_one(fx: Fixture) -> None:
    fx.cluster("a.yaml", "alpha")
    fx.cluster("b.yaml", "beta")
    fx.tick()
    fx.busy.add("alpha")
    (fx.dir / "a.yaml").unlink()
    (fx.dir / "b.yaml").unlink()
    fx.tick()
    assert fx.names() == ["alpha"]
    alpha = fx.registry.get("alpha")
    assert alpha.removed and alpha.state == "Draining" and not alpha.ready
    fx.tick()
    assert fx.names() == ["alpha"]
    fx.busy.clear()
    fx.tick()
    assert fx.names() == []


def test_a_file_coming_back_revives_a_draining_cluster(fx: Fixture) -> None:
    fx.cluster("a.yaml", "alpha")
    fx.tick()
    fx.busy.add("alpha")
    (fx.dir / "a.yaml").unlink()
    fx.tick()
    alpha = fx.registry.get("alpha")
    assert alpha.removed
    fx.cluster("renamed.yaml", "alpha")  # the same cluster under another file name
    fx.tick()
    assert fx.registry.get("alpha") is alpha and not alpha.removed and alpha.state == "Ready"
    assert alpha.source == str(fx.dir / "renamed.yaml")


def test_duplicate_names_and_a_file_that_renames_its_cluster(fx: Fixture) -> None:
    fx.cluster("a.yaml", "alpha", labels={"from": "a"})
    fx.cluster("b.yaml", "alpha", labels={"from": "b"})
    fx.tick()
    assert [(e.file, e.key) for e in fx.errors] == [(str(fx.dir / "b.yaml"), "name")]
    assert "already used by a.yaml" in fx.errors[0].reason
    (fx.dir / "a.yaml").unlink()
    fx.tick()  # b.yaml now defines alpha: it stays, not drained
    alpha = fx.registry.get("alpha")
    assert alpha.config.labels == {"from": "b"} and not alpha.removed and fx.errors == []

    fx.cluster("b.yaml", "gamma")
    fx.tick()
    assert fx.names() == ["gamma"]  # alpha was idle: it left at once


def test_a_missing_folder_drains_nothing(fx: Fixture) -> None:
    fx.cluster("a.yaml", "alpha")
    fx.tick()
    (fx.dir / "a.yaml").rename(fx.dir.parent / "a.yaml")
    fx.dir.rmdir()
    fx.tick()
    assert fx.names() == ["alpha"] and not fx.registry.get("alpha").removed


def test_refusals_never_echo_a_secret(
    fx: Fixture, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CLUSTER_TOKEN", MARKER)
    caplog.set_level(logging.DEBUG)
    fx.write("unknown.yaml", f"name: one\nkind: local\ntoken: {MARKER}\n")
    fx.write("typed.yaml", f"name: two\nkind: local\nweight: {MARKER}\n")
    fx.write("env.yaml", "name: three\nkind: local\ncapacity:\n  cpu: ${CLUSTER_TOKEN}\n")
    fx.write("envlabel.yaml", "name: four\nkind: local\nweight: '${CLUSTER_TOKEN}'\n")
    fx.write("alias.yaml", f"name: five\nkind: local\ntoken: *{MARKER}\n")  # the parser quotes it
    fx.write("tag.yaml", f"name: six\nkind: local\ntoken: !{MARKER} x\n")
    fx.tick()
    assert sorted(Path(e.file).name for e in fx.errors) == [
        "alias.yaml",
        "env.yaml",
        "envlabel.yaml",
        "tag.yaml",
        "typed.yaml",
        "unknown.yaml",
    ]
    assert {e.key for e in fx.errors} == {None, "token", "weight", "capacity.cpu"}
    assert all(e.line == 3 for e in fx.errors if Path(e.file).name in ("alias.yaml", "tag.yaml"))
    for error in fx.errors:
        assert MARKER not in str(error) and MARKER not in repr(error.to_json())
    assert "cluster file refused" in caplog.text and MARKER not in caplog.text


def test_a_refused_file_is_logged_with_yaml_words_and_every_problem(
    fx: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    flow = fx.write("flow.yaml", f"name: one\nkind: local\nlabels: [{MARKER}, y\n")
    many = fx.write("many.yaml", f"name: two\nkind: local\ntoken: {MARKER}\nweight: {MARKER}\n")
    fx.tick()
    by_file = {e.file: e for e in fx.errors}
    assert str(by_file[str(flow)]) == (
        f"{flow}:4:1: not valid YAML: while parsing a flow sequence (line 3, column 9): "
        "expected ',' or ']', but got '<stream end>'"
    )
    assert [(p.key, p.line) for p in by_file[str(many)].problems] == [("token", 3), ("weight", 4)]
    assert f"cluster file refused: {by_file[str(flow)]}" in caplog.text
    assert (
        f"cluster file refused: {many}: 2 problems: line 3: token: unknown field; "
        "line 4: weight: Input should be a valid number" in caplog.text
    )
    assert MARKER not in caplog.text
