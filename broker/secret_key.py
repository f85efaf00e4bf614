"""The broker's secret key, and what it encrypts: values the broker must read back later (a
notebook's Jupyter token) and must therefore not hash, but must never store in clear.

The key is a Fernet key (``cryptography``: AES-128-CBC with an HMAC-SHA256 over it, so a changed
ciphertext is refused rather than decrypted to garbage) kept in a file of its own,
``secret_key_file`` (default ``<data_dir>/secret.key``): created 0600 at the first start, tightened
to 0600 when found looser. Broker replicas that share one database (PostgreSQL) must share the
key too: point every replica's ``secret_key_file`` at the same key. The database keeps an HMAC of
the key (:class:`broker.store.models.SecretKeyCheck`), so a replica holding another key refuses to
start instead of failing later on every notebook.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from broker.config.errors import ConfigError
from broker.private_files import private_file

#: What the stored fingerprint is an HMAC of (never the key itself).
_CHECK = b"submarine-broker secret key check"


class SecretUnreadable(Exception):
    """A stored ciphertext this key cannot decrypt (another key, or a damaged value)."""


def load_or_create_key(path: Path) -> bytes:
    """The key in ``path``, created there (0600, never overwriting one) when there is none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key() + b"\n")
    private_file(path)
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            str(path), f"cannot read the secret key: {exc.strerror}", key="secret_key_file"
        ) from None
    try:
        Fernet(key)
    except ValueError:
        raise ConfigError(
            str(path),
            "not a secret key (32 url-safe base64-encoded bytes, as the broker writes at its first start)",
            key="secret_key_file",
        ) from None
    return key


class SecretBox:
    """Encrypts and decrypts short texts with the broker's key."""

    def __init__(self, key: bytes, *, source: Path | None = None) -> None:
        self._fernet = Fernet(key)
        self._key = key
        #: The key file, for messages.
        self.source = source

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        """The box of the key in ``path`` (created there at the first start)."""
        return cls(load_or_create_key(path), source=path)

    @classmethod
    def ephemeral(cls) -> SecretBox:
        """A box with a fresh key held in memory only (tests, tools that store nothing)."""
        return cls(Fernet.generate_key())

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            where = f" in {self.source}" if self.source else ""
            raise SecretUnreadable(
                f"a stored secret cannot be decrypted with the secret key{where}: every broker replica "
                "needs the same secret_key_file"
            ) from None

    def derive(self, purpose: str) -> bytes:
        """A key of its own for ``purpose`` (signing run tokens), derived from the broker's key."""
        return hmac.new(
            self._key, b"submarine-broker derived key: " + purpose.encode(), hashlib.sha256
        ).digest()

    @property
    def fingerprint(self) -> str:
        """An HMAC of a constant under the key: tells two keys apart, reveals nothing of either."""
        return hmac.new(self._key, _CHECK, hashlib.sha256).hexdigest()
