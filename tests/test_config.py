"""broker.yaml and clusters.d/*.yaml: defaults, paths, ${ENV}, and errors that locate the problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from broker.config import ConfigError, load_broker_config, load_cluster_file, load_clusters_dir
from clusters.local.config import LocalClusterConfig

SECRET = "s3cr3t-value"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def refuse_broker(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_broker_config(path)
    return info.value


def refuse_cluster(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_cluster_file(path)
    return info.value


# broker.yaml


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_broker_defaults(tmp_path: Path, text: str) -> None:
    config = load_broker_config(write(tmp_path / "broker.yaml", text))
    assert (config.host, config.port, config.auth) == ("127.0.0.1", 8080, "none")
    assert config.default_namespace == "default"
    assert config.max_body_bytes == 1024 * 1024
    assert config.database_url is None
    assert config.data_dir == (tmp_path / "data").resolve()
    assert config.clusters_dir == (tmp_path / "clusters.d").resolve()
    assert config.effective_database_url == f"sqlite:///{(tmp_path / 'data').resolve() / 'broker.db'}"
    assert config.loops.dispatch_interval == 2.0
    assert config.loops.dispatch_paused is False


def test_relative_paths_resolve_against_the_file_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "etc" / "broker.yaml", "data_dir: ../data\nclusters_dir: clusters.d\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_broker_config(Path("..") / "etc" / "broker.yaml")
    assert config.data_dir == (tmp_path / "data").resolve()
    assert config.clusters_dir == (tmp_path / "etc" / "clusters.d").resolve()
    assert config.data_dir.is_absolute()


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "data"
    config = load_broker_config(write(tmp_path / "broker.yaml", f"data_dir: {target}\n"))
    assert config.data_dir == target.resolve()


def test_env_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_PORT", "9191")
    monkeypatch.setenv("DB_PASSWORD", "pw")
    monkeypatch.delenv("BROKER_HOST", raising=False)
    config = load_broker_config(
        write(
            tmp_path / "broker.yaml",
            """
            host: ${BROKER_HOST:-0.0.0.0}
            port: ${BROKER_PORT}
            database_url: postgresql://u:${DB_PASSWORD}@db:5432/${DB_NAME:-broker}
            """,
        )
    )
    assert config.host == "0.0.0.0"
    assert config.port == 9191
    assert config.database_url == "postgresql://u:pw@db:5432/broker"


def test_env_value_wins_over_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_HOST", "10.0.0.1")
    config = load_broker_config(write(tmp_path / "broker.yaml", "host: ${BROKER_HOST:-0.0.0.0}\n"))
    assert config.host == "10.0.0.1"


def test_missing_env_var_names_key_and_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_VAR_FOR_TEST", raising=False)
    path = write(tmp_path / "broker.yaml", "loops:\n  lease_ttl: ${NO_SUCH_VAR_FOR_TEST}\n")
    error = refuse_broker(path)
    assert error.key == "loops.lease_ttl"
    assert "NO_SUCH_VAR_FOR_TEST" in error.reason
    assert str(path) in str(error)


def test_invalid_yaml_carries_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "broker.yaml", "host: 127.0.0.1\nport: 8080\n  oops: here\nauth: none\n")
    error = refuse_broker(path)
    assert (error.reason, error.line, error.column) == (
        "not valid YAML: mapping values are not allowed here",
        3,
        7,
    )
    assert str(error) == f"{path}:3:7: not valid YAML: mapping values are not allowed here"


def test_unclosed_bracket_reports_a_line(tmp_path: Path) -> None:
    error = refuse_broker(write(tmp_path / "broker.yaml", "host: 127.0.0.1\nport: 8080\nloops: [1, 2\n"))
    assert error.line is not None and error.line >= 3


def test_non_mapping_file_refused(tmp_path: Path) -> None:
    error = refuse_broker(write(tmp_path / "broker.yaml", "- a\n- b\n"))
    assert "mapping" in error.reason


def test_unknown_broker_field_named_with_line(tmp_path: Path) -> None:
    path = write(tmp_path / "broker.yaml", "host: 127.0.0.1\nport: 8080\nprot: 9090\n")
    error = refuse_broker(path)
    assert (error.key, error.line, error.reason) == ("prot", 3, "unknown field")
    assert str(error) == f"{path}:3: prot: unknown field"


def test_unknown_nested_field_named_with_line(tmp_path: Path) -> None:
    path = write(tmp_path / "broker.yaml", "loops:\n  lease_ttl: 5\n  lease_tll: 5\n")
    error = refuse_broker(path)
    assert (error.key, error.line) == ("loops.lease_tll", 3)


def test_wrong_type_names_port(tmp_path: Path) -> None:
    error = refuse_broker(write(tmp_path / "broker.yaml", "host: h\nport: abc\n"))
    assert error.key == "port"
    assert error.line == 2
    assert "integer" in error.reason


def test_bad_auth_value(tmp_path: Path) -> None:
    error = refuse_broker(write(tmp_path / "broker.yaml", "auth: basic\n"))
    assert error.key == "auth"
    assert "'none'" in error.reason and "'token'" in error.reason


def test_broker_errors_do_not_echo_secrets(tmp_path: Path) -> None:
    for text in (f"port: {SECRET}\n", f"password: {SECRET}\n", f"loops: {SECRET}\n"):
        error = refuse_broker(write(tmp_path / "broker.yaml", text))
        assert SECRET not in str(error)
        assert SECRET not in repr(error.to_json())


def test_missing_file(tmp_path: Path) -> None:
    error = refuse_broker(tmp_path / "nope.yaml")
    assert "cannot read" in error.reason
    assert error.file == str(tmp_path / "nope.yaml")


# clusters.d files


def test_local_cluster_file(tmp_path: Path) -> None:
    config = load_cluster_file(
        write(
            tmp_path / "local.yaml",
            """
            name: local
            kind: local
            labels: {site: broker-host}
            weight: 2.5
            """,
        )
    )
    assert isinstance(config, LocalClusterConfig)
    assert (config.name, config.kind, config.labels, config.weight) == (
        "local",
        "local",
        {"site": "broker-host"},
        2.5,
    )
    assert config.work_dir is None
    assert config.capacity.cpu is None and config.capacity.memory is None


def test_local_work_dir(tmp_path: Path) -> None:
    config = load_cluster_file(write(tmp_path / "l.yaml", f"name: l\nkind: local\nwork_dir: {tmp_path}\n"))
    assert config.work_dir == tmp_path


def test_capacity_quantities(tmp_path: Path) -> None:
    config = load_cluster_file(
        write(tmp_path / "c.yaml", "name: c\nkind: local\ncapacity:\n  cpu: 500m\n  memory: 8Gi\n  gpu: 2\n")
    )
    assert config.capacity.cpu == pytest.approx(0.5)
    assert config.capacity.memory == 8 * 2**30
    assert config.capacity.gpu == 2


def test_capacity_plain_numbers(tmp_path: Path) -> None:
    config = load_cluster_file(
        write(tmp_path / "c.yaml", "name: c\nkind: local\ncapacity: {cpu: 4, memory: 1024}\n")
    )
    assert (config.capacity.cpu, config.capacity.memory) == (4, 1024)


def test_bad_capacity_memory_named(tmp_path: Path) -> None:
    error = refuse_cluster(write(tmp_path / "c.yaml", "name: c\nkind: local\ncapacity:\n  memory: 8XB\n"))
    assert (error.key, error.line) == ("capacity.memory", 4)


@pytest.mark.parametrize("value", ["NaN", "inf"])
def test_capacity_cpu_non_finite_is_a_config_error(tmp_path: Path, value: str) -> None:
    # Must be a located ConfigError, not a decimal.InvalidOperation or an infinite capacity.
    error = refuse_cluster(write(tmp_path / "c.yaml", f"name: c\nkind: local\ncapacity:\n  cpu: '{value}'\n"))
    assert error.key == "capacity.cpu"


def test_unknown_kind_lists_valid_kinds(tmp_path: Path) -> None:
    error = refuse_cluster(write(tmp_path / "c.yaml", "name: c\nkind: pbs\n"))
    assert (error.key, error.line) == ("kind", 2)
    assert "local" in error.reason and "slurm" in error.reason and "yarn" in error.reason


def test_missing_kind(tmp_path: Path) -> None:
    error = refuse_cluster(write(tmp_path / "c.yaml", "name: c\n"))
    assert error.key == "kind"
    assert "local" in error.reason


@pytest.mark.parametrize("name", ["Local", "my_cluster", "-edge", "edge-", "a" * 64, "a.b"])
def test_invalid_cluster_name(tmp_path: Path, name: str) -> None:
    error = refuse_cluster(write(tmp_path / "c.yaml", f"kind: local\nname: '{name}'\n"))
    assert (error.key, error.line) == ("name", 2)
    assert "not a valid cluster name" in error.reason


def test_unknown_cluster_field_named_with_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "name: c\nkind: local\nlabels: {}\nwieght: 3\n")
    error = refuse_cluster(path)
    assert (error.key, error.line, error.reason) == ("wieght", 4, "unknown field")


def test_negative_weight_refused(tmp_path: Path) -> None:
    error = refuse_cluster(write(tmp_path / "c.yaml", "name: c\nkind: local\nweight: -1\n"))
    assert error.key == "weight"


@pytest.mark.parametrize(
    "extra",
    [
        f'weight: "{SECRET}"',
        f"token: {SECRET}",
        f"capacity:\n  gpu: {SECRET}",
        f"labels: {SECRET}",
        f"capacity:\n  memory: {SECRET}",
        f"capacity:\n  cpu: {SECRET}",
    ],
)
def test_cluster_errors_do_not_echo_secrets(tmp_path: Path, extra: str) -> None:
    error = refuse_cluster(write(tmp_path / "c.yaml", f"name: c\nkind: local\n{extra}\n"))
    assert SECRET not in str(error)
    assert SECRET not in repr(error.to_json())


def test_cluster_env_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITE", "eu-1")
    config = load_cluster_file(
        write(tmp_path / "c.yaml", "name: c\nkind: local\nlabels: {site: '${SITE}'}\n")
    )
    assert config.labels == {"site": "eu-1"}


def test_to_json(tmp_path: Path) -> None:
    error = refuse_cluster(write(tmp_path / "c.yaml", "name: c\nkind: local\nbogus: 1\n"))
    assert error.to_json() == {
        "file": str(tmp_path / "c.yaml"),
        "line": 3,
        "column": None,
        "key": "bogus",
        "reason": "unknown field",
        "problems": [{"key": "bogus", "line": 3, "column": None, "reason": "unknown field"}],
    }


# clusters.d directories


def test_duplicate_names_second_file_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "name: shared\nkind: local\nweight: 1\n")
    write(tmp_path / "b.yaml", "name: shared\nkind: local\nweight: 9\n")
    configs, errors = load_clusters_dir(tmp_path)
    assert [(c.name, c.weight) for c in configs] == [("shared", 1)]
    (error,) = errors
    assert error.file == str(tmp_path / "b.yaml")
    assert error.key == "name"
    assert "a.yaml" in error.reason


def test_one_good_one_bad_file(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", "name: good\nkind: local\n")
    write(tmp_path / "bad.yml", "name: bad\nkind: local\nnope: 1\n")
    configs, errors = load_clusters_dir(tmp_path)
    assert [c.name for c in configs] == ["good"]
    assert [(e.file, e.key) for e in errors] == [(str(tmp_path / "bad.yml"), "nope")]


def test_hidden_and_non_yaml_files_ignored(tmp_path: Path) -> None:
    write(tmp_path / "real.yaml", "name: real\nkind: local\n")
    write(tmp_path / "also.yml", "name: also\nkind: local\n")
    for ignored in (".hidden.yaml", "README.md", "old.yaml.bak", "notes.txt", ".swp.yml"):
        write(tmp_path / ignored, "this: is: not: valid\n")
    (tmp_path / "sub.yaml").mkdir()
    configs, errors = load_clusters_dir(tmp_path)
    assert errors == []
    assert [c.name for c in configs] == ["also", "real"]


def test_missing_directory_is_empty(tmp_path: Path) -> None:
    assert load_clusters_dir(tmp_path / "absent") == ([], [])


def test_the_packaged_default_config_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from broker.config.defaults import packaged_config

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SUBMARINE_BROKER_PORT", raising=False)
    config = load_broker_config(packaged_config())
    assert (config.host, config.port, config.auth) == ("127.0.0.1", 8080, "none")
    assert config.data_dir == (tmp_path / "xdg" / "submarine-broker").resolve()
    assert config.default_policy == packaged_config().parent / "policy.csv"
    assert config.default_policy.is_file()
    configs, errors = load_clusters_dir(config.clusters_dir)
    assert errors == []
    assert [c.name for c in configs] == ["local"]


def test_the_packaged_default_honours_the_port_and_user_data_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from broker.config.defaults import packaged_config

    monkeypatch.setenv("SUBMARINE_BROKER_PORT", "18123")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for unset in ("", None):  # XDG_DATA_HOME empty or unset: ~/.local/share, as the XDG spec says
        if unset is None:
            monkeypatch.delenv("XDG_DATA_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_DATA_HOME", unset)
        config = load_broker_config(packaged_config())
        assert config.port == 18123
        assert config.data_dir == (tmp_path / "home" / ".local" / "share" / "submarine-broker").resolve()


def test_workloads_are_told_a_reachable_broker_host_never_a_wildcard() -> None:
    import socket

    from broker.config.models import BrokerConfig

    assert BrokerConfig(host="127.0.0.1").advertised_host == "127.0.0.1"
    assert BrokerConfig(host="0.0.0.0").advertised_host == socket.getfqdn() != "0.0.0.0"
    assert BrokerConfig(host="::").advertised_host == socket.getfqdn()
    assert (
        BrokerConfig(host="0.0.0.0", advertise_host="broker.example.com").advertised_host
        == "broker.example.com"
    )
