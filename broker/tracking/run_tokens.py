"""Run tokens: the ``MLFLOW_TRACKING_TOKEN`` each replica of an experiment attempt is given.

A run token names the run (the attempt's uid), its tracking experiment, the replica holding it
and the workload, signed with a key derived from the broker's secret key: nothing is stored, and
a token cannot be altered to name another run. It is alive while its attempt is: the workload's
current attempt is still that uid and has not ended (one primary-key read per request, so it dies
on every broker replica at once when the attempt ends or is replaced).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from base64 import urlsafe_b64encode
from dataclasses import dataclass

from sqlalchemy import bindparam, select

from broker.secret_key import SecretBox
from broker.store.database import Database
from broker.tracking.scope import RunScope
from broker.workloads.model import Workload

PREFIX = "sbr_"
_TOKEN = re.compile(
    r"^sbr_(?P<run>[0-9a-f]{32})\.(?P<experiment>\d{1,18})\.(?P<replica>[A-Za-z0-9_-]{0,64})"
    r"\.(?P<workload>[A-Za-z0-9_-]{1,64})\.(?P<sig>[A-Za-z0-9_-]{43})$"
)
_LIVE = select(Workload.uid, Workload.status, Workload.owner).where(Workload.id == bindparam("workload_id"))
_ENDED = ("Succeeded", "Failed", "Deleted")


@dataclass(frozen=True)
class RunCaller:
    """Who a live run token speaks for: the experiment's owner, within the run's scope."""

    owner: str
    scope: RunScope


class RunTokens:
    """Issues and checks run tokens with the broker's key."""

    def __init__(self, box: SecretBox) -> None:
        self._key = box.derive("run tokens")

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, run_id: str, experiment_id: int, replica: str, workload_id: str) -> str:
        """The token of ``replica`` (``worker-1``) of the attempt whose run is ``run_id``."""
        payload = f"{run_id}.{experiment_id}.{replica}.{workload_id}"
        return f"{PREFIX}{payload}.{self._sign(payload)}"

    def verify(self, token: str) -> tuple[str, RunScope] | None:
        """The workload and scope a well-formed, genuine token names (alive or not), else None."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        payload = token[len(PREFIX) : match.start("sig") - 1]
        if not hmac.compare_digest(self._sign(payload), match.group("sig")):
            return None
        scope = RunScope(match.group("run"), int(match.group("experiment")), match.group("replica") or None)
        return match.group("workload"), scope

    async def caller(self, db: Database, token: str) -> RunCaller | None:
        """The caller a token speaks for while its attempt lives; None once it has ended."""
        verified = self.verify(token)
        if verified is None:
            return None
        workload_id, scope = verified
        row = await db.first(_LIVE, {"workload_id": workload_id})
        if row is None:
            return None
        uid, status, owner = row
        if uid != scope.run_id or status in _ENDED:
            return None
        return RunCaller(owner, scope)
