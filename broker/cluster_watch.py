"""Hot reload of ``clusters.d/``: files added, changed or removed take effect without a restart.

Every broker replica runs :meth:`ClusterWatch.tick` every second or so. A tick lists the folder
and compares each file's mtime and size with the last scan (cheap when nothing changed); only a
file whose stat changed (or that was modified in the last few seconds: two writes within the
file system's timestamp granularity can leave the same mtime and size) is read, and only one
whose content hash changed is parsed.

- A new valid file adds its cluster; a changed valid file gives the cluster a new config and
  adapter, keeping its condition (cordon, drain, health). The new adapter is shown the running
  work (one ``poll`` of the stored handles, from ``active_handles``) before its first health
  check, so the capacity that work holds is counted from the start.
- A file that does not parse or validate is refused: the error (file, line, key, reason; never a
  value from the file) is logged and listed in ``errors``, and the last good definition from that
  file stays live.
- A valid file the broker objects to (``vet``: a local cluster that would run users' work as the
  broker's own Unix user under ``auth: token``) is refused the same way.
- A removed file marks its cluster ``removed`` (state Draining: no new work, running work is
  still watched); the cluster leaves the registry once ``has_work`` says it is idle.
- Two files naming the same cluster: the first by file name wins, the other is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.config.errors import ConfigError
from broker.config.loader import cluster_files, load_cluster_file
from broker.registry import ClusterRegistry, ClusterState
from broker.scheduler.monitor import tracked_on
from broker.state import ON_CLUSTER
from broker.store.database import Database
from broker.workloads.model import Workload
from clusters.base import Handle
from clusters.config import ClusterConfig

log = logging.getLogger(__name__)

HasWork = Callable[[str], Awaitable[bool]]
ActiveHandles = Callable[[str], Awaitable[list[Handle]]]
#: ``(key, reason)`` when this broker must refuse a valid cluster file, else None.
Vet = Callable[[ClusterConfig], "tuple[str, str] | None"]
#: A file modified less than this long ago is re-read even when its mtime and size look unchanged.
_RACY_NS = 3_000_000_000


def workloads_on(db: Database) -> HasWork:
    """``has_work(name)``: does any workload hold work on cluster ``name`` (Accepted with that
    cluster chosen, Created or Running)?"""

    async def has_work(name: str) -> bool:
        def query(session: Session) -> bool:
            found = session.scalar(
                select(Workload.id).where(Workload.cluster == name, Workload.status.in_(ON_CLUSTER)).limit(1)
            )
            return found is not None

        return await db.run(query)

    return has_work


def handles_on(db: Database) -> ActiveHandles:
    """``active_handles(name)``: the handles of the Created and Running workloads on ``name``."""

    async def active_handles(name: str) -> list[Handle]:
        return [Handle.from_json(t.handle) for t in await db.run(tracked_on(name))]

    return active_handles


@dataclass
class _File:
    """What the last scans saw of one file."""

    stat: tuple[int, int] | None  # (mtime_ns, size); None forces a re-read
    digest: str | None = None  # of the content last parsed
    name: str | None = None  # the cluster of its last good definition
    error: ConfigError | None = None  # why its current content is refused


class ClusterWatch:
    """Keeps the registry equal to the files in ``directory``."""

    def __init__(
        self,
        directory: str | Path,
        registry: ClusterRegistry,
        *,
        has_work: HasWork,
        active_handles: ActiveHandles | None = None,
        errors: list[ConfigError] | None = None,
        vet: Vet | None = None,
    ) -> None:
        self.directory = Path(directory)
        #: The broker's own objections to a valid file (a local cluster without run_as under auth: token).
        self.vet = vet
        self.registry = registry
        self.has_work = has_work
        self.active_handles = active_handles
        #: The refused files, kept current in place (the broker context shares this list).
        self.errors: list[ConfigError] = errors if errors is not None else []
        self._files: dict[Path, _File] = {}
        self._fresh: set[str] = set()  # added or changed since the last health check
        self._missing_dir_warned = False

    # -- one pass -----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Apply the folder's changes, let idle removed clusters go, check new ones at once."""
        self.scan()
        await self.sweep()
        fresh, self._fresh = self._fresh, set()
        clusters = [c for c in (self.registry.get(name) for name in sorted(fresh)) if c is not None]
        if clusters:
            await asyncio.gather(*(self._welcome(c) for c in clusters))
        await self.registry.close_retired()

    async def _welcome(self, cluster: ClusterState) -> None:
        """A new or rebuilt adapter: show it the running work, then check its health."""
        if self.active_handles is not None:
            adapter = cluster.adapter
            try:
                handles = await self.active_handles(cluster.name)
                if handles:
                    await asyncio.wait_for(adapter.poll(handles), timeout=self.registry.health_timeout)
            except Exception as exc:  # the monitor's next poll does the same; this is a head start
                log.warning(
                    "cluster %s: first poll of its running work failed (%s)",
                    cluster.name,
                    cluster.config.mask(str(exc)),
                )
        await self.registry.check(cluster, force=True)

    def scan(self) -> bool:
        """Compare the folder with the last scan and apply the differences; True if any."""
        if not self.directory.is_dir():
            # A folder that vanished (or an unmounted share) must not drain every cluster.
            if self._files and not self._missing_dir_warned:
                log.error("clusters folder %s is missing; keeping the clusters as they are", self.directory)
                self._missing_dir_warned = True
            return False
        self._missing_dir_warned = False
        present: dict[Path, tuple[int, int]] = {}
        for path in cluster_files(self.directory):
            try:
                info = path.stat()
            except OSError:
                continue
            present[path] = (info.st_mtime_ns, info.st_size)
        changed = False
        for path in [p for p in self._files if p not in present]:
            self._forget(path, present)
            changed = True
        racy = time.time_ns() - _RACY_NS
        for path, stat in present.items():
            known = self._files.get(path)
            if known is None or known.stat != stat or stat[0] >= racy:
                changed = self._load(path, stat, present) or changed
        if changed:
            self.errors[:] = [f.error for _, f in sorted(self._files.items()) if f.error is not None]
        return changed

    async def sweep(self) -> None:
        """Take removed clusters without work out of the registry."""
        for cluster in self.registry.all():
            if not cluster.removed:
                continue
            try:
                busy = await self.has_work(cluster.name)
            except Exception:
                log.exception("cannot tell whether removed cluster %s still has work", cluster.name)
                continue
            if not busy and cluster.removed and self.registry.get(cluster.name) is cluster:
                self.registry.remove(cluster.name)
                log.info("cluster %s left the registry: its file is gone and it has no work", cluster.name)

    # -- files --------------------------------------------------------------------------------

    def _load(self, path: Path, stat: tuple[int, int], present: dict[Path, tuple[int, int]]) -> bool:
        entry = self._files.setdefault(path, _File(stat=None))
        try:
            raw = path.read_bytes()
        except OSError:
            return False  # gone between listing and reading: the next scan sees it
        entry.stat = stat
        digest = hashlib.sha256(raw).hexdigest()
        if digest == entry.digest:
            return False
        entry.digest = digest
        try:
            config = load_cluster_file(path)
        except ConfigError as exc:
            return self._refuse(entry, exc)
        except Exception as exc:  # a kind whose module fails to import, and the like
            return self._refuse(entry, ConfigError(str(path), f"cannot load the file ({type(exc).__name__})"))
        objection = self.vet(config) if self.vet is not None else None
        if objection is not None:
            key, reason = objection
            return self._refuse(entry, ConfigError(str(path), reason, key=key))
        owner = next(
            (p for p, f in self._files.items() if p != path and p in present and f.name == config.name),
            None,
        )
        if owner is not None:
            reason = f"cluster name is already used by {owner.name}"
            return self._refuse(entry, ConfigError(str(path), reason, key="name"))
        existing = self.registry.get(config.name)
        try:
            cluster = self.registry.add(config, source=str(path))
        except Exception as exc:
            reason = f"the {config.kind} adapter refused this configuration ({type(exc).__name__})"
            return self._refuse(entry, ConfigError(str(path), reason))
        if existing is None:
            log.info("cluster %s added from %s", config.name, path)
        else:
            log.info("cluster %s updated from %s (its condition is kept)", config.name, path)
        previous, entry.name, entry.error = entry.name, config.name, None
        if previous is not None and previous != config.name:
            self._release(previous, present)  # the file now names another cluster
        self._fresh.add(cluster.name)
        return True

    def _refuse(self, entry: _File, error: ConfigError) -> bool:
        entry.error = error
        live = entry.name is not None and entry.name in self.registry
        kept = f"; cluster {entry.name} keeps its last good definition" if live else ""
        log.error("cluster file refused: %s%s", error, kept)
        return True

    def _forget(self, path: Path, present: dict[Path, tuple[int, int]]) -> None:
        entry = self._files.pop(path)
        log.info("cluster file %s was removed", path)
        if entry.name is not None:
            self._release(entry.name, present)

    def _release(self, name: str, present: dict[Path, tuple[int, int]]) -> None:
        """No file defines ``name`` any more: drain it, and let refused files claim the name again."""
        if any(p in present and f.name == name for p, f in self._files.items()):
            return
        for entry in self._files.values():
            if entry.error is not None:
                entry.stat = entry.digest = None  # re-read: one may be a duplicate of this name
        cluster = self.registry.get(name)
        if cluster is not None and not cluster.removed:
            cluster.removed = True
            log.warning(
                "cluster %s: no file defines it any more; it takes no new work and leaves once idle", name
            )
