"""The local kind shared between teams (issue 14): work runs as other Unix users, not the broker's.

Probed as a hostile member of team ``vision`` (alice) would: her experiment reads the broker's
SQLite file and gives the admin a token of its choosing, reads team ``nlp``'s (bob's) plan files,
logs, working folder and notebook (its Jupyter token), and the broker's own environment. With
``auth: token`` every auth-token test broker's local cluster has ``run_as`` (``tests/support.py``:
``nlp`` runs as ``sbrun-b``, every other namespace as ``sbrun-a``).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from pydantic import ValidationError

from clusters.base import Handle, Observation, Phase
from clusters.errors import SubmitRejected
from clusters.local import users as local_users
from clusters.local.adapter import LocalAdapter
from clusters.local.config import LocalClusterConfig
from runtimes.plan import LaunchPlan, ReplicaPlan
from tests.run_as import ensure_users, is_root, remove_tree, replica_python, scratch_dir
from tests.support import REPO, Broker, kill_replicas, python_spec, wait_for
from tests.test_permissions import Clients, make_users

#: Secrets in the broker's own environment that no replica may see.
BROKER_SECRETS = {"RAY_TOKEN": "ray-secret-0d1f", "SLURM_JWT": "jwt-secret-9a7c"}


@pytest.fixture(scope="module")
def run_as_users() -> tuple[str, ...]:
    if not is_root():
        pytest.fail("the run_as tests start brokers as root (as CI does): run them as root")
    return ensure_users()


def broker_env(**extra: str) -> dict[str, str]:
    """The environment tests start brokers with (the repository on the path), plus ``extra``."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **extra}


@pytest.fixture(scope="module")
def shared(
    run_as_users: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Broker, Clients]]:
    """One auth-token broker (root, like the issue's) with two teams, secrets in its environment."""
    broker = Broker(
        tmp_path_factory.mktemp("isolation"),
        auth="token",
        notebooks={"check_interval": 0.3, "idle_timeout": 0},
    )
    tokens = make_users(broker)
    # The premise: the data directory is the broker's alone (its own modes are another part of
    # issue 14). The run-as users' work dir lies outside it (tests/support.py).
    broker.data_dir.chmod(0o700)
    broker.start(env=broker_env(**BROKER_SECRETS))
    clients = Clients(
        {
            name: httpx.Client(base_url=broker.url, headers={"Authorization": f"Bearer {tok}"}, timeout=30)
            for name, tok in tokens.items()
        }
    )
    yield broker, clients
    clients.close()
    broker.close()


def submit(client: httpx.Client, spec: dict[str, Any]) -> str:
    answer = client.post("/api/v1/experiment", json=spec)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["result"]["experimentId"])


