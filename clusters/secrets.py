"""The secrets of a cluster's config, and the one function that masks them in any text.

A cluster file's secrets are the values of its kind's ``secret_fields`` (a Kubernetes or Slurm
token, Ray's ``headers``), and the credentials in the userinfo of any URL it holds (``address``,
``rest_url``, ``rm_url``, ...: ``http://admin:${RAY_TOKEN}@host``). Whatever renders a cluster's
config or a message about a cluster (its health, a refused submit, a failed poll, a log line)
passes it through :func:`mask`, which replaces each of them with :data:`MASK`, and also masks the
userinfo of every URL in the text, known or not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from clusters.config import ClusterConfig

MASK = "******"
#: Shorter values are not masked inside free text, where they would garble ordinary words; they
#: are still masked where they stand as a field or a URL's userinfo.
MIN_SECRET_LENGTH = 4
#: ``scheme://userinfo@``: the userinfo stops at the first ``/``, ``@``, whitespace or quote.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s\"'<>]+)@")
#: ``Bearer abc``, ``Basic abc``, ``token abc``: the credential after an authorization scheme.
_AUTH_SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9_-]*\s+(?P<credential>\S+)\s*$")


def mask_url(text: str) -> str:
    """``text`` with the userinfo of every URL in it masked: ``http://******@host:8265``."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)


def _userinfo_secrets(text: str) -> Iterator[str]:
    """The credentials in the userinfo of each URL in ``text``: ``user:password`` and the password,
    or a lone user part (``http://<token>@host``), raw and percent-decoded."""
    for match in _USERINFO.finditer(text):
        userinfo = match["userinfo"]
        user, colon, password = userinfo.partition(":")
        found = [userinfo, password] if colon else [user]
        for value in found:
            yield value
            yield unquote(value)


def _value_secrets(value: Any) -> Iterator[str]:
    """Every string in a secret field's value (a dict's values, a list's items), and the credential
    of an ``Authorization``-style ``<scheme> <credential>`` value alone."""
    if isinstance(value, str):
        yield value
        scheme = _AUTH_SCHEME.match(value)
        if scheme:
            yield scheme["credential"]
    elif isinstance(value, dict):
        for item in value.values():
            yield from _value_secrets(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _value_secrets(item)
    elif value is not None and not isinstance(value, bool | int | float):
        yield str(value)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def secret_values(config: ClusterConfig) -> frozenset[str]:
    """Every secret a cluster's config holds (see the module's docstring)."""
    data = config.model_dump(mode="json")
    found: set[str] = set()
    for key in config.secret_fields:
        found.update(_value_secrets(data.get(key)))
    for key, value in data.items():
        if key not in config.secret_fields:
            for text in _strings(value):
                found.update(_userinfo_secrets(text))
    return frozenset(v for v in found if v and v.strip())


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret (longest first, so a value holding another is
    masked whole) replaced by :data:`MASK`, and the userinfo of every URL masked."""
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return mask_url(text)


def public_view(config: ClusterConfig) -> dict[str, Any]:
    """The config for the API and logs: secret fields replaced by :data:`MASK` whole, and every
    secret masked wherever else it appears (a URL's userinfo, a value repeated in another field)."""
    secrets = secret_values(config)

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return mask(value, secrets) if value not in secrets else MASK
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    data = config.model_dump(mode="json")
    for key in config.secret_fields:
        if data.get(key) is not None:
            data[key] = MASK
    return {key: clean(value) for key, value in data.items()}
