"""Open what the broker keeps: its private data directory, its database (migrated) and its key.

The one way ``serve`` and the commands that act on the database directly (``db upgrade``,
``user add``, ``token create``, ``policy reset``) reach them, so each of them leaves the same
modes behind (see :mod:`broker.private_files`) and uses the same key.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from broker.config.errors import ConfigError
from broker.config.models import BrokerConfig
from broker.private_files import private_database, private_dir
from broker.secret_key import SecretBox
from broker.state import now
from broker.store.database import Database
from broker.store.migrate import upgrade
from broker.store.models import SecretKeyCheck
from broker.workloads.model import Workload

log = logging.getLogger(__name__)

#: The row of :class:`SecretKeyCheck` for the key that encrypts notebook tokens.
KEY_NAME = "secret-key"


def open_storage(config: BrokerConfig, *, verify_key: bool = True) -> tuple[Database, SecretBox]:
    """The migrated database and the secret key (made at the first start); ConfigError when the
    key is not the one the database's secrets were encrypted with (unless not ``verify_key``)."""
    private_dir(config.data_dir)
    private_database(config.effective_database_url)
    box = SecretBox.from_file(config.secret_key_path)
    db = Database(config.effective_database_url)
    try:
        upgrade(db.engine, secrets=box)
        if verify_key:
            db.call(lambda session: check_key(session, box))
    except BaseException:
        db.dispose()
        raise
    return db, box


def check_key(session: Session, box: SecretBox) -> None:
    """Record the key's fingerprint the first time; afterwards refuse another key while anything
    encrypted with the recorded one is stored (with nothing stored, the new key is adopted)."""
    recorded = session.get(SecretKeyCheck, KEY_NAME)
    if recorded is None:
        session.add(SecretKeyCheck(name=KEY_NAME, fingerprint=box.fingerprint, recorded_at=now()))
        return
    if recorded.fingerprint == box.fingerprint:
        return
    encrypted = session.scalar(select(Workload.id).where(Workload.access_token.is_not(None)).limit(1))
    if encrypted is not None:
        raise ConfigError(
            str(box.source or "secret_key_file"),
            f"secret key {box.source} is not the key this database's notebook tokens were encrypted "
            "with: every broker replica sharing the database needs the same secret_key_file (copy "
            "the first replica's key here; if that key is lost, `submarine-broker db reset-secret-key` "
            "adopts this one and clears the tokens it cannot read)",
            key="secret_key_file",
        )
    log.warning("secret key %s differs from the one recorded, which encrypted nothing: adopted", box.source)
    recorded.fingerprint = box.fingerprint
    recorded.recorded_at = now()


def reset_key(session: Session, box: SecretBox) -> int:
    """Adopt ``box``'s key after the recorded one was lost: clear every stored notebook token
    (unreadable without the old key) and record the new key. Returns how many were cleared."""
    result = session.execute(
        update(Workload).where(Workload.access_token.is_not(None)).values(access_token=None)
    )
    cleared = cast(CursorResult[Any], result).rowcount
    recorded = session.get(SecretKeyCheck, KEY_NAME)
    if recorded is None:
        session.add(SecretKeyCheck(name=KEY_NAME, fingerprint=box.fingerprint, recorded_at=now()))
    else:
        recorded.fingerprint, recorded.recorded_at = box.fingerprint, now()
    return int(cleared or 0)