def finished(client: httpx.Client, exp_id: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found = client.get(f"/api/v1/experiment/{exp_id}").json()["result"]
        return found if found["status"] in ("Succeeded", "Failed") else None

    return wait_for(done, timeout=timeout, what=f"{exp_id} to end")


def log_lines(client: httpx.Client, exp_id: str) -> list[str]:
    answer = client.get(f"/api/v1/experiment/logs/{exp_id}")
    assert answer.status_code == 200, answer.text
    return [line for entry in answer.json()["result"]["logContent"] for line in entry["podLog"]]


def attempt_of(broker: Broker, workload_id: str) -> Path:
    """The attempt folder of a workload (the test reads it as root)."""
    for plan in broker.work_dir().glob("*/plan.json"):
        if json.loads(plan.read_text())["workload_id"] == workload_id:
            return plan.parent
    raise AssertionError(f"no attempt folder of {workload_id} in {broker.work_dir()}")


# -- the escalation, end to end -----------------------------------------------------------------

ESCALATE = """
import datetime, hashlib, secrets, sqlite3
token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
try:
    db = sqlite3.connect({db!r}, timeout=10)
    db.execute(
        "insert into api_token (id, user, secret_hash, created_at) values (?, ?, ?, ?)",
        (token_id, "admin", hashlib.sha256(secret.encode()).hexdigest(),
         datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")),
    )
    db.commit()
    print("TOKEN", f"sbk_{{token_id}}_{{secret}}")
except Exception as exc:
    print("DENIED", type(exc).__name__, exc)
"""


def test_a_team_experiment_cannot_make_itself_admin(shared: tuple[Broker, Clients]) -> None:
    """The issue's escalation: alice's experiment writes an admin token into the broker's SQLite file."""
    broker, c = shared
    alice = c["alice"]
    assert alice.get("/api/v1/user/me").json()["result"]["admin"] is False
    code = ESCALATE.format(db=str(broker.data_dir / "broker.db"))
    exp_id = submit(alice, python_spec(code, name="escalate", namespace="vision"))
    finished(alice, exp_id)
    lines = log_lines(alice, exp_id)
    for line in lines:
        if line.startswith("TOKEN "):
            stolen = line.split()[1]
            me = httpx.get(f"{broker.url}/api/v1/user/me", headers={"Authorization": f"Bearer {stolen}"})
            assert not (me.status_code == 200 and me.json()["result"]["admin"]), f"escalated: {me.text}"
    assert any(line.startswith("DENIED") for line in lines), lines


# -- another team's files and the broker's environment ------------------------------------------

PROBE = """
import json, os
for label, path in json.loads({targets!r}):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as handle:
                handle.read(1)
        print("READ", label)
    except OSError as exc:
        print("DENIED", label, type(exc).__name__)
print("ENV", json.dumps({{k: os.environ.get(k) for k in {names!r}}}))
"""

BOB_WORK = (
    "import os\nopen('notes.txt', 'w').write('bob only')\n"
    "print('CWD', os.getcwd())\nprint('UID', os.getuid())\nprint('SECRET', os.environ['BOB_SECRET'])"
)


def test_a_team_cannot_read_another_teams_files_or_the_brokers(
    shared: tuple[Broker, Clients], run_as_users: tuple[str, ...]
) -> None:
    broker, c = shared
    alice, bob = c["alice"], c["bob"]
    # bob's (nlp's) experiment, with a secret of its own, and his notebook, left running.
    bob_exp = submit(
        bob, python_spec(BOB_WORK, name="bob-work", namespace="nlp", envVars={"BOB_SECRET": "b0b"})
    )
    assert finished(bob, bob_exp)["status"] == "Succeeded"
    bob_lines = log_lines(bob, bob_exp)
    bob_cwd = next(line.split(" ", 1)[1] for line in bob_lines if line.startswith("CWD "))
    created = bob.post(
        "/api/v1/notebook",
        json={"meta": {"name": "bob-lab", "namespace": "nlp"}, "spec": {"resources": "cpu=0.2,memory=256Mi"}},
    )
    assert created.status_code == 200, created.text
    nb_id = created.json()["result"]["notebookId"]
    wait_for(
        lambda: bob.get(f"/api/v1/notebook/{nb_id}").json()["result"]["status"] == "running",
        timeout=120,
        what="bob's notebook to run",
    )
    exp_attempt, nb_attempt = attempt_of(broker, bob_exp), attempt_of(broker, nb_id)
    supervisor = json.loads((nb_attempt / "notebook-0.pid").read_text())["pid"]
    jupyter = psutil.Process(supervisor).children()[0]
    assert "JUPYTER_TOKEN" in Path(f"/proc/{jupyter.pid}/environ").read_text()
    targets = [
        ("the broker's database", str(broker.data_dir / "broker.db")),
        ("the cluster's work directory", str(broker.work_dir())),
        ("bob's experiment plan", str(exp_attempt / "plan.json")),
        ("bob's experiment log", str(exp_attempt / "worker-0.log")),
        ("bob's working directory", bob_cwd),
        ("bob's file", str(Path(bob_cwd) / "notes.txt")),
        ("bob's notebook plan (its Jupyter token)", str(nb_attempt / "plan.json")),
        ("bob's notebook files", str(broker.work_dir() / ".workdirs" / nb_id)),
        ("bob's Jupyter environment", f"/proc/{jupyter.pid}/environ"),
        ("the broker's environment", f"/proc/{broker.proc.pid}/environ" if broker.proc else "/nonexistent"),
    ]
    code = PROBE.format(targets=json.dumps(targets), names=sorted(BROKER_SECRETS))
    probe = submit(alice, python_spec(code, name="probe", namespace="vision"))
    assert finished(alice, probe)["status"] == "Succeeded"
    lines = log_lines(alice, probe)
    readable = [line for line in lines if line.startswith("READ ")]
    assert readable == [], f"alice's experiment read: {readable}"
    assert len([line for line in lines if line.startswith("DENIED ")]) == len(targets), lines
    seen = json.loads(next(line for line in lines if line.startswith("ENV "))[4:])
    assert seen == {name: None for name in BROKER_SECRETS}, "the broker's secrets reached a replica"
    # Each team's work ran as its own user: bob's as sbrun-b, his Jupyter too.
    assert f"UID {_uid(run_as_users[1])}" in bob_lines and "SECRET b0b" in bob_lines
    assert jupyter.uids().real == _uid(run_as_users[1])
    assert bob.delete(f"/api/v1/notebook/{nb_id}").status_code == 200


def _uid(user: str) -> int:
    return pwd.getpwnam(user).pw_uid


# -- start-up and cluster files -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"kind": "local"}, "run_as: not set, so this local cluster would run every command as root"),
        ({"kind": "local", "run_as": "broker"}, "run_as: the broker's own user is root here"),
    ],
    ids=["unset", "broker"],
)
def test_root_broker_with_token_auth_refuses_a_local_cluster_without_run_as(
    broker_factory, run_as_users: tuple[str, ...], body: dict[str, Any], why: str
) -> None:
    broker = broker_factory(start=False, auth="token", clusters={"local": body})
    broker.start(wait=False)
    assert broker.proc is not None
    wait_for(lambda: broker.proc.poll() is not None, timeout=60, what="the broker to refuse to start")
    assert broker.proc.returncode != 0
    log = broker.log()
    assert f"Error: {broker.clusters_dir / 'local.yaml'}: {why}" in log, log
    assert "name an unprivileged user" in log or "set run_as to an unprivileged user" in log, log
    assert "Traceback" not in log, log


