"""Notebooks' Jupyter tokens: made per attempt's server, kept only encrypted (see
:mod:`broker.secret_key`), decrypted where the broker talks to the server (dispatch hands it to
the plan, the watch and the proxy present it, log lines are scrubbed of it)."""

from __future__ import annotations

import secrets

from broker.secret_key import SecretBox
from broker.workloads.model import Workload


class NotebookTokens:
    """New tokens as stored (encrypted), and the token of a stored notebook."""

    def __init__(self, box: SecretBox) -> None:
        self.box = box

    def new(self) -> str:
        """A fresh token (256 bits), encrypted for the ``access_token`` column."""
        return self.box.encrypt(secrets.token_urlsafe(32))

    def reveal(self, stored: str | None) -> str | None:
        """The token an ``access_token`` value holds (SecretUnreadable for another key's)."""
        return self.box.decrypt(stored) if stored else None

    def of(self, row: Workload) -> str | None:
        """The notebook's token, or None when it has none."""
        return self.reveal(row.access_token)
