"""The safety net behind the explicit masking of cluster messages: every secret of every cluster
this process has registered is masked, with :func:`clusters.secrets.mask`, in whatever the broker
writes down on its own: its log (a filter on every log handler, tracebacks included) and the texts
it stores with a workload (events, ``reason``, ``statusMessage``: see :mod:`broker.store.models`).

Each message about a cluster is masked with that cluster's config where it is made (registry,
dispatch, monitor, failover, services); this catches a path that forgot, or a secret of one
cluster quoted in a message about another. Secrets are remembered for the life of the process,
so a removed or edited cluster's old secrets stay masked too.
"""

from __future__ import annotations

import logging
import threading

from clusters.config import ClusterConfig
from clusters.secrets import mask

_known: frozenset[str] = frozenset()
_lock = threading.Lock()


def remember(config: ClusterConfig) -> None:
    """Mask ``config``'s secrets from now on, everywhere."""
    remember_values(config.secret_values())


def remember_values(values: frozenset[str]) -> None:
    """Mask these secret values (a registry's credentials) from now on, everywhere."""
    global _known
    if values <= _known:
        return
    with _lock:
        _known = _known | values


def redact(text: str) -> str:
    """``text`` with every remembered secret, and the userinfo of every URL, masked."""
    return mask(text, _known)


def redact_optional(text: str | None) -> str | None:
    return redact(text) if text else text


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message and traceback before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: leave it to the handler's own error report
            return True
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Put the filter on every handler configured now (the root's, uvicorn's), once each."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
