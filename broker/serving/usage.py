"""Which registered versions are served, and by what: the model registry's view of serves.

A serve counts until it is deleted (a stopped serve may be started again and would need its
version's files then), so a version is "served" by every serve that is not Deleted; during a
rollout, both the version rolled out to and the one still serving until the switch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from broker.state import Status
from broker.workloads.kind import Kind
from broker.workloads.model import Workload

_SERVES = select(
    Workload.id,
    Workload.name,
    Workload.namespace,
    Workload.status,
    Workload.cluster,
    Workload.spec,
    Workload.access,
).where(Workload.kind == Kind.SERVE.value, Workload.status != Status.DELETED.value)


@dataclass(frozen=True)
class ServedOn:
    """One serve of a version: its id, ``namespace/name``, status and cluster (None before placement)."""

    id: str
    name: str
    namespace: str
    status: str
    cluster: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "namespace": self.namespace,
            "status": self.status,
            "cluster": self.cluster,
        }

    def describe(self) -> str:
        where = f" on {self.cluster}" if self.cluster else ""
        return f"serve {self.id} ({self.namespace}/{self.name}, {self.status}{where})"


def served_versions(conn: Any, pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], list[ServedOn]]:
    """The serves (not Deleted) of each ``(model_key, version)`` in ``pairs``, oldest id first."""
    wanted = set(pairs)
    found: dict[tuple[int, int], list[ServedOn]] = {p: [] for p in wanted}
    if not wanted:
        return found
    for row in conn.execute(_SERVES.order_by(Workload.id)):
        for model in _models(row):
            try:
                key = (int(model["modelKey"]), int(model["version"]))
            except (KeyError, TypeError, ValueError):
                continue
            if key in found:
                found[key].append(ServedOn(row.id, row.name, row.namespace, row.status, row.cluster))
    return found


def _models(row: Any) -> list[dict[str, Any]]:
    """The versions a serve row runs: its spec's, and the one serving until a rollout's switch."""
    models = [(row.spec or {}).get("model") or {}]
    previous = ((row.access or {}).get("rollout") or {}).get("from")
    if previous and previous.get("version") != models[0].get("version"):
        models.append(previous)
    return models


def served_models(conn: Any, model_key: int) -> list[ServedOn]:
    """Every serve (not Deleted) of any version of the model ``model_key``."""
    served: list[ServedOn] = []
    for row in conn.execute(_SERVES.order_by(Workload.id)):
        if any(str(model.get("modelKey")) == str(model_key) for model in _models(row)):
            served.append(ServedOn(row.id, row.name, row.namespace, row.status, row.cluster))
    return served
