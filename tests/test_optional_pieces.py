"""An optional piece that is not installed is refused with the command that installs it, never a
traceback or an opaque exit code: a cluster kind's client library, the database driver, and Jupyter
for notebooks on a cluster that runs them on the broker's host."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from broker.config import ConfigError, load_cluster_file
from broker.notebooks.runtime import InterpreterProbe, NotebookRuntime, jupyter_problem
from broker.registry import ClusterRegistry
from clusters.kinds import KindUnavailable, adapter_class
from clusters.local.config import LocalClusterConfig
from tests.support import Broker

KUBE_FILE = {"name": "gpu-east", "kind": "kubernetes", "kubeconfig": "/etc/kube.conf", "namespace": "ml"}


def notebook_spec(name: str) -> dict[str, Any]:
    return {"meta": {"name": name}, "spec": {"resources": "cpu=0.2,memory=256Mi"}}


def python_without_site(tmp_path: Path) -> Path:
    """An interpreter that sees only the standard library (no Jupyter), as a script."""
    script = tmp_path / "bare-python"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    script.chmod(0o755)
    return script


# Cluster kinds -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "package"), [("kubernetes", "kubernetes"), ("ray", "ray")])
def test_a_kind_without_its_library_is_refused_naming_the_extra(
    kind: str, package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # as if it were not installed
    with pytest.raises(KindUnavailable) as info:
        adapter_class(kind)
    assert f"pip install 'submarine-broker[{kind}]'" in str(info.value)

    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump({"name": "c1", "kind": kind, "address": "http://x", "kubeconfig": "k"}))
    with pytest.raises(ConfigError) as refused:
        load_cluster_file(path)
    assert refused.value.key == "kind" and refused.value.line is not None
    assert f"needs the {package} package" in refused.value.reason
    assert f"pip install 'submarine-broker[{kind}]'" in refused.value.reason


def test_a_plugin_kind_that_cannot_be_imported_is_a_config_error(tmp_path: Path) -> None:
    from clusters import kinds

    kinds.register_kind("plugin-gone", "no_such_module_anywhere:Adapter")
    try:
        path = tmp_path / "p.yaml"
        path.write_text("name: p1\nkind: plugin-gone\n")
        with pytest.raises(ConfigError) as refused:
            load_cluster_file(path)
        assert refused.value.key == "kind"
        assert (
            "cannot be loaded" in refused.value.reason and "no_such_module_anywhere" in refused.value.reason
        )
    finally:
        kinds._KINDS.pop("plugin-gone")


# The database driver ------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["db", "upgrade"], ["user", "add", "alice", "--team", "t"]])
def test_a_missing_database_driver_names_the_extra(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from broker.cli.main import main

    monkeypatch.setitem(sys.modules, "psycopg", None)
    config = tmp_path / "broker.yaml"
    config.write_text("database_url: postgresql+psycopg://u:hunter2@127.0.0.1:1/x\n")
    result = CliRunner().invoke(main, [*command, "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "database_url" in result.output
    assert "pip install 'submarine-broker[postgres]'" in result.output
    assert "hunter2" not in result.output


# Jupyter for notebooks ----------------------------------------------------------------------


def local_cluster(tmp_path: Path, **config: Any) -> Any:
    registry = ClusterRegistry(str(tmp_path))
    return registry.add(LocalClusterConfig(name="local", kind="local", **config))


def test_the_brokers_own_interpreter_without_jupyter_is_refused_with_the_extra(tmp_path: Path) -> None:
    cluster = local_cluster(tmp_path)
    runtime = NotebookRuntime(sys.executable, app_module="no_such_jupyter_app")
    problem = jupyter_problem(runtime, cluster, InterpreterProbe())
    assert problem is not None
    assert "no_such_jupyter_app" in problem and "the broker's Python" in problem
    assert "ipykernel" not in problem  # installed in the test environment: only what is missing
    assert "pip install 'submarine-broker[notebook]'" in problem
    # With everything there, nothing is said.
    assert (
        jupyter_problem(NotebookRuntime(sys.executable, "jupyter_server"), cluster, InterpreterProbe())
        is None
    )


def test_another_interpreter_is_asked_and_a_cluster_can_name_its_own(tmp_path: Path) -> None:
    bare = python_without_site(tmp_path)
    probe = InterpreterProbe()
    runtime = NotebookRuntime(str(bare), "jupyter_server")
    problem = jupyter_problem(runtime, local_cluster(tmp_path), probe)
    assert problem == (
        f"notebooks need jupyter_server and ipykernel in {bare}, which lacks them: "
        f"{bare} -m pip install jupyter-server ipykernel"
    )
    # A cluster's notebook_python wins over the broker's notebooks.python.
    own = local_cluster(tmp_path, notebook_python=sys.executable)
    assert jupyter_problem(runtime, own, probe) is None
    gone = local_cluster(tmp_path, notebook_python=str(tmp_path / "no-such-python"))
    assert "cannot be run" in (jupyter_problem(runtime, gone, probe) or "")


def test_a_missing_answer_is_asked_again_after_a_while_a_yes_is_kept(tmp_path: Path) -> None:
    now = [0.0]
    probe = InterpreterProbe(clock=lambda: now[0])
    bare = python_without_site(tmp_path)
    assert probe.missing(str(bare), ["ipykernel"]) == ["ipykernel"]
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # "installed" meanwhile
    assert probe.missing(str(bare), ["ipykernel"]) == ["ipykernel"]  # cached
    now[0] += 60
    assert probe.missing(str(bare), ["ipykernel"]) == []
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    now[0] += 60
    assert probe.missing(str(bare), ["ipykernel"]) == []  # a yes is kept


def test_a_broker_refuses_a_notebook_it_cannot_start_and_a_kind_it_cannot_load(tmp_path: Path) -> None:
    """Through a real broker: the notebook is refused at submit with the install command, and a
    kubernetes cluster file without the kubernetes package is a config error, not a traceback."""
    bare = python_without_site(tmp_path)
    broker = Broker(tmp_path / "broker", notebooks={"python": str(bare)})
    broker.add_cluster(**KUBE_FILE)
    blocked = "import sys; sys.modules['kubernetes'] = None; from broker.cli.main import main; main()"
    command = [sys.executable, "-c", blocked, "serve", "--config", str(broker.config_path)]
    try:
        broker.start(command=command)
        listed = broker.client.get("/cluster").json()
        assert [c["name"] for c in listed["result"]] == ["local"]
        (error,) = listed["attributes"]["configErrors"]
        assert error["file"].endswith("gpu-east.yaml") and error["key"] == "kind"
        assert "pip install 'submarine-broker[kubernetes]'" in error["reason"]
        assert "pip install 'submarine-broker[kubernetes]'" in broker.log()
        assert "Traceback" not in broker.log()

        refused = broker.client.post("/notebook", json=notebook_spec("nb"))
        assert refused.status_code in (400, 422), refused.text
        envelope = refused.json()
        assert envelope["code"] == refused.status_code and not envelope["success"]
        assert f"{bare} -m pip install" in envelope["message"] and "ipykernel" in envelope["message"]
        assert broker.client.get("/notebook").json()["result"] in ([], None)
        explained = broker.client.post(
            "/placement/explain", params={"kind": "notebook"}, json=notebook_spec("d")
        )
        assert "-m pip install" in str(explained.json()["result"])
    finally:
        broker.close()
