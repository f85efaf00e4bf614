"""``submarine-broker serve`` without --config serves the default packaged inside ``broker``, from any
folder, with its data in the user's data directory; ``init`` writes an editable copy of it."""

from __future__ import annotations

import configparser
import fnmatch
import os
import sys
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.cli.main import main
from broker.config.defaults import FILES, packaged_dir
from tests.support import REPO, Broker, python_spec


def user_env(tmp_path: Path, port: int) -> dict[str, str]:
    """The environment of a user whose home and data directory are in tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBMARINE_BROKER_")}
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_DATA_HOME=str(tmp_path / "xdg"),
        SUBMARINE_BROKER_PORT=str(port),
        PYTHONUNBUFFERED="1",
    )
    return env


def test_the_packaged_files_are_package_data() -> None:
    """Found through importlib.resources, and covered by setup.cfg's package_data (so in the wheel)."""
    root = resources.files("broker").joinpath("defaults")
    for name in FILES:
        assert root.joinpath(name).is_file(), name
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    patterns = [p.strip() for p in parser["options.package_data"]["broker"].split(",")]
    shipped = sorted(
        str(path.relative_to(REPO / "broker"))
        for path in (REPO / "broker" / "defaults").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )
    assert shipped == sorted(f"defaults/{name}" for name in FILES)
    for name in shipped:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_serve_without_config_from_an_empty_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    broker = Broker(tmp_path / "broker")
    data = tmp_path / "xdg" / "submarine-broker"
    broker.data_dir = data  # for the replicas' cleanup
    try:
        broker.start(
            command=[sys.executable, "-m", "broker", "serve"], cwd=empty, env=user_env(tmp_path, broker.port)
        )
        created = broker.submit(python_spec("print('served by the packaged default')"))
        broker.wait_status(created["experimentId"], "Succeeded")
        assert broker.logs(created["experimentId"])[f"{created['experimentId']}-worker-0"] == [
            "served by the packaged default"
        ]
        assert [c["name"] for c in broker.client.get("/cluster").json()["result"]] == ["local"]
        assert (data / "broker.db").is_file()
        log = broker.log()
        assert f"config: {packaged_dir() / 'broker.yaml'} (the packaged default" in log
        assert f"data: {data}" in log
        assert list(empty.iterdir()) == []
    finally:
        broker.close()


def test_init_writes_an_editable_copy_and_refuses_to_overwrite_it(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    written = CliRunner().invoke(main, ["init", str(target)])
    assert written.exit_code == 0, written.output
    for name in FILES:
        assert (target / name).read_bytes() == (packaged_dir() / name).read_bytes()
    assert f"next: submarine-broker serve --config {target / 'broker.yaml'}" in written.output

    (target / "policy.csv").write_text("p, admin, *, *, *, allow\n")
    again = CliRunner().invoke(main, ["init", str(target)])
    assert again.exit_code == 1
    assert "already exist" in again.output and "--force" in again.output
    assert str(target / "broker.yaml") in again.output
    assert (target / "policy.csv").read_text() == "p, admin, *, *, *, allow\n"  # untouched

    forced = CliRunner().invoke(main, ["init", str(target), "--force"])
    assert forced.exit_code == 0, forced.output
    assert (target / "policy.csv").read_bytes() == (packaged_dir() / "policy.csv").read_bytes()


def test_init_without_a_folder_writes_to_submarine_broker_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "submarine-broker"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == sorted(FILES)


def test_serve_the_copy_init_wrote(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    assert CliRunner().invoke(main, ["init", str(target)]).exit_code == 0
    local = target / "clusters.d" / "local.yaml"
    local.write_text(local.read_text().replace("site: broker-host", "site: edited"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    broker = Broker(tmp_path / "broker")
    broker.data_dir = tmp_path / "xdg" / "submarine-broker"
    try:
        broker.start(
            command=[sys.executable, "-m", "broker", "serve", "--config", str(target / "broker.yaml")],
            cwd=elsewhere,
            env=user_env(tmp_path, broker.port),
        )
        (cluster,) = broker.client.get("/cluster").json()["result"]
        assert cluster["name"] == "local" and cluster["labels"] == {"site": "edited"}
        assert (broker.data_dir / "broker.db").is_file()
        assert f"config: {target / 'broker.yaml'}\n" in broker.log()
    finally:
        broker.close()


@pytest.mark.parametrize("command", [["db", "upgrade"], ["user", "add", "alice", "--team", "vision"]])
def test_database_commands_follow_the_same_rule(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --config: $SUBMARINE_BROKER_CONFIG, else the packaged default (data in XDG_DATA_HOME)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SUBMARINE_BROKER_CONFIG", raising=False)
    packaged = CliRunner().invoke(main, command)
    assert packaged.exit_code == 0, packaged.output
    assert (tmp_path / "xdg" / "submarine-broker" / "broker.db").is_file()

    assert CliRunner().invoke(main, ["init", str(tmp_path / "mine")]).exit_code == 0
    (tmp_path / "mine" / "broker.yaml").write_text("data_dir: data\n")
    from_env = CliRunner().invoke(
        main, command, env={"SUBMARINE_BROKER_CONFIG": str(tmp_path / "mine" / "broker.yaml")}
    )
    assert from_env.exit_code == 0, from_env.output
    assert (tmp_path / "mine" / "data" / "broker.db").is_file()
