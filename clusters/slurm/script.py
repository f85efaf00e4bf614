"""One attempt as one Slurm batch job: its options and its script, built from a launch plan.

Job shape (one job, one task per replica):

* ``--ntasks`` is the number of replicas; task ``i`` runs replica ``i`` of the plan (plan order,
  the primary first) through :mod:`runtimes.slurm_task`, started by one ``srun`` with
  ``--kill-on-bad-exit=1`` so the step (and the job) ends when a replica fails.
* Every task gets the same resources, the largest any replica asks for (Slurm's tasks of one job
  step are uniform; a heterogeneous job per role would avoid that at the price of one scheduler
  record per component). CPUs are whole cores: ``--cpus-per-task`` = ceil(cpu), at least 1.
* Memory and GPUs: a one-replica job asks ``--mem=<MiB>`` and ``--gres=gpu:<n>``. With several
  replicas those per-node options would be wrong as soon as tasks spread over nodes, so the job
  asks ``--mem-per-cpu=ceil(memory / cpus)`` and ``--gpus-per-task=<n>`` instead: each task gets
  at least its replica's memory and GPUs wherever it lands.
* The job is named ``sb-<uid>`` and its comment carries the broker marker, the cluster, the uid
  and the experiment: a repeated submit finds the job by name instead of making a second.
* The script is self-contained (the same text for ``sbatch`` and for slurmrestd, which does not
  read ``#SBATCH`` lines): it writes ``tasks.json`` (each replica's argv and environment, with
  address placeholders) and the task entry (with :mod:`runtimes.rendezvous`, which it imports)
  into ``<work_dir>/<uid>/``, runs the step, and records the step's exit code in ``job.exit``,
  which tells the end of a job Slurm has already forgotten.
  Slurm's own output of the batch step goes to ``<work_dir>/sb-<uid>.out``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtimes import rendezvous, slurm_task, tensorboard_sync, venv_build
from runtimes.environment import EnvironmentPlan
from runtimes.plan import LaunchPlan

#: The first word of every job comment this broker writes (the origin marker of the orphan sweep).
BROKER_MARK = "submarine-broker"
_SAFE_UID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MIB = 2**20


def job_name(uid: str) -> str:
    """The Slurm job name of attempt ``uid``."""
    return f"sb-{uid}"


def uid_of(name: str) -> str | None:
    """The attempt uid in a job name this broker gave, else None."""
    return name[3:] if name.startswith("sb-") and len(name) > 3 else None


def job_comment(cluster: str, plan: LaunchPlan) -> str:
    """``submarine-broker cluster=<name> uid=<uid> experiment=<id>``: who owns the job."""
    return f"{BROKER_MARK} cluster={cluster} uid={plan.uid} experiment={plan.workload_id}"


def comment_fields(comment: str | None) -> dict[str, str] | None:
    """The ``key=value`` fields of a comment this broker wrote, else None."""
    words = (comment or "").split()
    if not words or words[0] != BROKER_MARK:
        return None
    return dict(w.split("=", 1) for w in words[1:] if "=" in w)


@dataclass(frozen=True)
class JobRequest:
    """What to ask Slurm for; ``cli`` renders it as sbatch options, ``rest`` as job properties."""

    name: str
    comment: str
    script: str
    ntasks: int
    cpus_per_task: int
    memory_mb: int
    #: True: ``memory_mb`` is per CPU (``--mem-per-cpu``); False: per node (``--mem``, one task).
    memory_per_cpu: bool
    #: GPUs of each task: ``--gres=gpu:<n>`` for one task, ``--gpus-per-task`` for several.
    gpus: int
    chdir: str
    output: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: int | None = None


def task_resources(plan: LaunchPlan) -> tuple[int, int, int]:
    """``(cpus, MiB, gpus)`` of every task: the largest request of any replica."""
    cpus = max(1, max(math.ceil(r.resources.cpu - 1e-9) for r in plan.replicas))
    memory = max(1, max(math.ceil(r.resources.memory / MIB) for r in plan.replicas))
    gpus = max(r.resources.gpu for r in plan.replicas)
    return cpus, memory, gpus


def task_envs(plan: LaunchPlan) -> dict[str, dict[str, str]]:
    """Each replica's environment with placeholder endpoints the task entry fills in on the cluster.

    Rendered by :func:`runtimes.rendezvous.render_env` over endpoints that are placeholders
    (``{{host:<replica>}}``, ``{{port:<replica>}}``), so TF_CONFIG, MASTER_ADDR/MASTER_PORT,
    WORKER_ADDRS and DMLC_* are exactly what build_plan would give for real addresses, and
    :mod:`runtimes.slurm_task` only has to replace strings.
    """
    return rendezvous.render_env(plan, rendezvous.placeholder_endpoints([r.name for r in plan.replicas]))


def environment_build(env: EnvironmentPlan | None, pip_args: list[str]) -> dict[str, Any] | None:
    """What a job builds for ``env`` (:mod:`runtimes.venv_build`), or None when it installs
    nothing. The interpreter is the one the job finds on the node (``python`` of the cluster file,
    or ``python<version>`` on PATH when the environment asks a version)."""
    if env is None or not env.installs:
        return None
    return venv_build.spec(env, pip_args=pip_args)


def tasks_document(
    plan: LaunchPlan,
    rendezvous_timeout: float,
    *,
    environments: str | None = None,
    pip_args: list[str] | None = None,
) -> dict[str, Any]:
    """``tasks.json``: what each task of the job runs, in plan order, and which replicas decide;
    with the environment to prepare in ``environments`` (the cache folder) first, if any."""
    envs = task_envs(plan)
    decide = set(plan.deciders())
    extra: dict[str, Any] = {}
    build = environment_build(plan.environment, pip_args or [])
    if build is not None and environments is not None:
        extra = {"environment": build, "environment_root": environments}
    return {
        **extra,
        "uid": plan.uid,
        "rendezvous_timeout": rendezvous_timeout,
        "replicas": [
            {"name": r.name, "argv": list(r.argv), "env": envs[r.name], "decides": r.name in decide}
            for r in plan.replicas
        ],
    }


def heredoc(path: str, text: str) -> str:
    """Shell lines writing ``text`` to ``path`` verbatim (a quoted here-document)."""
    tag = "SB_EOF_" + hashlib.sha256(text.encode()).hexdigest()[:16]
    while tag in text:
        tag += "_"
    return f"cat > {path} <<'{tag}'\n{text.rstrip(chr(10))}\n{tag}\n"


def batch_script(
    plan: LaunchPlan,
    job_dir: str,
    *,
    python: str,
    cpus_per_task: int,
    gpus: int,
    rendezvous_timeout: float,
    pip_args: list[str] | None = None,
) -> str:
    """The batch script of ``plan``'s job."""
    n = len(plan.replicas)
    srun = [
        "srun",
        "--kill-on-bad-exit=1",
        f"--ntasks={n}",
        f"--cpus-per-task={cpus_per_task}",  # srun no longer inherits it from sbatch (22.05)
    ]
    if gpus and n > 1:
        srun.append(f"--gpus-per-task={gpus}")
    environments = str(Path(job_dir).parent / venv_build.ROOT)
    document = json.dumps(
        tasks_document(plan, rendezvous_timeout, environments=environments, pip_args=pip_args),
        indent=1,
        sort_keys=True,
    )
    entry = Path(slurm_task.__file__).read_text()
    builder = Path(venv_build.__file__).read_text()
    scheme = Path(rendezvous.__file__).read_text()
    uploader = Path(tensorboard_sync.__file__).read_text()
    replicas = ", ".join(r.name for r in plan.replicas)
    return (
        "#!/bin/bash\n"
        f"# Submarine Broker: attempt {plan.uid} of {plan.workload_id} ({plan.framework}), "
        f"replicas {replicas}.\n"
        "# One task per replica, in this order; each runs slurm_task.py (see runtimes/slurm_task.py).\n"
        'export PATH="${PATH:-/usr/local/bin:/usr/bin:/bin}"\n'
        f"job_dir={shlex.quote(job_dir)}\n"
        'mkdir -p "$job_dir" && cd "$job_dir" || exit 1\n'
        "rm -f ./*.addr ./*.exit ./*.log ./job.exit ./environment.json\n"
        + "umask 077  # tasks.json holds the replicas' environment: the job's user alone reads it\n"
        + heredoc("tasks.json", document)
        + "umask 022\n"
        + heredoc("slurm_task.py", entry)
        + heredoc("rendezvous.py", scheme)
        + heredoc("tensorboard_sync.py", uploader)
        + heredoc("venv_build.py", builder)
        + 'echo "$SLURM_JOB_ID" > job_id\n'
        "export SLURM_EXPORT_ENV=ALL  # the tasks inherit this environment (sbatch had --export=NONE)\n"
        f'{shlex.join(srun)} {shlex.quote(python)} slurm_task.py "$job_dir"\n'
        "code=$?\n"
        'echo "$code" > job.exit\n'
        'exit "$code"\n'
    )


