"""Which Python a ``local`` cluster builds an environment's venv from.

A venv's ``python`` is a link to its base interpreter, so the run-as users must be able to start
that base: a broker in a virtualenv of pyenv's Python under ``/root`` cannot hand its own to them.
The choice is the cluster's ``environment_python`` when set; otherwise the broker's own
interpreter, then ``python<major>.<minor>`` in the system's folders and on PATH; each of the
version asked for (the broker's when none is), and, when work runs as other users, one whose base
they can all reach.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from clusters.local.users import Account, unreachable_folder
from runtimes import venv_build

_SYSTEM_FOLDERS = ("/usr/bin", "/usr/local/bin")


@functools.lru_cache(maxsize=64)
def base_executable(python: str) -> str | None:
    """The real file behind ``python``'s venvs (its ``sys._base_executable``, links resolved)."""
    found = venv_build.ask_python(
        python, "import sys; print(getattr(sys, '_base_executable', sys.executable))"
    )
    return os.path.realpath(found) if found else None


def blocked_for(python: str, accounts: Sequence[Account]) -> tuple[Account, Path] | None:
    """A run-as user who cannot start ``python``'s base, and the folder that stops it; None."""
    if not accounts:
        return None
    base = base_executable(python)
    if base is None:
        return None
    for account in accounts:
        folder = unreachable_folder(account, Path(base))
        if folder is not None:
            return account, folder
        try:
            mode = os.stat(base).st_mode
        except OSError:
            return account, Path(base)
        if not mode & stat.S_IXOTH and os.stat(base).st_uid != account.uid:
            return account, Path(base)
    return None


def _candidates(version: str | None, configured: str | None) -> list[str]:
    if configured:
        return [configured]
    wanted = version or platform.python_version()
    parts = wanted.split(".")
    names = [f"python{parts[0]}.{parts[1]}"] if len(parts) >= 2 else []
    found = [sys.executable]
    for name in names:
        found += [f"{folder}/{name}" for folder in _SYSTEM_FOLDERS if os.access(f"{folder}/{name}", os.X_OK)]
        on_path = shutil.which(name)
        if on_path:
            found.append(on_path)
    return list(dict.fromkeys(found))


@functools.lru_cache(maxsize=64)
def choose(
    version: str | None, configured: str | None, accounts: tuple[Account, ...]
) -> tuple[str | None, str | None]:
    """``(interpreter, None)``, or ``(None, why there is none)`` (cached: it runs interpreters)."""
    problem = None
    for candidate in _candidates(version, configured):
        found = venv_build.find_interpreter(version, default=candidate) if version else candidate
        if found is None or (version and found != candidate and configured):
            continue
        blocked = blocked_for(found, accounts)
        if blocked is None:
            return found, None
        account, folder = blocked
        problem = (
            f"run-as user {account.name} cannot start {base_executable(found)} (the Python environments "
            f"are built from; it may not enter {folder}): set environment_python to one it can run, "
            f"e.g. /usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
        )
    if problem is not None:
        return None, problem
    asked = version or platform.python_version()
    where = f"at {configured}" if configured else f"(no python{asked} on PATH)"
    return None, f"no Python {asked} {where}"
