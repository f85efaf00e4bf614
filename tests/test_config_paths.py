"""Every path option of broker.yaml is resolved against the file's folder, never the working directory.

The options are found by introspection (every ``Path`` field, nested sections included), so a path
option added later is covered here without anyone remembering to add it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel

from broker.config import load_broker_config
from broker.config.models import BrokerConfig, resolve_paths
from tests.support import REPO, Broker, python_spec

DEFAULT_POLICY = REPO / "broker" / "defaults" / "policy.csv"


def _is_path(annotation: Any) -> bool:
    return annotation is Path or Path in get_args(annotation)


def _path_options(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The keys (as a path of names) of every Path option of ``model``, nested models included."""
    found: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        if field.exclude:  # set by the loader, not by the file
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += _path_options(annotation, (*prefix, name))
        elif _is_path(annotation):
            found.append((*prefix, name))
    return found


PATH_OPTIONS = _path_options(BrokerConfig)


def test_the_path_options_are_found() -> None:
    assert {("data_dir",), ("clusters_dir",), ("default_policy",)} <= set(PATH_OPTIONS)


@pytest.mark.parametrize("option", PATH_OPTIONS, ids=".".join)
def test_a_relative_path_option_is_resolved_against_the_files_folder(
    option: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "broker"
    folder.mkdir(parents=True)
    document: dict[str, Any] = {}
    node = document
    for key in option[:-1]:
        node = node.setdefault(key, {})
    node[option[-1]] = "sub/thing"
    (folder / "broker.yaml").write_text(yaml.safe_dump(document))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config: Any = load_broker_config(Path("..") / "etc" / "broker" / "broker.yaml")
    for key in option:
        config = getattr(config, key)
    assert config == folder.resolve() / "sub" / "thing"


@pytest.mark.parametrize("option", PATH_OPTIONS, ids=".".join)
def test_a_path_option_expands_the_home_folder(
    option: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    document: dict[str, Any] = {}
    node = document
    for key in option[:-1]:
        node = node.setdefault(key, {})
    node[option[-1]] = "~/thing"
    (tmp_path / "broker.yaml").write_text(yaml.safe_dump(document))
    config: Any = load_broker_config(tmp_path / "broker.yaml")
    for key in option:
        config = getattr(config, key)
    assert config == (tmp_path / "home" / "thing").resolve()


def test_paths_are_resolved_by_type_wherever_they_are() -> None:
    """A path option added later (nested, optional, in a list) is resolved without naming it."""

    class Section(BaseModel):
        where: Path = Path("a")
        label: str = "not/a/path"

    class Settings(BaseModel):
        section: Section = Section()
        maybe: Path | None = None
        many: list[Path] = [Path("b"), Path("/abs/c")]
        keyed: dict[str, Path] = {"k": Path("d")}

    base = Path("/base")
    done = resolve_paths(Settings(maybe=Path("e")), base)
    assert done.section.where == Path("/base/a")
    assert done.section.label == "not/a/path"
    assert done.maybe == Path("/base/e")
    assert done.many == [Path("/base/b"), Path("/abs/c")]
    assert done.keyed == {"k": Path("/base/d")}
    assert resolve_paths(Settings(), base).maybe is None


def test_serve_from_another_folder_finds_everything_beside_broker_yaml(tmp_path: Path) -> None:
    """A real broker started elsewhere, with a relative --config whose every path is relative."""
    policy = DEFAULT_POLICY.read_text() + "\np, marker-user, *, experiment/*, read, allow\n"
    root = tmp_path / "conf"
    broker = Broker(root, data_dir="data", clusters_dir="clusters.d", default_policy="policy.csv")
    (root / "policy.csv").write_text(policy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, "-m", "broker", "serve", "--config", "../conf/broker.yaml"]
    try:
        broker.start(command=command, cwd=elsewhere)
        assert [c["name"] for c in broker.client.get("/cluster").json()["result"]] == ["local"]
        lines = broker.client.get("/policy").json()["result"]["lines"]
        assert "p, marker-user, *, experiment/*, read, allow" in lines
        created = broker.submit(python_spec("print('from the config folder')"))
        broker.wait_status(created["experimentId"], "Succeeded")
        assert (root / "data" / "broker.db").is_file()
        assert (root / "data" / "clusters" / "local").is_dir()
        assert list(elsewhere.iterdir()) == []
    finally:
        broker.close()
        shutil.rmtree(elsewhere, ignore_errors=True)