def job_request(
    plan: LaunchPlan,
    *,
    cluster: str,
    work_dir: str,
    python: str = "python3",
    partition: str | None = None,
    account: str | None = None,
    qos: str | None = None,
    time_limit: int | None = None,
    rendezvous_timeout: float = 300.0,
    pip_args: list[str] | None = None,
) -> JobRequest:
    """Everything Slurm is asked for to run ``plan`` (raises ValueError for a uid unfit for paths)."""
    if not _SAFE_UID.match(plan.uid):
        raise ValueError(f"attempt uid {plan.uid!r} has characters unfit for a Slurm job name and path")
    cpus, memory, gpus = task_resources(plan)
    several = len(plan.replicas) > 1
    job_dir = str(Path(work_dir) / plan.uid)
    return JobRequest(
        name=job_name(plan.uid),
        comment=job_comment(cluster, plan),
        script=batch_script(
            plan,
            job_dir,
            python=python,
            cpus_per_task=cpus,
            gpus=gpus,
            rendezvous_timeout=rendezvous_timeout,
            pip_args=pip_args,
        ),
        ntasks=len(plan.replicas),
        cpus_per_task=cpus,
        memory_mb=math.ceil(memory / cpus) if several else memory,
        memory_per_cpu=several,
        gpus=gpus,
        chdir=str(work_dir),
        output=str(Path(work_dir) / f"{job_name(plan.uid)}.out"),
        partition=partition,
        account=account,
        qos=qos,
        time_limit=time_limit,
    )
