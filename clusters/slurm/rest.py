"""``mode: rest``: slurmrestd's OpenAPI v0.0.38 (Slurm 22.05) over httpx.

Paths under ``/slurm/v0.0.38``: ``GET /jobs`` (one call per poll: every job the controller
knows, filtered here), ``POST /job/submit``, ``DELETE /job/{id}`` (cancel), ``GET /nodes``
(capacity). Every request carries ``X-SLURM-USER-NAME`` and ``X-SLURM-USER-TOKEN`` (the JWT from
the cluster file; never logged, never in a message). ``rest_url: unix:/path`` talks to a
slurmrestd on a local socket.

v0.0.38 takes the batch script at the top level of the submit body beside ``job`` (the job's
properties; ``environment`` is required) and ignores ``#SBATCH`` lines, so every option is a
property. slurmrestd answers a controller it cannot reach with an error in the body (often with
HTTP 500): those, transport failures and refused credentials (401/403) are
:class:`ClusterUnreachable`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from clusters.errors import ClusterUnreachable, SubmitRejected
from clusters.slurm.backend import JobRecord, NodeRecord, SlurmBackend, gpu_count, unreachable
from clusters.slurm.config import SlurmClusterConfig
from clusters.slurm.script import JobRequest

API = "/slurm/v0.0.38"
#: The batch step's environment (v0.0.38 requires one); the script builds the rest itself.
JOB_ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def submission_body(request: JobRequest) -> dict[str, Any]:
    """The ``POST /job/submit`` body for ``request`` (schema ``v0.0.38_job_submission``)."""
    job: dict[str, Any] = {
        "name": request.name,
        "comment": request.comment,
        "current_working_directory": request.chdir,
        "standard_output": request.output,
        "tasks": request.ntasks,
        "cpus_per_task": request.cpus_per_task,
        "environment": dict(JOB_ENVIRONMENT),
    }
    job["memory_per_cpu" if request.memory_per_cpu else "memory_per_node"] = request.memory_mb
    if request.gpus:
        if request.ntasks > 1:
            job["gpus_per_task"] = str(request.gpus)
        else:
            job["gres"] = f"gpu:{request.gpus}"
    for key, value in (
        ("partition", request.partition),
        ("account", request.account),
        ("qos", request.qos),
        ("time_limit", request.time_limit),
    ):
        if value is not None:
            job[key] = value
    return {"script": request.script, "job": job}


def errors_of(body: Any) -> list[str]:
    """The messages in a v0.0.38 answer's ``errors`` list."""
    if not isinstance(body, dict):
        return []
    out = []
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            text = str(error.get("error") or "").strip()
            description = str(error.get("description") or "").strip()
            if description and description.lower() != text.lower():
                text = f"{text}: {description}" if text else description
            out.append(text)
        else:
            out.append(str(error))
    return [e for e in out if e]


def job_record(job: dict[str, Any]) -> JobRecord:
    return JobRecord(
        job_id=str(job.get("job_id")),
        name=str(job.get("name") or ""),
        state=str(job.get("job_state") or ""),
        reason=str(job.get("state_reason") or "").replace("None", ""),
        comment=str(job.get("comment") or ""),
        nodes=str(job.get("nodes") or ""),
    )


def node_record(node: dict[str, Any]) -> NodeRecord:
    flags = [str(f).lower() for f in node.get("state_flags") or []]
    return NodeRecord(
        name=str(node.get("name") or ""),
        state="+".join([str(node.get("state") or "unknown").lower(), *flags]),
        cpus=int(node.get("cpus") or 0),
        alloc_cpus=int(node.get("alloc_cpus") or 0),
        memory_mb=int(node.get("real_memory") or 0),
        alloc_memory_mb=int(node.get("alloc_memory") or 0),
        gpus=gpu_count(node.get("gres")),
        gpus_used=gpu_count(node.get("gres_used")),
    )


