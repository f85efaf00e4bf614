"""Every ``submarine-broker`` command line the README's "Using it" section shows, run against a
live broker, so the README cannot drift from the product.

The section's fenced ``bash`` blocks are parsed; each line that runs ``submarine-broker`` must
match exactly one entry of :data:`KNOWN`, which runs it through the real CLI (the ``submarine-broker``
console command, in ``bash``, so ``$(...)``, pipes and ``VAR=value`` prefixes work as a reader's
shell runs them) and checks its exit code and output. A README command no entry recognises fails
the test, and so does an entry no README line uses: a command cannot be added to the README, or
dropped from it, without this test following. Optional parts (``[--tail 50]``) run both ways.

The YAML block headed ``# mnist.yaml`` is the spec file the commands submit. Its ``python
train.py`` becomes this interpreter and the absolute path of the ``train.py`` below, as the
README tells local-kind users to write it; ``broker.yaml`` is the live broker's config. Placeholders:
``ID`` (the experiment or notebook the command is about), ``NAME`` (the cluster), ``NAMESPACE``,
``N`` (a policy revision).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO, Broker, wait_for

README = REPO / "README.md"
SECTION = "Using it"
TIMEOUT = 180

TRAIN_PY = """\
import argparse, os, time

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
epochs = parser.parse_args().epochs
rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
for epoch in range(1, epochs + 1):
    print(f"epoch {epoch}/{epochs} rank {rank} of {world} lr {os.environ['LR']}", flush=True)
    time.sleep(0.3)
