"""The kinds of workload the broker runs."""

from __future__ import annotations

import enum


class Kind(enum.StrEnum):
    """A workload's kind, as stored in the ``kind`` column and shown in messages and policy objects
    (``experiment/<id>``, ``notebook/<id>``); also the prefix of its ids."""

    EXPERIMENT = "experiment"
    NOTEBOOK = "notebook"

    @property
    def restartable(self) -> bool:
        """An ended workload of this kind may be started again as a new attempt (same id) by its user."""
        return self is Kind.NOTEBOOK