class SlurmRest(SlurmBackend):
    """Slurm through slurmrestd."""

    #: httpx transport (tests may swap one in); None = the network or the configured socket.
    transport: httpx.AsyncBaseTransport | None = None

    def __init__(self, config: SlurmClusterConfig) -> None:
        self.config = config
        self.label = f"Slurm cluster '{config.name}'"
        assert config.rest_url is not None
        self.where = config.rest_url
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            url = self.config.rest_url or ""
            transport = self.transport
            base = url
            if url.startswith("unix:"):
                transport = transport or httpx.AsyncHTTPTransport(uds=url.removeprefix("unix:"))
                base = "http://slurmrestd"
            self._client = httpx.AsyncClient(
                base_url=base + API,
                transport=transport,
                timeout=self.config.command_timeout,
                headers={
                    "X-SLURM-USER-NAME": self.config.user or "",
                    "X-SLURM-USER-TOKEN": self.config.token or "",
                },
            )
        return self._client

    async def call(self, method: str, path: str, *, json: Any = None) -> tuple[int, Any]:
        """``(HTTP status, JSON body)``; ClusterUnreachable for no answer or refused credentials."""
        try:
            answer = await self._http().request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise ClusterUnreachable(
                f"{self.label}: slurmrestd at {self.where} did not answer ({type(exc).__name__})"
            ) from None
        if answer.status_code in (401, 403):
            raise ClusterUnreachable(f"{self.label}: slurmrestd at {self.where} refused the credentials")
        try:
            body = answer.json()
        except ValueError:
            body = None
        errors = errors_of(body)
        detail = "; ".join(errors)[:300] or f"HTTP {answer.status_code}"
        if any(unreachable(e) for e in errors) or (answer.status_code >= 502 and not errors):
            raise ClusterUnreachable(f"{self.label}: slurmrestd at {self.where}: {detail}")
        if answer.status_code >= 500 and any(e.lower().startswith("unspecified error") for e in errors):
            # What slurmctld's refusal of the token (expired, wrong user, forged) looks like here.
            raise ClusterUnreachable(
                f"{self.label}: slurmrestd at {self.where}: the controller refused the request "
                f"({detail}); check the cluster's user and token"
            )
        return answer.status_code, body

    async def _jobs(self) -> list[JobRecord]:
        status, body = await self.call("GET", "/jobs")
        if status != 200 or not isinstance(body, dict):
            detail = "; ".join(errors_of(body))[:300] or f"HTTP {status}"
            raise ClusterUnreachable(f"{self.label}: slurmrestd cannot list jobs: {detail}")
        return [job_record(j) for j in body.get("jobs") or [] if isinstance(j, dict)]

    # -- the backend ---------------------------------------------------------------------------

    async def submit(self, request: JobRequest) -> str:
        status, body = await self.call("POST", "/job/submit", json=submission_body(request))
        job_id = body.get("job_id") if isinstance(body, dict) else None
        errors = errors_of(body)
        if status != 200 or errors or not job_id:
            detail = "; ".join(errors)[:500] or f"HTTP {status}"
            raise SubmitRejected(f"{self.label} refused job {request.name}: {detail}")
        return str(job_id)

    async def jobs(self, job_ids: Sequence[str]) -> dict[str, JobRecord]:
        if not job_ids:
            return {}
        wanted = set(job_ids)
        return {r.job_id: r for r in await self._jobs() if r.job_id in wanted}

    async def named(self, name: str) -> list[JobRecord]:
        return [r for r in await self._jobs() if r.name == name]

    async def active(self) -> list[JobRecord]:
        from clusters.slurm.states import TERMINAL

        return [r for r in await self._jobs() if r.state.upper() not in TERMINAL]

    async def cancel(self, job_id: str) -> None:
        await self.call("DELETE", f"/job/{job_id}")
        # Errors other than "cannot reach" are about a job that ended or is unknown: fine.

    async def nodes(self) -> list[NodeRecord]:
        status, body = await self.call("GET", "/nodes")
        if status != 200 or not isinstance(body, dict):
            detail = "; ".join(errors_of(body))[:300] or f"HTTP {status}"
            raise ClusterUnreachable(f"{self.label}: slurmrestd cannot list nodes: {detail}")
        partition = self.config.partition
        return [
            node_record(n)
            for n in body.get("nodes") or []
            if isinstance(n, dict) and (partition is None or partition in (n.get("partitions") or []))
        ]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
