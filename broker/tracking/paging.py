"""Opaque page tokens: base64 of a small JSON object holding the next page's offset."""

from __future__ import annotations

import base64
import binascii
import json

from broker.api.mlflow_errors import invalid


def encode(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode(token: str | None) -> int:
    """The offset a token names (0 for none); 400 for a token this store did not hand out."""
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        offset = data["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeEncodeError):
        raise invalid(f"Invalid page token: {token[:60]!r}") from None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0 or offset > 2**62:
        raise invalid(f"Invalid page token: {token[:60]!r}")
    return offset


def next_token(offset: int, returned: int, limit: int, more: bool) -> str | None:
    """The token of the page after one of ``returned`` items read from ``offset`` (None: the last)."""
    return encode(offset + returned) if more and returned >= limit else None
