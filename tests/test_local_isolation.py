"""The local kind shared between teams (issue 14): work runs as other Unix users, not the broker's.

Probed as a hostile member of team ``vision`` (alice) would: her experiment reads the broker's
SQLite file and gives the admin a token of its choosing, reads team ``nlp``'s (bob's) plan files,
logs, working folder and notebook (its Jupyter token), and the broker's own environment. With
``auth: token`` every auth-token test broker's local cluster has ``run_as`` (``tests/support.py``:
``nlp`` runs as ``sbrun-b``, every other namespace as ``sbrun-a``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from tests.run_as import ensure_users, is_root
from tests.support import REPO, Broker, python_spec, wait_for
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


def work_dir_of(broker: Broker) -> Path:
    """The local cluster's work directory, from its file (default ``<data_dir>/clusters/local``)."""
    body = yaml.safe_load((broker.clusters_dir / "local.yaml").read_text())
    return Path(body.get("work_dir") or broker.data_dir / "clusters" / "local")


def attempt_of(broker: Broker, workload_id: str) -> Path:
    """The attempt folder of a workload (the test reads it as root)."""
    for plan in work_dir_of(broker).glob("*/plan.json"):
        if json.loads(plan.read_text())["workload_id"] == workload_id:
            return plan.parent
    raise AssertionError(f"no attempt folder of {workload_id} in {work_dir_of(broker)}")


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
    bob_exp = submit(bob, python_spec(BOB_WORK, name="bob-work", namespace="nlp", envVars={"BOB_SECRET": "b0b"}))
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
        ("the cluster's work directory", str(work_dir_of(broker))),
        ("bob's experiment plan", str(exp_attempt / "plan.json")),
        ("bob's experiment log", str(exp_attempt / "worker-0.log")),
        ("bob's working directory", bob_cwd),
        ("bob's file", str(Path(bob_cwd) / "notes.txt")),
        ("bob's notebook plan (its Jupyter token)", str(nb_attempt / "plan.json")),
        ("bob's notebook files", str(work_dir_of(broker) / ".workdirs" / nb_id)),
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
    import pwd

    return pwd.getpwnam(user).pw_uid


# -- start-up and cluster files -------------------------------------------------------------------


@pytest.mark.parametrize("body", [{"kind": "local"}, {"kind": "local", "run_as": "broker"}], ids=["unset", "broker"])
def test_root_broker_with_token_auth_refuses_a_local_cluster_without_run_as(
    broker_factory, run_as_users: tuple[str, ...], body: dict[str, Any]
) -> None:
    broker = broker_factory(start=False, auth="token", clusters={"local": body})
    broker.start(wait=False)
    assert broker.proc is not None
    wait_for(lambda: broker.proc.poll() is not None, timeout=60, what="the broker to refuse to start")
    assert broker.proc.returncode != 0
    log = broker.log()
    assert "local.yaml" in log and "run_as" in log and "root" in log, log
    assert "Traceback" not in log, log


def test_a_local_cluster_file_without_run_as_is_refused_while_serving(shared: tuple[Broker, Clients]) -> None:
    broker, c = shared
    root = c["root"]
    broker.add_cluster("late", kind="local", work_dir=str(work_dir_of(broker).parent / "late"))

    def refused() -> list[dict[str, Any]]:
        errors = root.get("/api/v1/cluster").json()["attributes"].get("configErrors") or []
        return [e for e in errors if e["file"].endswith("late.yaml")]

    error = wait_for(refused, timeout=20, what="the file to be refused")[0]
    assert "run_as" in error["reason"] and "root" in error["reason"], error
    assert root.get("/api/v1/cluster/late").status_code == 404
    (broker.clusters_dir / "late.yaml").unlink()


def test_a_namespace_the_run_as_map_does_not_name_is_refused_at_submit(shared: tuple[Broker, Clients]) -> None:
    broker, c = shared
    root, bob = c["root"], c["bob"]
    body = yaml.safe_load((broker.clusters_dir / "local.yaml").read_text())
    body.pop("name")
    broker.add_cluster("vision-only", **{**body, "run_as": {"vision": "sbrun-a"}})
    wait_for(lambda: root.get("/api/v1/cluster/vision-only").status_code == 200, timeout=20, what="the cluster")
    try:
        spec = python_spec("print(1)", name="elsewhere", namespace="nlp", placement={"cluster": "vision-only"})
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
    names = [*BROKER_SECRETS, "UNLISTED", "LANG", "TZ", "HOME", "JOB_ID", "SUBMARINE_SERVER_PORT", "PYTHONPATH"]
    exp_id = broker.submit(python_spec(SHOW_ENV % names))["experimentId"]
    broker.wait_status(exp_id, "Succeeded")
    seen = json.loads(next(iter(broker.logs(exp_id).values()))[0])
    assert {k: seen[k] for k in [*BROKER_SECRETS, "UNLISTED", "PYTHONPATH"]} == dict.fromkeys(
        [*BROKER_SECRETS, "UNLISTED", "PYTHONPATH"]
    )
    assert (seen["LANG"], seen["TZ"], seen["HOME"]) == ("C.UTF-8", "Europe/Paris", os.environ["HOME"])
    assert (seen["JOB_ID"], seen["SUBMARINE_SERVER_PORT"]) == (exp_id, str(broker.port))


def test_env_passthrough_names_more_variables(broker_factory) -> None:
    broker = broker_factory(start=False, clusters={"local": {"kind": "local", "env_passthrough": ["CUDA_HOME"]}})
    broker.start(env=broker_env(CUDA_HOME="/opt/cuda", UNLISTED="x"))
    exp_id = broker.submit(python_spec(SHOW_ENV % ["CUDA_HOME", "UNLISTED"]))["experimentId"]
    broker.wait_status(exp_id, "Succeeded")
    assert json.loads(next(iter(broker.logs(exp_id).values()))[0]) == {"CUDA_HOME": "/opt/cuda", "UNLISTED": None}


# -- the other kinds -----------------------------------------------------------------------------


def test_other_kinds_never_pass_the_brokers_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
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
    from runtimes.plan import LaunchPlan, ReplicaPlan

    sentinel = "broker-only-7f3e"
    monkeypatch.setenv("RAY_TOKEN", sentinel)
    replica = ReplicaPlan(role="Worker", index=0, argv=["python", "-c", "pass"], env={"A": "1"}, host="h")
    plan = LaunchPlan(
        uid="u1", workload_id="e1", name="n", namespace="ns", framework="python",
        replicas=[replica], success_roles=["Worker"], image="python:3.11",
    )
    request = job_request(plan, cluster="hpc", work_dir=str(tmp_path))
    assert "--export=NONE" in sbatch_args(request)
    assert submission_body(request)["job"]["environment"] == JOB_ENVIRONMENT
    built = [
        request.script,
        RayAdapter(RayClusterConfig(name="r", address="http://127.0.0.1:9"), data_dir=str(tmp_path)).runtime_env(plan),
        indexed_jobs(plan, origin="o", namespace="ns"),
        build_service(plan, YarnClusterConfig(name="y", rm_url="http://127.0.0.1:9", user="u")),
    ]
    for body in built:
        assert sentinel not in json.dumps(body, default=str)
