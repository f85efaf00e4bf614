"""Configuration of a ``slurm`` cluster."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from clusters.config import ClusterConfig


class SlurmClusterConfig(ClusterConfig):
    """``kind: slurm``: each attempt runs as one Slurm batch job with one task per replica.

    ``mode: cli`` (default) drives ``sbatch``, ``squeue``, ``scancel`` and ``sinfo`` on the broker
    host, which must be a Slurm submit host (``clusters`` is passed as ``--clusters``, and
    ``slurm_conf`` as ``SLURM_CONF`` to every command for a Slurm whose configuration is not in
    ``/etc/slurm``). ``mode: rest`` talks to ``slurmrestd`` (OpenAPI v0.0.38, Slurm 22.05) at
    ``rest_url`` (``http(s)://host:port`` or ``unix:/path/to/socket``) as ``user`` with ``token``,
    a Slurm JWT (``scontrol token``): the token is a secret, masked by :meth:`public_view` and
    never put in a message.

    ``work_dir`` must be a folder every compute node and the broker host see at the same path:
    the job writes each replica's log and exit code there (``<work_dir>/<uid>/``), the broker
    reads them for logs and failure reasons. Default: ``<data_dir>/clusters/<name>``, which only
    suits a Slurm on the broker's own host. ``python`` is the interpreter the tasks' entry runs
    with on the compute nodes (standard library only). ``partition``, ``account``, ``qos`` and
    ``time_limit`` (minutes) go to every job as they are. Environments are built by the jobs'
    tasks in ``<work_dir>/environments`` (a venv per hash, see :mod:`runtimes.venv_build`) from
    ``python`` (or ``python<version>`` on the node's PATH), ``pip_args`` added to every ``pip
    install`` (an index, a wheel folder the nodes see).
    """

    secret_fields: ClassVar[frozenset[str]] = frozenset({"token"})

    kind: Literal["slurm"] = "slurm"
    mode: Literal["cli", "rest"] = "cli"
    clusters: str | None = Field(default=None, description="cli: sbatch/squeue/scancel --clusters")
    slurm_conf: Path | None = Field(default=None, description="cli: SLURM_CONF for every command")
    rest_url: str | None = Field(default=None, description="rest: slurmrestd, http(s)://... or unix:/path")
    user: str | None = Field(default=None, description="rest: X-SLURM-USER-NAME")
    token: str | None = Field(default=None, description="rest: X-SLURM-USER-TOKEN, a JWT (secret)")
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: int | None = Field(default=None, gt=0, description="minutes (sbatch --time)")
    work_dir: Path | None = Field(default=None, description="shared by the compute nodes and the broker")
    python: str = Field(default="python3", description="Python 3 on the compute nodes, for the task entry")
    command_timeout: float = Field(default=30.0, gt=0, description="seconds per command or REST call")
    pip_args: list[str] = Field(
        default_factory=list,
        description="Options of every pip install of an environment build, e.g. ['--no-index', "
        "'--find-links', '/shared/wheels']",
    )
    rendezvous_timeout: float = Field(
        default=300.0, gt=0, description="seconds the replicas of a job wait for each other to start"
    )

    @field_validator("rest_url")
    @classmethod
    def _rest_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://", "unix:/")):
            raise ValueError("slurmrestd's address must start with http://, https:// or unix:/")
        return value

    @field_validator("partition", "account", "qos", "clusters")
    @classmethod
    def _word(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c.isspace() for c in value)):
            raise ValueError("must be one word without spaces")
        return value

    @model_validator(mode="after")
    def _mode_fields(self) -> SlurmClusterConfig:
        if self.mode == "rest":
            missing = [k for k in ("rest_url", "user", "token") if not getattr(self, k)]
            if missing:
                raise ValueError(f"mode rest needs {', '.join(missing)}")
            if self.clusters or self.slurm_conf:
                raise ValueError("clusters and slurm_conf are for mode cli; slurmrestd has its own")
        else:
            extra = [k for k in ("rest_url", "user", "token") if getattr(self, k)]
            if extra:
                raise ValueError(f"{', '.join(extra)} are for mode rest (this cluster has mode cli)")
        return self