def test_a_local_cluster_file_without_run_as_is_refused_while_serving(shared: tuple[Broker, Clients]) -> None:
    broker, c = shared
    root = c["root"]
    broker.add_cluster("late", kind="local", work_dir=str(broker.work_dir().parent / "late"))

    def refused() -> list[dict[str, Any]]:
        errors = root.get("/api/v1/cluster").json()["attributes"].get("configErrors") or []
        return [e for e in errors if e["file"].endswith("late.yaml")]

    error = wait_for(refused, timeout=20, what="the file to be refused")[0]
    assert "run_as" in error["reason"] and "root" in error["reason"], error
    assert root.get("/api/v1/cluster/late").status_code == 404
    (broker.clusters_dir / "late.yaml").unlink()


def test_a_namespace_the_run_as_map_does_not_name_is_refused_at_submit(
    shared: tuple[Broker, Clients],
) -> None:
    broker, c = shared
    root, bob = c["root"], c["bob"]
    body = yaml.safe_load((broker.clusters_dir / "local.yaml").read_text())
    body.pop("name")
    broker.add_cluster("vision-only", **{**body, "run_as": {"vision": "sbrun-a"}})
    wait_for(
        lambda: root.get("/api/v1/cluster/vision-only").status_code == 200, timeout=20, what="the cluster"
    )
    try:
        spec = python_spec(
            "print(1)", name="elsewhere", namespace="nlp", placement={"cluster": "vision-only"}
        )
        refused = bob.post("/api/v1/experiment", json=spec)
        assert refused.status_code == 422, refused.text
        message = refused.json()["message"]
        assert "vision-only" in message and "run_as" in message and "nlp" in message, message
    finally:
        (broker.clusters_dir / "vision-only.yaml").unlink()


# -- the environment replicas get -----------------------------------------------------------------

SHOW_ENV = "import json, os\nprint(json.dumps({k: os.environ.get(k) for k in %r}))"


def test_replicas_get_only_the_allow_listed_environment(broker_factory) -> None:
    """auth: none, one person: still only PATH, HOME, LANG, TZ and what the broker sets reach a replica."""
    broker = broker_factory(start=False)
    broker.start(env=broker_env(**BROKER_SECRETS, LANG="C.UTF-8", TZ="Europe/Paris", UNLISTED="x"))
    names = [
        *BROKER_SECRETS,
        "UNLISTED",
        "LANG",
        "TZ",
        "HOME",
        "JOB_ID",
        "SUBMARINE_SERVER_PORT",
        "PYTHONPATH",
    ]
    exp_id = broker.submit(python_spec(SHOW_ENV % names))["experimentId"]
    broker.wait_status(exp_id, "Succeeded")
    seen = json.loads(next(iter(broker.logs(exp_id).values()))[0])
    assert {k: seen[k] for k in [*BROKER_SECRETS, "UNLISTED"]} == dict.fromkeys([*BROKER_SECRETS, "UNLISTED"])
    assert (seen["LANG"], seen["TZ"], seen["HOME"]) == ("C.UTF-8", "Europe/Paris", os.environ["HOME"])
    assert (seen["JOB_ID"], seen["SUBMARINE_SERVER_PORT"]) == (exp_id, str(broker.port))


