"""Unprivileged Unix users for the tests of the local kind's ``run_as`` (the tests run as root).

``sbrun-a`` and ``sbrun-b`` are created once per machine (``useradd --system``, no home, no login
shell) and never deleted: other test sessions may be using them. Their work needs folders they can
reach (pytest's own temporary folders are private to root) and an interpreter they can start:
:func:`scratch_dir` and :func:`replica_python` provide both.
"""

from __future__ import annotations

import atexit
import functools
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
USERS = ("sbrun-a", "sbrun-b")


def is_root() -> bool:
    return os.geteuid() == 0


def ensure_users() -> tuple[str, ...]:
    """Create the run-as users where missing (idempotent, safe when two sessions race)."""
    for name in USERS:
        try:
            pwd.getpwnam(name)
            continue
        except KeyError:
            pass
        if not is_root():
            raise RuntimeError(f"the run_as tests need the Unix user {name}; create it as root (useradd)")
        made = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            try:
                pwd.getpwnam(name)  # another session made it meanwhile
            except KeyError:
                raise RuntimeError(f"useradd {name} failed: {made.stderr.strip()}") from None
    return USERS


def scratch_dir(prefix: str = "sb-runas-") -> Path:
    """A new folder under the system temp dir that every user may traverse but not list (0711).

    The caller removes it (:func:`remove_tree`)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _runs_as(user: str, argv: list[str]) -> bool:
    try:
        done = subprocess.run(
            argv,
            user=user,
            group=pwd.getpwnam(user).pw_gid,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@functools.cache
def replica_python() -> str:
    """An interpreter the run-as users can start, with this project's packages (Jupyter too).

    This interpreter when they can run it; otherwise (it lives in a folder private to root, as
    pyenv's under /root) the system's interpreter of the same version, started by a small script
    that puts this environment's packages on its path. Without root: this interpreter.
    """
    if not is_root():
        return sys.executable
    ensure_users()
    probe = "import jupyter_server, ipykernel, psutil"
    if _runs_as(USERS[0], [sys.executable, "-c", probe]):
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if not os.access(candidate, os.X_OK):
            continue
        folder = scratch_dir("sb-runas-python-")
        atexit.register(remove_tree, folder)
        paths = os.pathsep.join(
            [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], str(REPO)]
        )
        script = folder / "python"
        script.write_text(f'#!/bin/sh\nPYTHONPATH="{paths}" exec {candidate} "$@"\n')
        script.chmod(0o755)
        if _runs_as(USERS[0], [str(script), "-c", probe]):
            return str(script)
    raise RuntimeError(
        f"no interpreter the run-as users can start: {sys.executable} is out of their reach "
        f"and no /usr/bin/{version} with this environment's packages works for them"
    )
