"""Which replicas of which serve the proxy sends requests to: an in-memory table, no database read.

The serving service publishes a serve's ready replicas (:meth:`ServeTable.publish`) when they become
ready, and again at each change (a rollout switches to the new version's set in one assignment);
:meth:`ServeTable.withdraw` removes a serve that stopped. A serve not published in this process (a
broker that just started, or another broker replica answering) is asked of ``resolve`` once and
kept for :data:`RESOLVE_TTL` seconds. Within a set, requests go round robin; a replica that failed
is left out until it answers ``GET /ping`` again (a background check per failed replica).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: Seconds a serve looked up through ``resolve`` (not published here) is kept before it is asked again.
RESOLVE_TTL = 2.0
#: Seconds between two ``/ping`` checks of a replica taken out.
RECHECK_INTERVAL = 0.5


@dataclass(frozen=True)
class ServeTarget:
    """A serve as the proxy sees it: who it is, the token its model servers expect, its ready replicas."""

    serve_id: str
    namespace: str
    name: str
    token: str = field(repr=False)  # the model servers' own token: never in a log line
    endpoints: tuple[str, ...]  # base URLs of ready replicas, "http://127.0.0.1:8123" (no path)


#: Looks a serve up where this process has not been told of it (the serving service, from the database).
Resolver = Callable[[str, str], Awaitable[ServeTarget | None]]


class Replica:
    """One model server: its base URL, whether it is taken out, and its requests in flight."""

    __slots__ = ("url", "down", "in_flight", "_recheck")

    def __init__(self, url: str) -> None:
        self.url = url
        self.down = False
        self.in_flight = 0
        self._recheck: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Replica({self.url!r}, down={self.down}, in_flight={self.in_flight})"


class ReplicaSet:
    """A serve's replicas in use (one version): round robin over those that answer."""

    def __init__(self, target: ServeTarget, replicas: Sequence[Replica]) -> None:
        self.target = target
        self.replicas = list(replicas)
        self._next = 0

    def pick(self, avoid: Sequence[Replica] = ()) -> Replica | None:
        """The next replica in turn that is not down and not in ``avoid``; None when none is left."""
        count = len(self.replicas)
        for step in range(count):
            replica = self.replicas[(self._next + step) % count]
            if not replica.down and replica not in avoid:
                self._next = (self._next + step + 1) % count
                return replica
        return None


@dataclass
class _Resolved:
    found: ReplicaSet | None
    until: float


class ServeTable:
    """The serves this broker proxies to, by ``(namespace, name)``; see the module docstring."""

    def __init__(
        self,
        resolve: Resolver | None = None,
        *,
        probe: Callable[[str], Awaitable[bool]] | None = None,
        recheck_interval: float = RECHECK_INTERVAL,
        resolve_ttl: float = RESOLVE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._published: dict[tuple[str, str], ReplicaSet] = {}
        self._resolved: dict[tuple[str, str], _Resolved] = {}
        self._replicas: dict[str, Replica] = {}  # by URL: health and load outlive a re-publish
        self.resolve = resolve
        self.probe = probe
        self._recheck_interval = recheck_interval
        self._ttl = resolve_ttl
        self._clock = clock

    def publish(self, target: ServeTarget) -> ReplicaSet:
        """Send ``target.namespace/name``'s requests to ``target.endpoints`` from now on (one switch)."""
        key = (target.namespace, target.name)
        replicas = [self._replicas.setdefault(url, Replica(url)) for url in target.endpoints]
        chosen = self._published[key] = ReplicaSet(target, replicas)
        self._resolved.pop(key, None)
        self._forget_unused()
        return chosen

    def published(self, namespace: str, name: str) -> ReplicaSet | None:
        """The replica set published for ``namespace/name`` in this process, if any."""
        return self._published.get((namespace, name))

    def withdraw(self, namespace: str, name: str) -> None:
        """Stop proxying to ``namespace/name`` (stopped or deleted); the next request asks ``resolve``."""
        self._published.pop((namespace, name), None)
        self._resolved.pop((namespace, name), None)
        self._forget_unused()

    def invalidate(self, namespace: str, name: str) -> None:
        """Forget what ``resolve`` said of ``namespace/name`` (another broker changed it)."""
        self._resolved.pop((namespace, name), None)

    async def lookup(self, namespace: str, name: str) -> ReplicaSet | None:
        """The replicas of ``namespace/name``: published here, else asked of ``resolve`` (cached briefly)."""
        key = (namespace, name)
        found = self._published.get(key)
        if found is not None:
            return found
        cached = self._resolved.get(key)
        now = self._clock()
        if cached is not None and cached.until > now:
            return cached.found
        target = await self.resolve(namespace, name) if self.resolve is not None else None
        chosen = None
        if target is not None:
            replicas = [self._replicas.setdefault(url, Replica(url)) for url in target.endpoints]
            chosen = ReplicaSet(target, replicas)
        if key not in self._published:  # a publish while resolving wins
            self._resolved[key] = _Resolved(chosen, now + self._ttl)
        return chosen

    def replica(self, url: str) -> Replica | None:
        """The replica known at ``url`` (tests and rollouts look at its load and health)."""
        return self._replicas.get(url)

    def take_out(self, replica: Replica) -> None:
        """Leave ``replica`` out of round robin until it answers ``/ping`` again (a background check)."""
        if replica.down:
            return
        replica.down = True
        log.warning("model server %s failed: taken out until it answers /ping", replica.url)
        if self.probe is not None:
            replica._recheck = asyncio.create_task(
                self._recheck(replica), name=f"serve-recheck {replica.url}"
            )

    async def _recheck(self, replica: Replica) -> None:
        assert self.probe is not None
        while replica.down and self._replicas.get(replica.url) is replica:
            await asyncio.sleep(self._recheck_interval)
            if await self.probe(replica.url):
                replica.down = False
                log.info("model server %s answers /ping again: back in round robin", replica.url)
        replica._recheck = None

    async def drained(self, replicas: Sequence[Replica], *, timeout: float) -> bool:
        """Wait until no request is in flight to any of ``replicas``; False when ``timeout`` passed first."""
        deadline = self._clock() + timeout
        while any(r.in_flight for r in replicas):
            if self._clock() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def _forget_unused(self) -> None:
        """Drop replicas no serve uses any more (their rechecks end)."""
        used = {r.url for s in self._published.values() for r in s.replicas}
        used |= {r.url for c in self._resolved.values() if c.found for r in c.found.replicas}
        for url, replica in list(self._replicas.items()):
            if url not in used:
                del self._replicas[url]
                if replica._recheck is not None:
                    replica._recheck.cancel()

    async def aclose(self) -> None:
        """Cancel the background ``/ping`` checks."""
        tasks = [r._recheck for r in self._replicas.values() if r._recheck is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
