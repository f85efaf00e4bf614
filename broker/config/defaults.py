"""The packaged default configuration (``broker/defaults``) and which broker.yaml a command uses.

The rule, for every command that takes ``--config``: the file given with ``--config``; else
``$SUBMARINE_BROKER_CONFIG``; else the packaged default, which serves one local cluster with no
authentication on 127.0.0.1 and keeps its data in the user's data directory. ``init`` writes an
editable copy of the packaged folder.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

#: What ``init`` copies: the packaged folder's files, relative to it.
FILES = ("broker.yaml", "clusters.d/local.yaml", "policy.csv")
#: Where ``init`` writes when no folder is given (relative to the working directory).
INIT_DIR = "submarine-broker"


def packaged_dir() -> Path:
    """The folder holding the packaged default (inside the installed package)."""
    return Path(str(resources.files("broker").joinpath("defaults")))


def packaged_config() -> Path:
    """The packaged default broker.yaml."""
    return packaged_dir() / "broker.yaml"


def choose_config(given: str | None) -> tuple[Path, bool]:
    """The broker.yaml to use (``given`` is ``--config`` or ``$SUBMARINE_BROKER_CONFIG``) and
    whether it is the packaged default."""
    if given:
        return Path(given), False
    return packaged_config(), True


class TargetExists(Exception):
    """``init`` would overwrite files (the message lists them)."""


def write_copy(target: Path, *, force: bool = False) -> list[Path]:
    """Copy the packaged default into ``target`` (created if needed); the paths written.

    Refuses, writing nothing, when any of the files exists already, unless ``force``.
    """
    source = packaged_dir()
    destinations = [(source / name, target / name) for name in FILES]
    existing = [str(dest) for _, dest in destinations if dest.exists()]
    if existing and not force:
        raise TargetExists(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
            "use --force to overwrite"
        )
    written = []
    for src, dest in destinations:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        written.append(dest)
    return written
