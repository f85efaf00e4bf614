"""The README's first command, run verbatim as a newcomer would, in a clean copy of the repository.

The command is read from README.md (the first line of its first ```bash block, without its
trailing comment), so when the README changes this test follows it. It runs through ``bash -c``
with the copy as working directory and a fresh virtualenv first on PATH: the command's ``pip
install`` then installs into that throwaway venv, never over the suite's editable install. The
environment only moves the broker off port 8080 (``SUBMARINE_BROKER_PORT``, honoured by the packaged
broker.yaml), points the CLI there (``SUBMARINE_BROKER_URL``) and puts the user's data directory in
tmp_path (``XDG_DATA_HOME``). Then, with the installed CLI as the README shows it: an experiment is
submitted, succeeds and its log line is read back, and a notebook opens through the broker.

It costs a fresh venv and a real install of the package with its dependencies (from pip's cache),
about a minute on 2 cores.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import REPO, Broker

LINE = "hello from the first hour"
SPEC = f"""\
meta:
  name: first-hour
  framework: python
  cmd: python -c "print('{LINE}')"
environment:
  image: python:3.11
spec:
  Worker: {{replicas: 1, resources: "cpu=0.1,memory=64Mi"}}
"""
#: Left out of the copy when the repository is not a git checkout.
NOT_SHIPPED = (".git", ".venv", "data", "build", "dist", "__pycache__", "*.egg-info", ".*_cache")


def strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment (a ``#`` outside quotes that starts a word)."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def first_command(readme: str) -> str:
    """The first line of the first ```bash block, without its comment."""
    match = re.search(r"^```bash\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no ```bash block"
    lines = [line for line in match.group(1).splitlines() if line.strip()]
    assert lines, "README.md's first ```bash block is empty"
    return strip_comment(lines[0])


def test_the_comment_is_stripped_outside_quotes_only() -> None:
    assert strip_comment("pip install . && x serve   # run it") == "pip install . && x serve"
    assert strip_comment("echo 'a # b' \"c # d\" # e") == "echo 'a # b' \"c # d\""
    assert strip_comment("echo a#b") == "echo a#b"
    assert first_command("# T\n\n```bash\n\ncmd one  # c\ncmd two\n```\n```bash\nother\n```\n") == "cmd one"


def clean_copy(target: Path) -> None:
    """The repository as a clone of the working tree would have it: tracked and new (not ignored)
    files, as they are on disk now; without git, the tree without what is never shipped."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        shutil.copytree(REPO, target, ignore=shutil.ignore_patterns(*NOT_SHIPPED), symlinks=True)
        return
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if not source.exists() and not source.is_symlink():  # deleted, not committed yet
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name, follow_symlinks=False)


def run_cli(env: dict[str, str], cwd: Path, *args: str, timeout: float = 120) -> str:
    """The installed ``submarine-broker`` (the venv's, first on PATH); fails on a non-zero exit."""
    done = subprocess.run(
        ["submarine-broker", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"submarine-broker {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.mark.timeout(600)
def test_the_readmes_first_command_serves_runs_an_experiment_and_opens_a_notebook(tmp_path: Path) -> None:
    command = first_command((REPO / "README.md").read_text(encoding="utf-8"))
    clone = tmp_path / "submarine-broker"
    clean_copy(clone)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)

    broker = Broker(tmp_path / "broker")  # a free port, the log file and the REST shortcuts
    broker.data_dir = tmp_path / "xdg" / "submarine-broker"
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBMARINE_BROKER_") and k not in dropped}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        VIRTUAL_ENV=str(venv),
        XDG_DATA_HOME=str(tmp_path / "xdg"),
        SUBMARINE_BROKER_PORT=str(broker.port),
        SUBMARINE_BROKER_URL=broker.url,
        PYTHONUNBUFFERED="1",
    )
    try:
        broker.start(command=["bash", "-c", command], cwd=clone, env=env, timeout=480)
        assert shutil.which("submarine-broker", path=env["PATH"]) == str(venv / "bin" / "submarine-broker")

        (tmp_path / "first.yaml").write_text(SPEC)
        submitted = run_cli(env, clone, "experiment", "submit", "-f", str(tmp_path / "first.yaml"))
        match = re.search(r"experiment-\d+-\d+", submitted)
        assert match, submitted
        experiment_id = match.group(0)
        run_cli(env, clone, "experiment", "wait", experiment_id, "--timeout", "120", timeout=150)
        assert broker.experiment(experiment_id)["status"] == "Succeeded"
        assert LINE in run_cli(env, clone, "experiment", "logs", experiment_id).splitlines()

        created = run_cli(env, clone, "notebook", "create", "first-nb", "--wait", timeout=300)
        url = re.search(r"http://\S+", created)
        notebook = re.search(r"notebook_\d+_\d+", created)
        assert url and notebook, created
        page = httpx.get(url.group(0), timeout=60, follow_redirects=True)
        assert page.status_code == 200 and "JupyterLab" in page.text, page.text[:500]
        run_cli(env, clone, "notebook", "delete", notebook.group(0))
    finally:
        broker.close()
