"""What a local replica's environment holds, and what its supervisor's holds.

A replica inherits nothing of the broker's environment (database URLs, ``RAY_TOKEN``,
``SLURM_JWT``...) except :data:`ALLOWED` and the names its cluster file lists in
``env_passthrough``; then come what the broker sets on purpose (the plan's variables: ``JOB_ID``,
the framework's, the spec's ``envVars``). A replica that runs as another user gets ``HOME`` (its
working directory), ``USER`` and ``LOGNAME`` of that user.

The supervisor, which writes the records the broker trusts, gets none of it: a fixed environment
(:func:`supervisor_environment`), so a replica's ``PATH``, ``LD_PRELOAD`` or ``PYTHONPATH`` cannot
change what it does.

A model server that runs in a built environment (a venv that has none of the broker's packages)
imports the broker's ``runtimes`` package from a folder holding only a link to it
(:func:`runtimes_folder`), put first on its ``PYTHONPATH`` (:func:`with_runtimes`): the
environment sees that package and nothing else of the broker's installation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import runtimes
from clusters.local.users import Account

#: Variables of the broker's environment every replica gets.
ALLOWED = ("PATH", "HOME", "LANG", "TZ")
#: The folder (in the environments cache) that holds only a link to the ``runtimes`` package.
RUNTIMES_FOLDER = ".runtimes"


def replica_environment(
    plan_env: Mapping[str, str],
    *,
    passthrough: Iterable[str] = (),
    user: Account | None = None,
    home: Path | None = None,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one replica: the allow-listed part of ``source`` (the broker's own
    environment by default), the run-as user's identity, then ``plan_env``."""
    source = os.environ if source is None else source
    env = {name: source[name] for name in (*ALLOWED, *passthrough) if name in source}
    if user is not None:
        env.update({"USER": user.name, "LOGNAME": user.name})
        if home is not None:
            env["HOME"] = str(home)
    env.update(plan_env)
    return env


def supervisor_environment(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The supervisor's fixed environment: the system's default PATH, and the broker's own
    LD_LIBRARY_PATH when it has one (its interpreter may need it to start)."""
    source = os.environ if source is None else source
    env = {"PATH": os.defpath.lstrip(":") or "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    if source.get("LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = source["LD_LIBRARY_PATH"]
    return env


def runtimes_folder(root: Path, package: Path | None = None) -> Path:
    """``<root>/.runtimes``, holding ``runtimes`` as a link to the broker's package (``package``,
    by default the one imported here), made or corrected now; what :func:`with_runtimes` adds."""
    target = (package or Path(runtimes.__file__).parent).resolve()
    folder = root / RUNTIMES_FOLDER
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    link = folder / "runtimes"
    with contextlib.suppress(OSError):
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return folder
    # Another broker process may do the same: a link under a temporary name, then one rename.
    spare = folder / f".runtimes.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        spare.unlink()
    spare.symlink_to(target, target_is_directory=True)
    os.replace(spare, link)
    return folder


def with_runtimes(env: Mapping[str, str], folder: Path) -> dict[str, str]:
    """``env`` with ``folder`` first on ``PYTHONPATH`` (the replica's own entries kept after it)."""
    out = dict(env)
    given = out.get("PYTHONPATH")
    out["PYTHONPATH"] = f"{folder}{os.pathsep}{given}" if given else str(folder)
    return out
