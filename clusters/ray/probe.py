"""Can a Ray cluster's ``entrypoint_python`` run the launcher? A tiny probe job tells, once.

Every attempt's entrypoint is ``<entrypoint_python> -m runtimes.ray_launcher ...``, which needs
``ray`` and ``pydantic`` on that interpreter, on the node that runs job drivers. When it lacks them
every job fails at once, so the cluster's health check asks first: it submits one Ray job
``<entrypoint_python> -c 'import ray, pydantic'`` and reads its end through the job API. The
answer is kept: the health check runs every few seconds and submits nothing while it holds.

- A pass holds until :meth:`EntrypointProbe.invalidate` (the cluster stopped answering: the head
  may come back with other nodes) or until the adapter is rebuilt (its config changed).
- A failure holds for :attr:`~EntrypointProbe.retry_after` seconds, then a new probe job asks
  again (someone may have installed Ray meanwhile): at most one job a minute for a broken cluster.
- While the probe job runs, the cluster answers "checking" and takes no work; a probe job still
  unfinished after :attr:`~EntrypointProbe.give_up_after` seconds is stopped and counts as a failure.

Probe jobs show in the cluster's Ray job list, so they are named for what they are
(``sb-probe-<cluster>-<random>``, metadata ``submarine-broker: probe``) and deleted once read. Ray
writes a job back as FAILED when it is deleted before its job monitor lets go of it (about a
second after the end), so a probe job is deleted :attr:`~EntrypointProbe.delete_after` seconds
after it ended, and looked up once more later to delete it again if it came back. The first probe
of an adapter also deletes what earlier probes of the same cluster left behind (a broker restarted
or a config changed before they were cleaned up; one still running is left to end first).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clusters.ray.states import TERMINAL, entrypoint_failure, last_error_line

#: The metadata value ``submarine-broker`` of a probe job (attempts carry "1").
PROBE_MARK = "probe"
#: What the launcher imports on the driver's node.
CHECK = "import ray, pydantic"
_MISSING_MODULE = re.compile(r"No module named '([^']+)'")


def probe_id(cluster: str) -> str:
    """A fresh submission id for a probe job of ``cluster``: ``sb-probe-<cluster>-<8 hex>``."""
    return f"sb-probe-{cluster}-{secrets.token_hex(4)}"


def _missing(error: BaseException) -> bool:
    text = str(error)
    return "status code 404" in text or "does not exist" in text


@dataclass(frozen=True)
class Verdict:
    """What the probe knows: ``ready`` True (it passed), False (it failed) or None (still asking)."""

    ready: bool | None
    message: str = ""


@dataclass
class _Cleanup:
    """A probe job to delete once ``due``; ``deleted`` once a delete went through (then checked)."""

    sid: str
    due: float
    deleted: bool = False
    tries: int = 0


class EntrypointProbe:
    """The entrypoint check of one Ray cluster (one per adapter, so per config).

    ``call(method, *args, **kwargs)`` is one ``JobSubmissionClient`` call (the adapter's, which
    turns connection failures into ClusterUnreachable); :meth:`check` makes blocking calls and
    sleeps, so it runs in a worker thread.
    """

    #: Seconds a failed check holds before another probe job is submitted.
    retry_after: float = 60.0
    #: Seconds after which a probe job that has not ended is stopped and counts as a failure.
    give_up_after: float = 120.0
    #: Seconds between a probe job's end and its deletion (Ray's job monitor must have let go).
    delete_after: float = 5.0
    #: Seconds one check waits for the probe job's end before answering "checking".
    wait: float = 1.5
    #: Seconds between two reads of the probe job's status while waiting.
    poll: float = 0.25
    #: Deletions of one probe job before giving up on it (Ray kept writing it back).
    max_tries: int = 5

    def __init__(
        self,
        cluster: str,
        python: str,
        call: Callable[..., Any],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cluster = cluster
        self.python = python
        self.call = call
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self._verdict: Verdict | None = None
        self._decided = 0.0
        self._stale = False
        self._job: str | None = None  # the probe job in flight
        self._submitted = 0.0
        self._cleanups: list[_Cleanup] = []
        self._swept = False

    def invalidate(self) -> None:
        """The cluster stopped answering: probe again when it answers (its nodes may have changed)."""
        self._stale = True

    @property
    def entrypoint(self) -> str:
        return f"{self.python} -c '{CHECK}'"

    def check(self) -> Verdict:
        """The verdict: kept while it holds, else read from (or asked of) a probe job.

        Raises ClusterUnreachable when the job API does not answer (the adapter's ``call``).
        """
        with self._lock:
            now = self.clock()
            self._clean(now)
            held = self._verdict
            recent = now - self._decided < self.retry_after
            if held is not None and not self._stale and (held.ready or recent):
                return held  # a pass, or a failure too recent to ask again
            if self._job is None:
                failed = self._submit(now)
                if failed is not None:
                    return self._decide(failed, now)
            deadline = now + self.wait
            while True:
                found = self._read(self.clock())
                if found is not None:
                    return found if found.ready is None else self._decide(found, self.clock())
                if self._job is None:  # it vanished: ask again next time
                    return Verdict(None, self._checking("the probe job vanished"))
                if self.clock() >= deadline:
                    return Verdict(None, self._checking(f"Ray job {self._job}"))
                self.sleep(self.poll)

    # -- steps --------------------------------------------------------------------------------

    def _checking(self, detail: str) -> str:
        return f"checking that entrypoint_python {self.python} can {CHECK} ({detail})"

    def _decide(self, verdict: Verdict, now: float) -> Verdict:
        self._verdict, self._decided, self._stale = verdict, now, False
        return verdict

    def _submit(self, now: float) -> Verdict | None:
        """Submit a probe job; a Verdict only when the job API refuses it."""
        if not self._swept:
            self._sweep_leftovers(now)
            self._swept = True
        sid = probe_id(self.cluster)
        try:
            self.call(
                "submit_job",
                entrypoint=self.entrypoint,
                submission_id=sid,
                metadata={"submarine-broker": PROBE_MARK, "cluster": self.cluster},
            )
        except RuntimeError as exc:
            return Verdict(False, f"cannot submit the probe job for entrypoint_python {self.python}: {exc}")
        self._job, self._submitted = sid, now
        return None

    def _read(self, now: float) -> Verdict | None:
        """The probe job's verdict once it ended (scheduling its deletion), else None."""
        sid = self._job
        assert sid is not None
        try:
            info = self.call("get_job_info", sid)
        except RuntimeError as exc:
            if _missing(exc):
                self._job = None
                return None
            raise
        status = str(getattr(info.status, "value", info.status))
        if status not in TERMINAL:
            if now - self._submitted < self.give_up_after:
                return None
            self._stop(sid)
            self._forget(sid, now)
            return Verdict(
                False,
                f"the probe job {sid} checking entrypoint_python {self.python} did not end within "
                f"{self.give_up_after:g}s (status {status})",
            )
        self._forget(sid, now)
        if status == "SUCCEEDED":
            return Verdict(True)
        if status == "STOPPED":  # someone stopped it: no answer; the next check asks again
            return Verdict(None, self._checking(f"Ray job {sid} was stopped"))
        return Verdict(False, self._failure(info.message or ""))

    def _failure(self, message: str) -> str:
        """``entrypoint_python /usr/bin/python3 on cluster ray-east cannot import ray: <the error>``."""
        found = entrypoint_failure(message)
        cause = found.split(": ", 1)[1] if found and ": " in found else last_error_line(message.splitlines())
        missing = _MISSING_MODULE.search(cause)
        what = f"cannot import {missing.group(1)}" if missing else f"cannot run `{CHECK}`"
        where = f"entrypoint_python {self.python} on cluster {self.cluster}"
        return f"{where} {what}: {cause}" if cause else f"{where} {what}"

    def _stop(self, sid: str) -> None:
        with contextlib.suppress(RuntimeError):  # ended meanwhile, or gone: the cleanup copes with both
            self.call("stop_job", sid)

    def _forget(self, sid: str, now: float) -> None:
        if self._job == sid:
            self._job = None
        if all(c.sid != sid for c in self._cleanups):
            self._cleanups.append(_Cleanup(sid, now + self.delete_after))

    def _sweep_leftovers(self, now: float) -> None:
        """Schedule the deletion of the ended probe jobs of this cluster that earlier probes left
        behind (one that still runs may be another broker replica's: left alone)."""
        for job in self.call("list_jobs"):
            meta = job.metadata or {}
            if meta.get("submarine-broker") != PROBE_MARK or meta.get("cluster") != self.cluster:
                continue
            if str(getattr(job.status, "value", job.status)) in TERMINAL:
                self._forget(job.submission_id, now)

    def _clean(self, now: float) -> None:
        """Delete the probe jobs that are due, and check that earlier deletions held."""
        for cleanup in list(self._cleanups):
            if now < cleanup.due:
                continue
            try:
                if cleanup.deleted:
                    self.call("get_job_info", cleanup.sid)  # back again: delete it once more
                    cleanup.deleted = False
                self.call("delete_job", cleanup.sid)
            except RuntimeError as exc:
                if not _missing(exc):  # still running (Ray refuses to delete it): stop it, try later
                    self._stop(cleanup.sid)
                    cleanup.due = now + self.delete_after
                    continue
                if cleanup.deleted:
                    self._cleanups.remove(cleanup)  # gone for good
                    continue
            cleanup.deleted = True
            cleanup.tries += 1
            cleanup.due = now + self.delete_after
            if cleanup.tries > self.max_tries:
                self._cleanups.remove(cleanup)
