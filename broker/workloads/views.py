"""JSON shapes every workload kind shares: Submarine's time format and the event history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from broker.workloads.model import Event


def fmt_time(value: datetime | None) -> str | None:
    """Submarine's time format: ``2023-09-02T02:40:01Z`` (UTC, seconds)."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def event_json(event: Event) -> dict[str, Any]:
    """One event of a workload's history: when, the move (``to`` is null for a note), why, which attempt."""
    return {
        "at": event.at.isoformat().replace("+00:00", "Z"),
        "from": event.from_status,
        "to": event.to_status,
        "reason": event.reason,
        "attempt": event.attempt,
    }


def pinned_environment_json(pinned: dict[str, Any] | None) -> dict[str, Any] | None:
    """The environment a workload pinned at submission: ``{name, revision, hash}`` (``inline`` for
    a spec's own), or None when it installs nothing."""
    if not pinned:
        return None
    return {"name": pinned.get("name"), "revision": pinned.get("revision"), "hash": pinned.get("hash")}
