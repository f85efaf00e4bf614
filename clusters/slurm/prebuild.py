"""Build an environment ahead of work on a Slurm cluster: a one-task batch job that runs
:mod:`runtimes.venv_build` on a compute node, into the shared ``<work_dir>/environments``.

The job is named ``sb-env-<short_hash>`` and its comment names the broker, the cluster and the
environment (no attempt uid: the orphan sweep leaves it alone). Its output is
``<work_dir>/environments/<short_hash>.log``; a failed build ends it with a line
:data:`~runtimes.venv_build.FAILURE_MARK` + the installer's error line, which
:func:`failure` reads back. Two build jobs of one hash build once (the build lock).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from clusters.slurm.script import BROKER_MARK, JobRequest, heredoc
from runtimes import venv_build

#: MiB the build job asks for (pip resolving and unpacking wheels).
BUILD_MEMORY_MB = 1024


def job_name(short_hash: str) -> str:
    """The Slurm job name of a build of ``short_hash``."""
    return f"sb-env-{short_hash}"


def build_request(
    build: dict[str, Any],
    *,
    cluster: str,
    root: Path,
    python: str,
    partition: str | None = None,
    account: str | None = None,
    qos: str | None = None,
    time_limit: int | None = None,
) -> JobRequest:
    """The batch job building ``build`` (a :func:`runtimes.venv_build.spec`) into ``root``."""
    short = str(build["short_hash"])
    builder = f".venv_build-{short}.py"
    document = f".{short}.build.json"
    script = (
        "#!/bin/bash\n"
        f"# Submarine Broker: build of environment {build['describe']} ({short}) ahead of work.\n"
        'export PATH="${PATH:-/usr/local/bin:/usr/bin:/bin}"\n'
        f"root={shlex.quote(str(root))}\n"
        'mkdir -p "$root" && cd "$root" || exit 1\n'
        "umask 022\n"
        + heredoc(builder, Path(venv_build.__file__).read_text())
        + heredoc(document, json.dumps(build, indent=1, sort_keys=True))
        + f'{shlex.quote(python)} {builder} "$root" {document}\n'
    )
    return JobRequest(
        name=job_name(short),
        comment=f"{BROKER_MARK} cluster={cluster} environment={short}",
        script=script,
        ntasks=1,
        cpus_per_task=1,
        memory_mb=BUILD_MEMORY_MB,
        memory_per_cpu=False,
        gpus=0,
        chdir=str(root),
        output=str(root / f"{short}.log"),
        partition=partition,
        account=account,
        qos=qos,
        time_limit=time_limit,
    )


def failure(root: Path, short_hash: str) -> str | None:
    """The installer's error line a failed build job printed, or None."""
    try:
        lines = (root / f"{short_hash}.log").read_text(errors="replace").splitlines()
    except OSError:
        return None
    marked = [line for line in lines if line.startswith(venv_build.FAILURE_MARK)]
    return marked[-1][len(venv_build.FAILURE_MARK) :].strip() if marked else None
