"""The parts of Ray's ``JobSubmissionClient`` the ray adapter calls, in memory, with Ray's error texts.

Put it in place of the adapter's client (``adapter._client = FakeSDK()``) to drive the adapter
without a Ray head.
"""

from __future__ import annotations

from types import SimpleNamespace

from clusters.ray.states import TERMINAL


class FakeSDK:
    """The parts of ``JobSubmissionClient`` the adapter calls, with Ray's error texts."""

    def __init__(self) -> None:
        self.jobs: dict[str, SimpleNamespace] = {}
        self.calls: list[str] = []
        self.logs = ""
        self.down = False
        self.race = False  # the job appears between the lookup and the submit (another broker)
        #: How a probe job (``sb-probe-...``) ends at once: its status and message.
        self.probe_status = "SUCCEEDED"
        self.probe_message = "Job finished successfully."
        #: Deleted jobs Ray writes back (as its job monitor does when a job is deleted too early).
        self.resurrect = 0

    def _check(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise ConnectionError("Failed to connect to Ray at address: http://h:8265.")

    def get_job_info(self, sid: str) -> SimpleNamespace:
        self._check("get_job_info")
        if sid not in self.jobs:
            raise RuntimeError(f"Request failed with status code 404: Job {sid} does not exist.")
        return self.jobs[sid]

    def submit_job(self, *, entrypoint, submission_id, metadata, runtime_env=None) -> str:
        self._check("submit_job")
        assert all(isinstance(v, str) for v in metadata.values())
        if self.race:
            self.jobs[submission_id] = SimpleNamespace(submission_id=submission_id, status="RUNNING")
        if submission_id in self.jobs:
            raise RuntimeError("Request failed with status code 500: Job with submission_id already exists.")
        probe = submission_id.startswith("sb-probe-")
        self.jobs[submission_id] = SimpleNamespace(
            submission_id=submission_id,
            status=self.probe_status if probe else "PENDING",
            message=self.probe_message if probe else "Job has not started yet.",
            metadata=metadata,
            entrypoint=entrypoint,
            runtime_env=runtime_env,
        )
        return submission_id

    def delete_job(self, sid: str) -> bool:
        self._check("delete_job")
        if sid not in self.jobs:
            raise RuntimeError(f"Request failed with status code 404: Job {sid} does not exist.")
        job = self.jobs[sid]
        if job.status not in TERMINAL:
            raise RuntimeError(
                f"Request failed with status code 400: Attempted to delete job '{sid}', "
                f"but it is in a non-terminal state {job.status}."
            )
        if self.resurrect:
            self.resurrect -= 1
            job.status, job.message = "FAILED", "Unexpected error occurred: failed to get job supervisor."
            return True
        del self.jobs[sid]
        return True

    def probes(self) -> list[str]:
        return [sid for sid in self.jobs if sid.startswith("sb-probe-")]

    def list_jobs(self) -> list[SimpleNamespace]:
        self._check("list_jobs")
        return [*self.jobs.values(), SimpleNamespace(submission_id=None, status="RUNNING", metadata=None)]

    def stop_job(self, sid: str) -> bool:
        self._check("stop_job")
        if sid not in self.jobs:
            raise RuntimeError(f"Request failed with status code 404: Job {sid} does not exist.")
        job = self.jobs[sid]
        if job.status in TERMINAL:
            return False
        job.status = "STOPPED"
        return True

    def get_job_logs(self, sid: str) -> str:
        self._check("get_job_logs")
        if sid not in self.jobs:
            raise RuntimeError(f"Request failed with status code 404: Job {sid} does not exist.")
        return self.logs