def test_env_passthrough_names_more_variables(broker_factory) -> None:
    broker = broker_factory(
        start=False, clusters={"local": {"kind": "local", "env_passthrough": ["CUDA_HOME"]}}
    )
    broker.start(env=broker_env(CUDA_HOME="/opt/cuda", UNLISTED="x"))
    exp_id = broker.submit(python_spec(SHOW_ENV % ["CUDA_HOME", "UNLISTED"]))["experimentId"]
    broker.wait_status(exp_id, "Succeeded")
    assert json.loads(next(iter(broker.logs(exp_id).values()))[0]) == {
        "CUDA_HOME": "/opt/cuda",
        "UNLISTED": None,
    }


# -- the adapter with run_as ---------------------------------------------------------------------


@pytest.fixture
def scratch(run_as_users: tuple[str, ...]) -> Iterator[Path]:
    """A folder the run-as users may pass through (pytest's own are private to root)."""
    folder = scratch_dir()
    yield folder
    kill_replicas(folder)
    remove_tree(folder)


def shared_adapter(scratch: Path, **settings: Any) -> LocalAdapter:
    run_as = settings.pop("run_as", {"nlp": "sbrun-b", "*": "sbrun-a"})
    config = LocalClusterConfig(name="shared", work_dir=scratch / "work", run_as=run_as, **settings)
    return LocalAdapter(config, data_dir=str(scratch / "data"))


def one_replica(uid: str, code: str, *, namespace: str, workdir: str | None = None) -> LaunchPlan:
    replica = ReplicaPlan(
        role="Worker", index=0, argv=[replica_python(), "-c", code], env={"MINE": "1"}, host="127.0.0.1"
    )
    return LaunchPlan(
        uid=uid,
        workload_id=f"experiment-{uid}",
        name="t",
        namespace=namespace,
        framework="python",
        replicas=[replica],
        success_roles=["Worker"],
        workdir=workdir,
    )


async def ended(adapter: LocalAdapter, handle: Handle) -> Observation:
    deadline = time.monotonic() + 30
    while True:
        seen = (await adapter.poll([handle]))[handle.uid]
        if seen.phase.is_terminal or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.05)


IDENTITY = """
import json, os, stat
open("made.txt", "w").write("x")
tries = {{}}
for label, path, mode in {tries!r}:
    try:
        if mode == "list":
            os.listdir(path)
        else:
            open(path, mode).close()
        tries[label] = "allowed"
    except OSError as exc:
        tries[label] = type(exc).__name__
print(json.dumps({{
    "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "cwd": os.getcwd(),
    "home": os.environ.get("HOME"), "user": os.environ.get("USER"), "mine": os.environ.get("MINE"),
    "made": oct(stat.S_IMODE(os.stat("made.txt").st_mode)), "old": open("old.txt").read(), "tries": tries,
}}))
"""


