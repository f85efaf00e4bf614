"""The proxy's side of a rollout: switch a serve to a new set of replicas once they all answer.

The serving service starts the new version's replicas, then calls :func:`switch_when_ready`: it
waits until each new replica answers ``GET /ping``, publishes the new set in one assignment (the
next request goes there), waits until the requests in flight to the old replicas have ended, and
returns; only then does the service stop the old replicas, so no request is refused on the way.
If the new replicas never become ready, nothing is switched and the old ones keep serving.
"""

from __future__ import annotations

import asyncio
import time

from broker.serving.proxy import ServeProxy
from broker.serving.replicas import ServeTarget


class NotReady(Exception):
    """The new replicas did not all answer ``/ping`` in time: the serve still uses its old ones."""


async def switch_when_ready(
    proxy: ServeProxy,
    target: ServeTarget,
    *,
    ready_timeout: float = 300.0,
    drain_timeout: float = 60.0,
    interval: float = 0.2,
) -> bool:
    """Switch ``target.namespace/name`` to ``target.endpoints`` once each answers ``/ping``.

    Returns whether the old replicas drained within ``drain_timeout`` (they may be stopped either
    way: a request still running on them past that is the caller's to lose). Raises
    :class:`NotReady` when a new replica did not answer within ``ready_timeout``."""
    deadline = time.monotonic() + ready_timeout
    waiting = list(target.endpoints)
    while waiting:
        answers = await asyncio.gather(*(proxy.ping(url) for url in waiting))
        waiting = [url for url, ready in zip(waiting, answers, strict=True) if not ready]
        if not waiting:
            break
        if time.monotonic() >= deadline:
            raise NotReady(
                f"{len(waiting)} of {len(target.endpoints)} new model servers never answered /ping"
            )
        await asyncio.sleep(interval)
    old = proxy.table.published(target.namespace, target.name)
    proxy.table.publish(target)
    leaving = [r for r in (old.replicas if old else []) if r.url not in target.endpoints]
    return await proxy.table.drained(leaving, timeout=drain_timeout)
