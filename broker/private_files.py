"""Files only the broker's user may read: its data directory (0700), the SQLite database with its
-wal/-shm/-journal (0600) and the secret key (0600).

Modes are set explicitly rather than through a process-wide umask, which would also reach what
clusters on this host start. SQLite creates -wal and -shm with the main file's mode, so the
database file is made 0600 before SQLAlchemy first opens it. Anything found looser (an older
broker's data, a database a CLI command made) is tightened, with a log line saying so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
#: What SQLite keeps beside a database file.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def _tighten(path: Path, wanted: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~wanted & 0o777:
        path.chmod(wanted)
        log.warning("%s was readable by other users (%04o); now %04o", path, current, wanted)


def private_dir(path: Path) -> None:
    """Make the folder ``path`` (and its parents) if needed; it ends 0700.

    A folder others share (sticky, like /tmp, or another user's) is left as it is, with a
    warning: the files in it are still 0600, but its mode is not the broker's to change."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    info = path.stat()
    if info.st_mode & stat.S_ISVTX or info.st_uid != os.geteuid():
        log.warning(
            "data_dir %s is a shared folder (mode %04o): keep the broker's data in a folder of its own",
            path,
            stat.S_IMODE(info.st_mode),
        )
        return
    _tighten(path, DIR_MODE)


def private_file(path: Path, *, create: bool = False) -> None:
    """Make ``path`` 0600: created empty when ``create`` and missing, tightened when looser."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    # A companion may not be there: SQLite removes -wal and -shm on a clean close.
    with contextlib.suppress(FileNotFoundError):
        _tighten(path, FILE_MODE)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite database URL; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def private_database(url: str) -> None:
    """For a SQLite ``url``: the database file exists and is 0600 before anything opens it, and so
    are the files SQLite keeps beside it. Nothing to do for a database server."""
    path = sqlite_path(url)
    if path is None:
        return
    private_file(path, create=True)
    for suffix in SQLITE_COMPANIONS:
        private_file(path.with_name(path.name + suffix))