def test_a_replica_runs_as_its_namespaces_user_in_a_private_folder(scratch: Path) -> None:
    """User, primary group only, umask 077, HOME = its own 0700 folder; the control files stay the
    broker's: it can neither read its plan nor forge its exit record, nor list the work dir."""
    adapter = shared_adapter(scratch)
    attempt = adapter.work_dir / "u-identity"
    tries = [
        ("read its plan", str(attempt / "plan.json"), "r"),
        ("read its launch file", str(attempt / "worker-0.launch"), "r"),
        ("forge its exit record", str(attempt / "worker-0.exit"), "w"),
        ("list the work dir", str(adapter.work_dir), "list"),
    ]
    # Files a previous owner (here: the broker) left in the kept folder follow it to the new user.
    kept = adapter.work_dir / ".workdirs" / "nb-keep"
    kept.mkdir(parents=True)
    (kept / "old.txt").write_text("from before")
    # ...but nothing they point at elsewhere: a link's target and a hard-linked file stay the broker's.
    secret = scratch / "secret"
    secret.write_text("broker only")
    secret.chmod(0o600)
    (kept / "link").symlink_to(secret)
    os.link(secret, kept / "hard")
    the_plan = one_replica("u-identity", IDENTITY.format(tries=tries), namespace="vision", workdir="nb-keep")

    async def scenario() -> list[str]:
        handle = await adapter.submit(the_plan)
        seen = await ended(adapter, handle)
        assert seen.phase is Phase.SUCCEEDED, (seen, await adapter.logs(handle))
        return (await adapter.logs(handle))[0].lines

    lines = asyncio.run(scenario())
    me = pwd.getpwnam("sbrun-a")
    report = json.loads(lines[-1])
    assert (report["uid"], report["gid"], report["groups"]) == (me.pw_uid, me.pw_gid, [])
    assert report["cwd"] == report["home"] == str(kept) and report["user"] == "sbrun-a"
    assert (report["mine"], report["made"], report["old"]) == ("1", "0o600", "from before")
    assert report["tries"] == {label: "PermissionError" for label, _, _ in tries}
    # Modes and owners as the broker left them.
    assert _owner_mode(adapter.work_dir) == (0, 0o711)
    assert _owner_mode(adapter.work_dir / ".workdirs") == (0, 0o711)
    assert _owner_mode(attempt) == (0, 0o700)
    for name in ("plan.json", "worker-0.launch", "worker-0.pid", "worker-0.exit", "worker-0.log"):
        assert _owner_mode(attempt / name) == (0, 0o600), name
    assert _owner_mode(kept) == (me.pw_uid, 0o700)
    assert (kept / "old.txt").stat().st_uid == me.pw_uid
    assert (kept / "link").lstat().st_uid == me.pw_uid
    assert _owner_mode(secret) == (0, 0o600)


