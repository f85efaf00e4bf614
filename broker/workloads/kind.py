"""The kinds of workload the broker runs."""

from __future__ import annotations

import enum


class Kind(enum.StrEnum):
    """A workload's kind, as stored in the ``kind`` column and shown in messages and policy objects
    (``experiment/<id>``, ``notebook/<id>``, ``serve/<id>``); also the prefix of its ids."""

    EXPERIMENT = "experiment"
    NOTEBOOK = "notebook"
    #: A served model version (``runtimes.serving``): N model-server replicas behind ``/serve/...``.
    SERVE = "serve"

    @property
    def restartable(self) -> bool:
        """An ended workload of this kind may be started again as a new attempt (same id) by its user."""
        return self in (Kind.NOTEBOOK, Kind.SERVE)
