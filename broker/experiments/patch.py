"""``PATCH /api/v1/experiment/{id}`` (the Submarine SDK's ``patch_experiment``): the units of work.

While an experiment is ``Accepted`` and no dispatcher has claimed it (no cluster chosen), its spec
may be replaced whole: the replacement takes a new attempt uid, and the dispatcher only claims a
row whose uid is still the one it read, so a dispatch pass that read the old spec can never submit
it. Once dispatched, only ``meta.tags`` may change: they are bookkeeping, not part of what runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from broker.errors import Conflict, NotFound
from broker.experiments.views import SECRET_MASK
from broker.ids import new_uid
from broker.state import Status, now, record
from broker.workloads.kind import Kind
from broker.workloads.model import Workload

TAGS = ("meta", "tags")


def in_namespace(document: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The document with ``meta.namespace`` set to ``namespace`` when it names none (a patch keeps
    the experiment where it is unless it says otherwise)."""
    meta = document.get("meta")
    if isinstance(meta, dict) and meta.get("namespace") is None:
        return {**document, "meta": {**meta, "namespace": namespace}}
    return document


def keep_secrets(new: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """A git password sent back masked (as GET shows it) means "unchanged": keep the stored one."""
    git = (new.get("code") or {}).get("git") or {}
    if git.get("password") != SECRET_MASK:
        return new
    password = ((stored.get("code") or {}).get("git") or {}).get("password")
    return {**new, "code": {**new["code"], "git": {**git, "password": password}}}


def changed_fields(old: Any, new: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The paths (``("meta", "cmd")``) where two stored specs differ, objects compared key by key."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[tuple[str, ...]] = []
        for key in sorted(set(old) | set(new), key=str):
            found += changed_fields(old.get(key), new.get(key), (*path, str(key)))
        return found
    return [] if old == new else [path]


def dotted(paths: list[tuple[str, ...]]) -> str:
    return ", ".join(".".join(path) for path in paths)


def _live(session: Session, experiment_id: str) -> Workload:
    row = session.get(Workload, experiment_id, with_for_update=True)
    if row is None or row.kind != Kind.EXPERIMENT or row.status == Status.DELETED.value:
        raise NotFound(f"Not found experiment: {experiment_id}")
    return row


def replace_spec(
    experiment_id: str,
    read_uid: str,
    spec: dict[str, Any],
    *,
    name: str,
    framework: str,
    user: str,
    environment: dict[str, Any] | None = None,
) -> Callable[[Session], Workload | None]:
    """Replace the spec of a still-unclaimed Accepted experiment; None when it moved on meanwhile
    (claimed by a dispatcher, patched by someone else), so the caller can look again.
    ``environment`` holds the pinned-environment columns of the new spec (:func:`pinned_columns`)."""

    def replace(session: Session) -> Workload | None:
        row = _live(session, experiment_id)
        if not replaceable(row) or row.uid != read_uid:
            return None
        changes = changed_fields(row.spec, spec)
        if not changes:
            return row
        row.spec = spec
        row.name = name
        row.framework = framework
        if environment is not None:
            row.environment = environment["environment"]
            row.environment_hash = environment["environment_hash"]
        row.uid = new_uid()  # a dispatch pass that read the old spec no longer matches the row
        row.placement = None
        row.status_message = None
        row.dispatch_tries = 0
        row.next_dispatch_at = None
        row.updated_at = now()
        record(session, row, f"spec replaced by {user} (changed: {dotted(changes)}); placing it again")
        return row

    return replace


def replaceable(row: Workload) -> bool:
    """Accepted and not claimed by a dispatcher: its spec may still be replaced whole."""
    return row.status == Status.ACCEPTED.value and row.cluster is None


def retag(experiment_id: str, spec: dict[str, Any], *, user: str) -> Callable[[Session], Workload | None]:
    """Apply a patch to a dispatched experiment: only ``meta.tags`` may differ from its spec, else
    409 naming the fields. None when it is replaceable again (a failover put it back to Accepted)."""

    def apply(session: Session) -> Workload | None:
        row = _live(session, experiment_id)
        if replaceable(row):
            return None
        changes = changed_fields(row.spec, spec)
        others = [path for path in changes if path != TAGS]
        if others:
            state = row.status
            if row.status == Status.ACCEPTED.value:
                state = f"being submitted to cluster {row.cluster}"
            raise Conflict(
                f"experiment {experiment_id} is {state}: once dispatched only meta.tags may change, "
                f"and this patch changes {dotted(others)}"
            )
        if not changes:
            return row
        before = row.spec["meta"].get("tags") or []
        after = spec["meta"].get("tags") or []
        row.spec = {**row.spec, "meta": {**row.spec["meta"], "tags": after}}
        row.updated_at = now()
        record(session, row, f"tags changed by {user}: {before} -> {after}")
        return row

    return apply