def _owner_mode(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_uid, stat.S_IMODE(info.st_mode)


def test_each_namespace_gets_its_user_and_an_uncovered_one_is_refused(scratch: Path) -> None:
    adapter = shared_adapter(scratch, run_as={"vision": "sbrun-a", "nlp": "sbrun-b"})
    code = "import os; print(os.getuid())"

    async def scenario() -> None:
        for uid, namespace, user in (("u-a", "vision", "sbrun-a"), ("u-b", "nlp", "sbrun-b")):
            handle = await adapter.submit(one_replica(uid, code, namespace=namespace))
            assert (await ended(adapter, handle)).phase is Phase.SUCCEEDED
            assert (await adapter.logs(handle))[0].lines == [str(pwd.getpwnam(user).pw_uid)]
            # An experiment's folder is its attempt's, the user's own.
            assert (adapter.work_dir / ".workdirs" / uid).stat().st_uid == pwd.getpwnam(user).pw_uid
        assert adapter.refuses_namespace("audio") == (
            "runs no work of namespace audio: its run_as names no user for it (nor '*')"
        )
        assert adapter.refuses_namespace("vision") is None
        with pytest.raises(SubmitRejected, match="cluster 'shared' runs no work of namespace audio"):
            await adapter.submit(one_replica("u-c", code, namespace="audio"))
        assert not (adapter.work_dir / "u-c").exists()

    asyncio.run(scenario())


def test_a_work_dir_the_users_cannot_reach_makes_the_cluster_not_ready(scratch: Path, tmp_path: Path) -> None:
    """pytest's folders are private to root, like a data directory under /root: the users cannot
    reach a work dir there, and the cluster says so instead of failing every replica."""
    config = LocalClusterConfig(name="hidden", work_dir=tmp_path / "work", run_as="sbrun-a")
    health = asyncio.run(LocalAdapter(config, data_dir=str(tmp_path)).health())
    assert health.reachable and not health.usable
    assert health.message.startswith(
        f"run-as user sbrun-a cannot reach the work directory {tmp_path / 'work'}"
    )
    assert "set work_dir to a folder others may pass through" in health.message
    assert asyncio.run(shared_adapter(scratch).health()).usable


def test_run_as_in_the_cluster_file_is_checked_without_repeating_it(
    run_as_users: tuple[str, ...], tmp_path: Path
) -> None:
    from broker.config import ConfigError
    from broker.config.loader import load_cluster_file

    for value, reason in [
        ("nosuchuser-zz", "run_as: no such user on this host"),
        ("root", "run_as: names root (uid 0)"),
        ("Not-A-User", "run_as: not a Unix user name"),
        ({}, "run_as: an empty map runs nothing"),
        ({"Bad_Key": "sbrun-a"}, "run_as: a key is not a namespace"),
        ({"vision": "nosuchuser-zz"}, "run_as: the user of vision: no such user on this host"),
    ]:
        path = tmp_path / "local.yaml"
        path.write_text(yaml.safe_dump({"name": "x", "kind": "local", "run_as": value}))
        with pytest.raises(ConfigError) as refused:
            load_cluster_file(path)
        assert reason in str(refused.value), str(refused.value)
        assert "nosuchuser-zz" not in str(refused.value) and "Not-A-User" not in str(refused.value)
    with pytest.raises(ValidationError, match="environment variable name"):
        LocalClusterConfig(name="x", env_passthrough=["NOT OK"])
    config = LocalClusterConfig(name="x", run_as={"nlp": "sbrun-b", "*": "sbrun-a"})
    assert (config.run_as_for("nlp"), config.run_as_for("vision")) == ("sbrun-b", "sbrun-a")
    assert LocalClusterConfig(name="x").run_as_for("any") == "broker"


@pytest.mark.parametrize(
    ("euid", "auth", "run_as", "expected"),
    [
        (0, "token", None, "would run every command as root"),
        (0, "token", "broker", "users' work must not run as root"),
        (0, "token", {"*": "sbrun-a"}, None),
        (0, "none", None, None),
        (0, "none", "broker", None),
        (4321, "token", None, "or run_as: broker to accept sharing it"),
        (4321, "token", "broker", None),
        (4321, "token", "sbrun-a", "needs a broker running as root"),
        (4321, "none", "sbrun-a", "needs a broker running as root"),
        (4321, "none", None, None),
    ],
)
def test_who_may_run_work_on_the_brokers_host(
    monkeypatch: pytest.MonkeyPatch,
    run_as_users: tuple[str, ...],
    euid: int,
    auth: str,
    run_as: Any,
    expected: str | None,
) -> None:
    config = LocalClusterConfig(name="x", run_as=run_as)
    monkeypatch.setattr(local_users.os, "geteuid", lambda: euid)
    problem = LocalAdapter.host_user_problem(config, multi_user=auth == "token")
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and problem[0] == "run_as" and expected in problem[1], problem


# -- the other kinds -----------------------------------------------------------------------------


def test_other_kinds_never_pass_the_brokers_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Slurm submits with --export=NONE (REST: a fixed environment); Ray, Kubernetes and YARN build
    what a job gets from the plan alone. None of them carries a variable of the broker's."""
    from clusters.kubernetes.manifests import indexed_jobs
    from clusters.ray.adapter import RayAdapter
    from clusters.ray.config import RayClusterConfig
    from clusters.slurm.cli import sbatch_args
    from clusters.slurm.rest import JOB_ENVIRONMENT, submission_body
    from clusters.slurm.script import job_request
    from clusters.yarn.config import YarnClusterConfig
    from clusters.yarn.service_spec import build_service

    sentinel = "broker-only-7f3e"
    monkeypatch.setenv("RAY_TOKEN", sentinel)
    replica = ReplicaPlan(role="Worker", index=0, argv=["python", "-c", "pass"], env={"A": "1"}, host="h")
    plan = LaunchPlan(
        uid="u1",
        workload_id="e1",
        name="n",
        namespace="ns",
        framework="python",
        replicas=[replica],
        success_roles=["Worker"],
        image="python:3.11",
    )
    request = job_request(plan, cluster="hpc", work_dir=str(tmp_path))
    assert "--export=NONE" in sbatch_args(request)
    assert submission_body(request)["job"]["environment"] == JOB_ENVIRONMENT
    built = [
        request.script,
        RayAdapter(
            RayClusterConfig(name="r", address="http://127.0.0.1:9"), data_dir=str(tmp_path)
        ).runtime_env(plan),
        indexed_jobs(plan, origin="o", namespace="ns"),
        build_service(plan, YarnClusterConfig(name="y", rm_url="http://127.0.0.1:9", user="u")),
    ]
    for body in built:
        assert sentinel not in json.dumps(body, default=str)
