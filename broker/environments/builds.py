"""Which cluster has built which environment hash: recorded by the broker (an attempt that ran
with it, a prepare that succeeded), read by placement (the warm-environment score) and by
housekeeping (builds unused for ``environments.keep_days``). Units of work on a session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.environments.model import BUILT, EnvironmentBuild
from broker.state import TERMINAL, now
from broker.workloads.model import Workload
from runtimes.environment import EnvironmentPlan

#: Statuses (as stored) of workloads that may still use their environment.
_ENDED = tuple(status.value for status in TERMINAL)


def record_build(
    session: Session,
    cluster: str,
    env: EnvironmentPlan,
    state: str = BUILT,
    message: str | None = None,
    at: datetime | None = None,
) -> EnvironmentBuild:
    """Insert or update the build of ``env``'s hash on ``cluster`` (used now, too)."""
    stamp = at or now()
    row = session.get(EnvironmentBuild, (cluster, env.hash), with_for_update=True)
    if row is None:
        row = EnvironmentBuild(
            cluster=cluster,
            hash=env.hash,
            state=state,
            name=env.name,
            message=message,
            built_at=stamp,
            last_used_at=stamp,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # another broker recorded it meanwhile: update theirs
            row = session.get(EnvironmentBuild, (cluster, env.hash), populate_existing=True)
            if row is None:
                raise
        else:
            return row
    if state != row.state or state != BUILT:
        row.built_at = stamp
    row.state, row.name, row.message, row.last_used_at = state, env.name, message, stamp
    return row


def touch(session: Session, pairs: Iterable[tuple[str, str]], at: datetime | None = None) -> None:
    """Mark the builds of these (cluster, hash) pairs as used now (work with them was dispatched)."""
    stamp = at or now()
    for cluster, env_hash in set(pairs):
        session.execute(
            update(EnvironmentBuild)
            .where(EnvironmentBuild.cluster == cluster, EnvironmentBuild.hash == env_hash)
            .values(last_used_at=stamp)
        )


def warm_clusters(hashes: Iterable[str]) -> Callable[[Session], dict[str, frozenset[str]]]:
    """For each hash, the clusters where it is built."""
    wanted = sorted(set(hashes))

    def read(session: Session) -> dict[str, frozenset[str]]:
        if not wanted:
            return {}
        found: dict[str, set[str]] = {}
        for cluster, env_hash in session.execute(
            select(EnvironmentBuild.cluster, EnvironmentBuild.hash).where(
                EnvironmentBuild.hash.in_(wanted), EnvironmentBuild.state == BUILT
            )
        ):
            found.setdefault(env_hash, set()).add(cluster)
        return {h: frozenset(c) for h, c in found.items()}

    return read


def builds_of(session: Session, hashes: Iterable[str]) -> list[EnvironmentBuild]:
    """Every build (any state) of these hashes, by cluster."""
    wanted = sorted(set(hashes))
    if not wanted:
        return []
    query = (
        select(EnvironmentBuild).where(EnvironmentBuild.hash.in_(wanted)).order_by(EnvironmentBuild.cluster)
    )
    return list(session.scalars(query).all())


def hashes_in_use(session: Session, hashes: Iterable[str] | None = None) -> set[str]:
    """The environment hashes of workloads that have not ended (a build of one is never dropped)."""
    query = select(Workload.environment_hash).where(
        Workload.environment_hash.is_not(None), Workload.status.not_in(_ENDED)
    )
    if hashes is not None:
        query = query.where(Workload.environment_hash.in_(sorted(set(hashes))))
    return {h for h in session.scalars(query.distinct()).all() if h}


def unused_since(session: Session, before: datetime) -> list[EnvironmentBuild]:
    """Builds last used before ``before`` (failed ones too: their record is all there is)."""
    query = select(EnvironmentBuild).where(EnvironmentBuild.last_used_at < before)
    return list(session.scalars(query.order_by(EnvironmentBuild.last_used_at)).all())


def forget(session: Session, cluster: str, env_hash: str, before: datetime) -> bool:
    """Delete the build record, unless it was used again since ``before`` (then keep it)."""
    row = session.get(EnvironmentBuild, (cluster, env_hash), with_for_update=True)
    if row is None or row.last_used_at >= before:
        return False
    session.delete(row)
    return True
