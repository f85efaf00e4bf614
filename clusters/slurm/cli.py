"""``mode: cli``: Slurm's own commands on the broker host (sbatch, squeue, scancel, sinfo).

Every command runs as an asyncio subprocess bounded by ``command_timeout`` (a command that hangs
is killed, by its own pid, and the controller counts as unreachable), with ``SLURM_CONF`` set
when the cluster file names a configuration and ``--clusters`` when it names clusters. Output is
read in Slurm's fixed, delimited formats (``squeue -o``, ``sinfo -O``), never its tables.

* ``sbatch --parsable --export=NONE ...`` reads the script on stdin: nothing of the broker's
  environment (database URLs, tokens) reaches the job.
* ``squeue --states=all --jobs=<ids>``: one call per poll for every id; ``--states=all`` keeps
  finished jobs in the answer for as long as the controller remembers them (``MinJobAge``).
* ``sinfo -N`` per node: CPUs (allocated/idle/other/total), memory, allocated memory, gres.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence

from clusters.errors import ClusterUnreachable, SubmitRejected
from clusters.slurm.backend import JobRecord, NodeRecord, SlurmBackend, gpu_count, unreachable
from clusters.slurm.config import SlurmClusterConfig
from clusters.slurm.script import JobRequest

#: squeue's fields, ``|``-separated; the comment last since it is free text.
SQUEUE_FORMAT = "%i|%j|%T|%r|%N|%k"
#: sinfo's fields per node; ``:|`` = no fixed width, ``|`` after each.
SINFO_FORMAT = "NodeList:|,StateLong:|,CPUsState:|,Memory:|,AllocMem:|,Gres:|,GresUsed:|"


def sbatch_args(request: JobRequest) -> list[str]:
    """sbatch's options for ``request`` (the script comes on stdin)."""
    args = [
        "--parsable",
        "--export=NONE",
        f"--job-name={request.name}",
        f"--comment={request.comment}",
        f"--chdir={request.chdir}",
        f"--output={request.output}",
        f"--ntasks={request.ntasks}",
        f"--cpus-per-task={request.cpus_per_task}",
    ]
    if request.memory_per_cpu:
        args.append(f"--mem-per-cpu={request.memory_mb}M")
    else:
        args.append(f"--mem={request.memory_mb}M")
    if request.gpus:
        args.append(f"--gpus-per-task={request.gpus}" if request.ntasks > 1 else f"--gres=gpu:{request.gpus}")
    for flag, value in (
        ("partition", request.partition),
        ("account", request.account),
        ("qos", request.qos),
        ("time", request.time_limit),
    ):
        if value is not None:
            args.append(f"--{flag}={value}")
    return args


def parse_squeue(text: str) -> list[JobRecord]:
    """Records from ``squeue -h -o SQUEUE_FORMAT`` (``CLUSTER:`` headers of -M are skipped)."""
    records = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("CLUSTER:"):
            continue
        fields = line.split("|", 5)
        if len(fields) < 6:
            continue
        job_id, name, state, reason, nodes, comment = (f.strip() for f in fields)
        records.append(JobRecord(job_id, name, state, "" if reason == "None" else reason, comment, nodes))
    return records


