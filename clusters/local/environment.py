"""What a local replica's environment holds, and what its supervisor's holds.

A replica inherits nothing of the broker's environment (database URLs, ``RAY_TOKEN``,
``SLURM_JWT``...) except :data:`ALLOWED` and the names its cluster file lists in
``env_passthrough``; then come what the broker sets on purpose (the plan's variables: ``JOB_ID``,
the framework's, the spec's ``envVars``). A replica that runs as another user gets ``HOME`` (its
working directory), ``USER`` and ``LOGNAME`` of that user.

The supervisor, which writes the records the broker trusts, gets none of it: a fixed environment
(:func:`supervisor_environment`), so a replica's ``PATH``, ``LD_PRELOAD`` or ``PYTHONPATH`` cannot
change what it does.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from clusters.local.users import Account

#: Variables of the broker's environment every replica gets.
ALLOWED = ("PATH", "HOME", "LANG", "TZ")


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