"""


# ---------------------------------------------------------------------------- the README
def using_it(text: str) -> str:
    """The README's "Using it" section, subsections included, up to the next ``## `` heading."""
    match = re.search(rf"^## {SECTION}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"README.md has no '## {SECTION}' section"
    return match.group(1)


def fenced_blocks(section: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", section, re.S | re.M)]


def command_lines(section: str) -> list[str]:
    """Each line of the section's bash blocks that runs ``submarine-broker``, without its comment."""
    lines = []
    for language, body in fenced_blocks(section):
        if language not in ("bash", "sh", "shell", ""):
            continue
        for raw in body.splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or "submarine-broker" not in line:
                continue
            line = re.split(r"\s{2,}#", line, maxsplit=1)[0].strip()  # a trailing "   # comment"
            lines.append(" ".join(line.split()))
    return lines


def spec_files(section: str) -> dict[str, dict[str, Any]]:
    """The YAML blocks whose first line names a file (``# mnist.yaml``), parsed."""
    found = {}
    for language, body in fenced_blocks(section):
        first = body.splitlines()[0] if body.strip() else ""
        named = re.fullmatch(r"#\s*(\S+\.ya?ml)\s*", first)
        if language in ("yaml", "yml") and named:
            found[named.group(1)] = yaml.safe_load(body)
    return found


def variants(line: str) -> list[str]:
    """The line without its optional ``[...]`` parts, and with all of them (once if it has none)."""
    if "[" not in line:
        return [line]
    bare = " ".join(re.sub(r"\[[^\]]*\]", "", line).split())
    full = " ".join(re.sub(r"\[([^\]]*)\]", r"\1", line).split())
    return [bare, full]


# ---------------------------------------------------------------------------- running them
@dataclass
class Reader:
    """A README reader's shell: a folder with the spec files, the broker's URL and config set."""

    broker: Broker
    folder: Path
    env: dict[str, str]
    specs: dict[str, dict[str, Any]]
    ids: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def run(self, command: str, **placeholders: str) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in bash with ``ID``/``NAME``/... replaced (whole words only)."""
        for word, value in placeholders.items():
            command = re.sub(rf"\b{word}\b", lambda _m, v=value: shlex.quote(v), command)
        return subprocess.run(
            ["bash", "-c", command],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    def ok(self, command: str, **placeholders: str) -> str:
        """Run it; it must exit 0. Its stdout."""
        done = self.run(command, **placeholders)
        assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def rest(self, path: str) -> Any:
        answer = self.broker.client.get(path)
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]


def _experiment_id(out: str) -> str:
    match = re.search(r"experiment (experiment-\d+-\d{4}) submitted: Accepted", out)
    assert match, out
    return match.group(1)


def submit(r: Reader, command: str) -> None:
    r.ids["mnist"] = _experiment_id(r.ok(command))


def list_experiments(r: Reader, command: str) -> None:
    out = r.ok(command, NAMESPACE="default")
    if "--status" in command:
        return  # whether mnist is running right now is a matter of timing
    assert r.ids["mnist"] in out and "mnist" in out
    for column in ("NAMESPACE", "OWNER", "DURATION"):
        assert column in out.splitlines()[0], out


def get_experiment(r: Reader, command: str) -> None:
    out = r.ok(command, ID=r.ids["mnist"])
    assert r.ids["mnist"] in out and "pytorch" in out and "Events" in out, out


def logs(r: Reader, command: str) -> None:
    done = r.run(command, ID=r.ids["mnist"])
    assert done.returncode == 0, done.stdout + done.stderr
    if "--follow" in command:  # worker-1's lines to the end, then how the run ended
        assert done.stdout.splitlines()[-1].startswith("epoch 3/3 rank 2 of 3"), done.stdout
        assert done.stderr.strip() == f"experiment {r.ids['mnist']} Succeeded"


def wait(r: Reader, command: str) -> None:
    out = r.ok(command, ID=r.ids["mnist"])
    assert out.splitlines()[-1].endswith(f"{r.ids['mnist']} Succeeded on local"), out


def stop(r: Reader, command: str) -> None:
    # Something to stop: the README's spec, training for long.
    spec = json.loads(json.dumps(r.specs["mnist.yaml"]))
    spec["meta"].update(name="mnist-long", cmd=spec["meta"]["cmd"].replace("--epochs 3", "--epochs 1000"))
    (r.folder / "long.yaml").write_text(yaml.safe_dump(spec))
    long_id = _experiment_id(r.ok("submarine-broker experiment submit -f long.yaml"))
    r.broker.wait_status(long_id, "Running", timeout=TIMEOUT)
    out = r.ok(command, ID=long_id)
    assert out.strip() == f"experiment {long_id} stopped: Failed"
    stopped = r.broker.experiment(long_id)
    assert (stopped["failureCategory"], stopped["reason"]) == ("killed", "stopped by admin")


def delete(r: Reader, command: str) -> None:
    out = r.ok(command, ID=r.ids["mnist"])
    assert out.strip() == f"experiment {r.ids['mnist']} deleted: Deleted"


def deleted_logs(r: Reader, command: str) -> None:
    out = r.ok(command, ID=r.ids["mnist"])
    assert sum(line.endswith("epoch 3/3 rank 0 of 3 lr 0.01") for line in out.splitlines()) == 1, out
    assert len([line for line in out.splitlines() if "epoch 3/3" in line]) == 3  # master and 2 workers


def cluster_list(r: Reader, command: str) -> None:
    out = r.ok(command)
    assert "local" in out and "Ready" in out, out


def cluster_get(r: Reader, command: str) -> None:
    out = r.ok(command, NAME="local")
    assert "local.yaml" in out and "Workloads (this broker)" in out, out


def cordon(r: Reader, command: str) -> None:
    assert r.ok(command, NAME="local").strip() == "cluster local cordoned: Cordoned"


def drain(r: Reader, command: str) -> None:
    out = r.ok(command, NAME="local")  # everything above has ended: empty at once (and still cordoned)
    last = out.splitlines()[-1]
    assert last == "cluster local set to drain: Draining (cordoned, drained: empty, safe to remove)", out


def uncordon(r: Reader, command: str) -> None:
    assert r.ok(command, NAME="local").strip() == "cluster local uncordoned: Ready"


def notebook_create(r: Reader, command: str) -> None:
    out = r.ok(command).strip()
    url = f"{r.broker.url}/notebook/vision/my-nb/lab"
    match = re.fullmatch(rf"notebook (notebook_\d+_\d{{4}}) running: {re.escape(url)}", out)
    assert match, out
    r.ids["notebook"] = match.group(1)


def notebook_list(r: Reader, command: str) -> None:
    row = next(line for line in r.ok(command).splitlines() if r.ids["notebook"] in line)
    assert "my-nb" in row and "vision" in row and "running" in row, row


def notebook_get(r: Reader, command: str) -> None:
    out = r.ok(command, ID=r.ids["notebook"])
    for text in ("Status", "running", f"{r.broker.url}/notebook/vision/my-nb/lab", "Events"):
        assert text in out, out


def notebook_open(r: Reader, command: str) -> None:
    url = f"{r.broker.url}/notebook/vision/my-nb/lab"
    assert r.ok(command, ID=r.ids["notebook"]).strip() == url
    assert r.ok(command, ID="my-nb").strip() == url  # a name works as well as an id
    assert r.ok(command + " -n vision", ID="my-nb").strip() == url
    elsewhere = r.run(command + " -n default", ID="my-nb")
    assert elsewhere.returncode != 0 and "no notebook my-nb in namespace default" in elsewhere.stderr


def notebook_logs(r: Reader, command: str) -> None:
    out = r.ok(command, ID=r.ids["notebook"])
    assert "Jupyter" in out and "/notebook/vision/my-nb/" in out, out
    if "--tail" in command:
        assert len(out.splitlines()) <= 50


def notebook_stop(r: Reader, command: str) -> None:
    assert r.ok(command, ID=r.ids["notebook"]).strip() == f"notebook {r.ids['notebook']} stopped"
    assert r.rest(f"/notebook/{r.ids['notebook']}")["status"] == "stopped"


def notebook_start(r: Reader, command: str) -> None:
    out = r.ok(command, ID=r.ids["notebook"]).strip()
    assert out == f"notebook {r.ids['notebook']} running: {r.broker.url}/notebook/vision/my-nb/lab"


def notebook_delete(r: Reader, command: str) -> None:
    assert r.ok(command, ID=r.ids["notebook"]).strip() == f"notebook {r.ids['notebook']} deleted: terminating"


def user_add(r: Reader, command: str) -> None:
    name = command.split()[3]
    out = r.ok(command)
    assert out.startswith(f"user {name} added"), out


def token_create(r: Reader, command: str) -> None:
    done = r.run(f'{command}; printf "%s" "$TOKEN"')
    assert done.returncode == 0 and "shown only once" in done.stderr, done.stderr
    token = done.stdout.strip()
    assert token and " " not in token, done.stdout
    r.env["TOKEN"] = token  # the next README line reads $TOKEN


def experiment_list_with_token(r: Reader, command: str) -> None:
    assert "TOKEN" in r.env, "the README sets TOKEN before it uses it"
    r.ok(command)


def token_list(r: Reader, command: str) -> None:
    out = r.ok(command)  # auth: none makes the caller the built-in admin, who holds no token
    assert out.strip() == "No tokens.", out


def token_list_everyone(r: Reader, command: str) -> None:
    token_id = r.env["TOKEN"].split("_")[1]
    row = next(line for line in r.ok(command).splitlines() if token_id in line)
    assert "alice" in row and f"sbk_{token_id}_" in row and r.env["TOKEN"] not in row, row


def token_revoke(r: Reader, command: str) -> None:
    token_id = r.env["TOKEN"].split("_")[1]
    state = "was revoked already" if "--offline" in command else "revoked"  # the README revokes it twice
    assert r.ok(command, ID=token_id).strip() == f"token {token_id} of user alice {state}"


def policy_list(r: Reader, command: str) -> None:
    out = r.ok(command)
    header = re.match(r"# policy revision (\d+) \(\d+ lines\)\n", out)
    assert header, out
    r.ids["revision"] = header.group(1)  # what `policy revert N` goes back to
    assert "p, admin, *, *, *, allow" in out.splitlines()
    r.outputs["policy"] = out
    # What `policy replace -f policy.csv` reads: this listing (itself a policy file) and one more line.
    (r.folder / "policy.csv").write_text(out + "p, member, vision, cluster/gpu-*, place, deny\n")


def policy_add(r: Reader, command: str) -> None:
    assert re.fullmatch(r"added: policy now at revision \d+ \(\d+ lines\)", r.ok(command).strip())


def policy_remove(r: Reader, command: str) -> None:
    assert re.fullmatch(r"removed: policy now at revision \d+ \(\d+ lines\)", r.ok(command).strip())


def policy_replace(r: Reader, command: str) -> None:
    out = r.ok(command).strip()
    assert re.fullmatch(r"policy replaced: policy now at revision \d+ \(\d+ lines\)", out), out


def policy_test(r: Reader, command: str) -> None:
    out = r.ok(command)  # the replaced policy denies vision's members the gpu clusters
    assert out.startswith("DENY  alice vision cluster/gpu-east/experiment place"), out
    assert out.splitlines()[1:] == ["matched:", "  p, member, vision, cluster/gpu-*, place, deny"], out


def policy_revisions(r: Reader, command: str) -> None:
    out = r.ok(command)
    assert "p, member, vision, cluster/gpu-*, place, deny" in out, out  # the add, then the remove


def policy_revert(r: Reader, command: str) -> None:
    out = r.ok(command, N=r.ids["revision"])  # before the add, remove and replace above
    assert "revision" in out, out
    assert r.ok("submarine-broker policy list").splitlines()[1:] == r.outputs["policy"].splitlines()[1:]


def policy_reset(r: Reader, command: str) -> None:
    out = r.ok(command)  # on the database itself, while the broker runs
    assert out.startswith("policy reset to ") and "by recovery" in out, out
    assert "  - g, alice, member, vision" in out.splitlines(), out  # `user add` lines are not in the file
    after = r.ok("submarine-broker policy list").splitlines()
    assert "p, admin, *, *, *, allow" in after and "g, alice, member, vision" not in after, after


def placement_explain(r: Reader, command: str) -> None:
    out = r.ok(command)
    assert "local" in out and ("would be placed on local" in out or "would wait" in out), out


#: README command (comments stripped, spaces collapsed) → what runs and checks it.
KNOWN: list[tuple[str, Callable[[Reader, str], None]]] = [
    (r"submarine-broker experiment submit -f mnist\.yaml", submit),
    (r"submarine-broker experiment list \[--status Running\] \[-n NAMESPACE\]", list_experiments),
    (r"submarine-broker experiment get (ID|mnist)", get_experiment),
    (r"submarine-broker experiment logs ID \[--replica worker-1\] \[--tail 50\] \[--follow\]", logs),
    (r"submarine-broker experiment wait ID", wait),
    (r"submarine-broker experiment stop ID", stop),
    (r"submarine-broker experiment delete ID", delete),
    (r"submarine-broker experiment logs ID --deleted", deleted_logs),
    (r"submarine-broker cluster list", cluster_list),
    (r"submarine-broker cluster get NAME", cluster_get),
    (r"submarine-broker cluster cordon NAME", cordon),
    (r"submarine-broker cluster drain NAME --wait", drain),
    (r"submarine-broker cluster uncordon NAME", uncordon),
    (
        r"submarine-broker notebook create my-nb -n vision --resources cpu=1,memory=2Gi --wait",
        notebook_create,
    ),
    (r"submarine-broker notebook list", notebook_list),
    (r"submarine-broker notebook get ID", notebook_get),
    (r"submarine-broker notebook open ID", notebook_open),
    (r"submarine-broker notebook logs ID \[--tail 50\]", notebook_logs),
    (r"submarine-broker notebook stop ID", notebook_stop),
    (r"submarine-broker notebook start ID --wait", notebook_start),
    (r"submarine-broker notebook delete ID", notebook_delete),
    (r"submarine-broker user add (alice --team vision|root --admin)", user_add),
    (r"TOKEN=\$\(submarine-broker token create alice \| tail -1\)", token_create),
    (r"SUBMARINE_BROKER_TOKEN=\$TOKEN submarine-broker experiment list", experiment_list_with_token),
    (r"submarine-broker token list \[--revoked\]", token_list),
    (r"submarine-broker token list (--all|--offline --config broker\.yaml)", token_list_everyone),
    (r"submarine-broker token revoke ID( --offline --config broker\.yaml)?", token_revoke),
    (r"submarine-broker policy list", policy_list),
    (r"submarine-broker policy add 'p, member, vision, cluster/gpu-\*, place, deny'", policy_add),
    (r"submarine-broker policy remove 'p, member, vision, cluster/gpu-\*, place, deny'", policy_remove),
    (r"submarine-broker policy replace -f policy\.csv", policy_replace),
    (r"submarine-broker policy test alice vision cluster/gpu-east/experiment place", policy_test),
    (r"submarine-broker policy revisions", policy_revisions),
    (r"submarine-broker policy revert N", policy_revert),
    (r"submarine-broker policy reset --config broker\.yaml", policy_reset),
    (r"submarine-broker placement explain -f mnist\.yaml", placement_explain),
]


def recognise(line: str) -> Callable[[Reader, str], None] | None:
    matches = [run for pattern, run in KNOWN if re.fullmatch(pattern, line)]
    assert len(matches) <= 1, f"README line matches several entries: {line}"
    return matches[0] if matches else None


# ---------------------------------------------------------------------------- the tests
def test_the_parser_finds_commands_optional_parts_and_spec_files() -> None:
    text = (
        "## Using it\n```yaml\n# job.yaml\nmeta: {name: x}\n```\n"
        "```bash\nsubmarine-broker a ID [--b 1] [--c]   # comment\n# submarine-broker not this\n"
        "echo no\nX=$(submarine-broker t | tail -1)   # shown once\n```\n"
        "```python\nsubmarine-broker in python\n```\n## Next\n```bash\nsubmarine-broker elsewhere\n```\n"
    )
    section = using_it(text)
    assert command_lines(section) == [
        "submarine-broker a ID [--b 1] [--c]",
        "X=$(submarine-broker t | tail -1)",
    ]
    assert spec_files(section) == {"job.yaml": {"meta": {"name": "x"}}}
    assert variants("submarine-broker a ID [--b 1] [--c]") == [
        "submarine-broker a ID",
        "submarine-broker a ID --b 1 --c",
    ]
    assert recognise("submarine-broker experiment rewind ID") is None


def test_every_readme_command_is_known_and_every_known_command_is_in_the_readme() -> None:
    lines = command_lines(using_it(README.read_text(encoding="utf-8")))
    unknown = [line for line in lines if recognise(line) is None]
    assert not unknown, f"README commands this test does not run (add them to KNOWN): {unknown}"
    unused = [pattern for pattern, _ in KNOWN if not any(re.fullmatch(pattern, line) for line in lines)]
    assert not unused, f"KNOWN entries no README command uses any more: {unused}"


@pytest.fixture
def reader(broker_factory: Callable[..., Broker], tmp_path: Path) -> Iterator[Reader]:
    # The README's mnist gang needs 3 CPUs and 3Gi: give the local cluster room on a small machine.
    local = {"kind": "local", "capacity": {"cpu": 8, "memory": "16Gi"}}
    broker = broker_factory(clusters={"local": local}, notebooks={"check_interval": 0.3})
    folder = tmp_path / "reader"
    folder.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "submarine-broker"  # the console command, from this checkout
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m broker "$@"\n')
    wrapper.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHONPATH": str(REPO),
        "COLUMNS": "200",
        "SUBMARINE_BROKER_URL": broker.url,
        "SUBMARINE_BROKER_CONFIG": str(broker.config_path),  # `user add`, `token create`
    }
    train = folder / "train.py"
    train.write_text(TRAIN_PY)
    specs = spec_files(using_it(README.read_text(encoding="utf-8")))
    assert set(specs) == {"mnist.yaml"}, specs
    cmd = specs["mnist.yaml"]["meta"]["cmd"]
    assert cmd.startswith("python train.py "), cmd
    specs["mnist.yaml"]["meta"]["cmd"] = cmd.replace(
        "python train.py", f"{shlex.quote(sys.executable)} {shlex.quote(str(train))}", 1
    )
    (folder / "mnist.yaml").write_text(yaml.safe_dump(specs["mnist.yaml"]))
    (folder / "broker.yaml").write_text(broker.config_path.read_text())  # its paths are absolute
    yield Reader(broker, folder, env, specs)


def test_every_command_the_readme_shows_runs_against_a_live_broker(reader: Reader) -> None:
    lines = command_lines(using_it(README.read_text(encoding="utf-8")))
    for line in lines:
        run = recognise(line)
        assert run is not None, f"README command this test does not run: {line}"
        for command in variants(line):
            try:
                run(reader, command)
            except AssertionError as exc:
                raise AssertionError(
                    f"README command failed: {command}\n{exc}\nbroker log:\n{reader.broker.log()[-3000:]}"
                ) from exc
    wait_for(
        lambda: not reader.rest("/notebook") and reader.rest("/cluster/local")["workloads"] == 0,
        timeout=30,
        what="nothing of the README's work left running",
    )