def _int(text: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        return 0


def parse_sinfo(text: str) -> list[NodeRecord]:
    """Nodes from ``sinfo -h -N -O SINFO_FORMAT``, each once (a node in two partitions is listed twice)."""
    nodes: dict[str, NodeRecord] = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 7 or not fields[0] or line.startswith("CLUSTER:"):
            continue
        name, state, cpus_state, memory, alloc_memory, gres, gres_used = fields[:7]
        alloc, _idle, _other, total = ([*cpus_state.split("/"), "0", "0", "0", "0"])[:4]
        nodes[name] = NodeRecord(
            name=name,
            state=state,
            cpus=_int(total),
            alloc_cpus=_int(alloc),
            memory_mb=_int(memory),
            alloc_memory_mb=_int(alloc_memory),
            gpus=gpu_count(gres),
            gpus_used=gpu_count(gres_used),
        )
    return list(nodes.values())


class SlurmCli(SlurmBackend):
    """Slurm through its commands on this host."""

    def __init__(self, config: SlurmClusterConfig) -> None:
        self.config = config
        self.label = f"Slurm cluster '{config.name}'"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.config.slurm_conf is not None:
            env["SLURM_CONF"] = str(self.config.slurm_conf)
        return env

    def _clusters(self) -> list[str]:
        return [f"--clusters={self.config.clusters}"] if self.config.clusters else []

    async def run(self, *argv: str, stdin: str | None = None) -> tuple[int, str, str]:
        """``(exit code, stdout, stderr)``; ClusterUnreachable when it cannot run or times out."""
        timeout = self.config.command_timeout
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env(),
            )
        except OSError as exc:
            raise ClusterUnreachable(
                f"{self.label}: cannot run {argv[0]} on the broker host ({exc.strerror or exc}); "
                "is the Slurm client installed (slurm-client)?"
            ) from None
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), timeout
            )
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise ClusterUnreachable(f"{self.label}: {argv[0]} did not answer within {timeout:g}s") from None
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    def _failed(self, command: str, err: str) -> ClusterUnreachable:
        first = " ".join(err.strip().splitlines()[-1:])[:300] or "no message"
        return ClusterUnreachable(f"{self.label}: {command} failed: {first}")

    # -- the backend ---------------------------------------------------------------------------

    async def submit(self, request: JobRequest) -> str:
        code, out, err = await self.run(
            "sbatch", *self._clusters(), *sbatch_args(request), stdin=request.script
        )
        if code != 0:
            message = " ".join(line.strip() for line in err.strip().splitlines())[:500] or f"exit code {code}"
            if unreachable(err):
                raise ClusterUnreachable(f"{self.label}: sbatch: {message}")
            raise SubmitRejected(f"{self.label} refused job {request.name}: {message}")
        job_id = out.strip().splitlines()[-1].split(";")[0].strip() if out.strip() else ""
        if not job_id.isdigit():
            raise ClusterUnreachable(f"{self.label}: sbatch gave no job id ({out.strip()[:200]!r})")
        return job_id

    async def _squeue(self, *selection: str) -> list[JobRecord]:
        code, out, err = await self.run(
            "squeue", *self._clusters(), "--noheader", "--states=all", f"--format={SQUEUE_FORMAT}", *selection
        )
        if code != 0:
            if "invalid job id" in err.lower():  # the only id asked for is unknown
                return []
            raise self._failed("squeue", err)
        return parse_squeue(out)

    async def jobs(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        if not job_ids:
            return {}
        records = await self._squeue(f"--jobs={','.join(sorted(set(job_ids)))}")
        return {r.job_id: r for r in records}

    async def named(self, name: str) -> list[JobRecord]:
        return [r for r in await self._squeue(f"--name={name}") if r.name == name]

    async def active(self) -> list[JobRecord]:
        code, out, err = await self.run(
            "squeue", *self._clusters(), "--noheader", "--me", f"--format={SQUEUE_FORMAT}"
        )
        if code != 0:
            raise self._failed("squeue", err)
        return parse_squeue(out)

    async def cancel(self, job_id: str) -> None:
        code, _out, err = await self.run("scancel", *self._clusters(), job_id)
        if code != 0 and unreachable(err):
            raise self._failed("scancel", err)
        # Any other complaint is about a job that ended or is unknown: nothing left to stop.

    async def nodes(self) -> list[NodeRecord]:
        partition = [f"--partition={self.config.partition}"] if self.config.partition else []
        code, out, err = await self.run(
            "sinfo", *self._clusters(), "--noheader", "--Node", f"--Format={SINFO_FORMAT}", *partition
        )
        if code != 0:
            raise self._failed("sinfo", err)
        return parse_sinfo(out)
