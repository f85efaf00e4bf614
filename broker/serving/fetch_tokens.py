"""Fetch tokens: the ``SUBMARINE_MODEL_FETCH_TOKEN`` a model server downloads its version with.

A fetch token names the serve (workload id), the attempt (uid) and the registered version
(``registry/<model_key>/<version>``), signed with a key derived from the broker's secret key:
nothing is stored and a token cannot be altered to name another version. It reaches only GET
requests of the MLflow artifact API under that version's folder, speaks for the serve's owner
(whose ``read`` on the model still decides), and lives while the serve's attempt does.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from urllib.parse import parse_qs

from sqlalchemy import bindparam, select
from starlette.types import Scope

from broker.artifacts.store import InvalidArtifactPath, clean_path
from broker.secret_key import SecretBox
from broker.store.database import Database
from broker.workloads.model import Workload
from runtimes.serving import registry_path

PREFIX = "sbf_"
_TOKEN = re.compile(
    r"^sbf_(?P<uid>[0-9a-f]{32})\.(?P<key>\d{1,18})\.(?P<version>\d{1,9})"
    r"\.(?P<workload>[A-Za-z0-9_-]{1,64})\.(?P<sig>[A-Za-z0-9_-]{43})$"
)
_ARTIFACTS = ("/api/2.0/mlflow-artifacts/artifacts", "/ajax-api/2.0/mlflow-artifacts/artifacts")
_LIVE = select(Workload.uid, Workload.status, Workload.owner).where(Workload.id == bindparam("workload_id"))
_LIVE_STATUSES = ("Accepted", "Created", "Running")


@dataclass(frozen=True)
class FetchGrant:
    """What a genuine fetch token names."""

    workload_id: str
    uid: str
    model_key: int
    version: int

    @property
    def folder(self) -> str:
        return registry_path(str(self.model_key), self.version)


class FetchTokens:
    """Issues and checks fetch tokens with the broker's key."""

    def __init__(self, box: SecretBox) -> None:
        self._key = box.derive("serve fetch tokens")

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, workload_id: str, uid: str, model_key: int, version: int) -> str:
        """The token of the serve ``workload_id``'s attempt ``uid`` for one registered version."""
        payload = f"{uid}.{model_key}.{version}.{workload_id}"
        return f"{PREFIX}{payload}.{self._sign(payload)}"

    def verify(self, token: str) -> FetchGrant | None:
        """What a well-formed, genuine token names (alive or not), else None."""
        match = _TOKEN.match(token)
        if match is None:
            return None
        payload = token[len(PREFIX) : match.start("sig") - 1]
        if not hmac.compare_digest(self._sign(payload), match.group("sig")):
            return None
        return FetchGrant(
            match.group("workload"), match.group("uid"), int(match.group("key")), int(match.group("version"))
        )

    async def owner(self, db: Database, grant: FetchGrant) -> str | None:
        """The serve's owner while the token's attempt lives; None once it has ended or was replaced."""
        row = await db.first(_LIVE, {"workload_id": grant.workload_id})
        if row is None:
            return None
        uid, status, owner = row
        if uid != grant.uid or status not in _LIVE_STATUSES:
            return None
        return str(owner)


def reaches(scope: Scope, grant: FetchGrant) -> bool:
    """Whether the request is a read of the artifact API inside the grant's version folder."""
    if scope.get("type") != "http" or scope.get("method") not in ("GET", "HEAD"):
        return False
    path: str = scope.get("path", "")
    for prefix in _ARTIFACTS:
        if path in (prefix, prefix + "/"):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            return _inside(query.get("path", [""])[0], grant)
        if path.startswith(prefix + "/"):
            return _inside(path[len(prefix) + 1 :], grant)
    return False


def _inside(raw: str, grant: FetchGrant) -> bool:
    try:
        cleaned = clean_path(raw, folder=True)
    except InvalidArtifactPath:
        return False
    return cleaned == grant.folder or cleaned.startswith(grant.folder + "/")
