"""Build an environment's virtual environment once per hash, in a folder shared by the workloads.

Used where the replicas run: by the ``local`` kind's supervisor (:mod:`clusters.local.supervise`)
and by the Slurm task entry (:mod:`runtimes.slurm_task`, which gets this file copied beside it,
so only the standard library is used here).

The cache is a folder (``<work_dir>/environments``) holding per environment hash:

* ``<short_hash>/``: the virtual environment (``python -m venv``, or ``uv venv`` when ``uv`` is
  installed; ``conda create -p`` when the environment has conda packages), with the pip
  requirements installed;
* ``<short_hash>/.complete``: written last, when the build has succeeded. A folder without it is
  a build that was cut short (a crash, a cancel): it is removed and built again, never used. Its
  modification time is the last time a workload used the build;
* ``<short_hash>.lock``: ``flock``-ed by whoever builds or drops the build, so concurrent workloads
  of one hash build it once: the others wait, then find ``.complete`` and reuse it.

A workload's own folder (an attempt's) holds ``environment.json`` (``{"state": "building" |
"ready" | "failed", "message"}``: what its cluster adapter reports while the replicas wait, and the
installer's error line after a failed build), ``environment.log`` (the build's output, or a line
saying the build was reused) and ``environment.lock`` (its replicas take it in turn, so the first
prepares the environment and the others read the outcome instead of building again).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # never imported where this file runs alone (a Slurm job's folder)
    from runtimes.environment import EnvironmentPlan

#: Name of the cache folder in a cluster's work directory.
ROOT = "environments"
#: Written in a build's folder once it is complete.
COMPLETE = ".complete"
#: Seconds between two tries of a lock someone else holds.
LOCK_POLL = 0.2
#: A workload's files (see the module's docstring).
STATUS, LOG, ATTEMPT_LOCK = "environment.json", "environment.log", "environment.lock"
BUILDING, READY, FAILED = "building", "ready", "failed"
#: Variables of the caller's environment an installer must not see (they would change what it does).
_SCRUB = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "VIRTUAL_ENV",
    "PIP_REQUIRE_VIRTUALENV",
    "CONDA_PREFIX",
)

_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")

Log = Callable[[str], None]
Stop = Callable[[], bool]


class BuildError(Exception):
    """The environment could not be built; ``args[0]`` is the installer's own error line."""


class Cancelled(Exception):
    """The workload was cancelled while it waited for or ran a build."""


def spec(
    env: EnvironmentPlan,
    *,
    pip_args: Sequence[str] = (),
    interpreter: str | None = None,
    uv: str | None = None,
) -> dict[str, Any]:
    """What a build of ``env`` needs, as JSON for a launch file or ``tasks.json``: the
    environment's content and ``python`` (the version asked for, or None), ``pip_args`` (the
    cluster's own pip options), ``interpreter`` (the one to build from, when the caller resolved
    it already) and ``uv`` (the ``uv`` to use, "" for none; None: the builder looks on its PATH)."""
    return {
        "name": env.name,
        "describe": env.describe(),
        "hash": env.hash,
        "short_hash": env.short_hash,
        "pip": list(env.pip),
        "conda": list(env.conda),
        "channels": list(env.channels),
        "python": env.python,
        "interpreter": interpreter,
        "pip_args": list(pip_args),
        "uv": uv,
    }


# -- interpreters --------------------------------------------------------------------------------


def _matches(asked: str, actual: str) -> bool:
    """``3.11`` matches ``3.11.4``; ``3.11.4`` only itself."""
    want = asked.strip().split(".")
    return actual.split(".")[: len(want)] == want


def ask_python(executable: str, code: str) -> str | None:
    """What ``executable -c code`` prints (stripped), or None when it cannot run or fails."""
    try:
        done = subprocess.run(
            [executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _version_of(executable: str) -> str | None:
    return ask_python(executable, "import platform; print(platform.python_version())")


def find_interpreter(version: str | None, default: str | None = None) -> str | None:
    """The Python to build a venv of ``version`` from: ``default`` (this interpreter by default)
    when it is that version, else ``python<major>.<minor>`` on PATH; None when there is none."""
    default = default or sys.executable
    if not version:
        return default
    if default == sys.executable:
        if _matches(version, platform.python_version()):
            return default
    else:
        current = _version_of(default)
        if current is not None and _matches(version, current):
            return default
    parts = version.strip().split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        return None
    found = shutil.which(f"python{parts[0]}.{parts[1]}")
    if found is None:
        return None
    current = _version_of(found)
    return found if current is not None and _matches(version, current) else None


def conda_executable() -> str | None:
    """``mamba`` or ``conda`` on PATH (mamba first: the faster solver), else None."""
    return shutil.which("mamba") or shutil.which("conda")


# -- the cache -----------------------------------------------------------------------------------


def venv_dir(root: Path, short_hash: str) -> Path:
    """Where the build of ``short_hash`` lives."""
    return root / short_hash


def is_built(root: Path, short_hash: str) -> bool:
    """True when the build of ``short_hash`` is complete."""
    return (venv_dir(root, short_hash) / COMPLETE).is_file()


def activate(env: dict[str, str], venv: Path) -> dict[str, str]:
    """``env`` with ``venv`` active: its ``bin`` first on PATH (so ``python`` is its interpreter)
    and ``VIRTUAL_ENV`` set."""
    out = dict(env)
    path = out.get("PATH") or os.defpath.lstrip(":")
    out["PATH"] = f"{venv / 'bin'}{os.pathsep}{path}"
    out["VIRTUAL_ENV"] = str(venv)
    out.pop("PYTHONHOME", None)
    return out


@contextlib.contextmanager
def locked(
    path: Path, *, should_stop: Stop | None = None, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created when missing). While someone else holds
    it, ``on_wait`` is called once and the lock is tried again every :data:`LOCK_POLL` seconds;
    :class:`Cancelled` when ``should_stop`` says so meanwhile."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            if should_stop is not None and should_stop():
                raise Cancelled()
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            time.sleep(LOCK_POLL)
        yield
    finally:
        os.close(fd)  # releases the lock


def ensure(root: Path, build: dict[str, Any], log: Log, *, should_stop: Stop | None = None) -> bool:
    """Make the build of ``build`` (a :func:`spec`) complete in ``root``; True when it was built
    now, False when it was there already. Raises :class:`BuildError` with the installer's error
    line, :class:`Cancelled` when ``should_stop`` turned true."""
    short = str(build["short_hash"])
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        root.chmod(0o755)  # run-as users read the builds; only their builder writes
    target = venv_dir(root, short)
    if _touch_if_built(target):
        log(f"environment {build['describe']}: reusing the build in {target}")
        return False

    def waiting() -> None:
        log(f"environment {build['describe']}: waiting for the build under way in {target}")

    with locked(root / f"{short}.lock", should_stop=should_stop, on_wait=waiting):
        if _touch_if_built(target):
            log(f"environment {build['describe']}: reusing the build in {target}")
            return False
        if target.exists():
            log(f"environment {build['describe']}: removing an incomplete build in {target}")
            shutil.rmtree(target, ignore_errors=True)
        log(f"environment {build['describe']}: building in {target}")
        old_umask = os.umask(0o022)
        try:
            _build(target, build, log, should_stop)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            os.umask(old_umask)
        marker = {"hash": build["hash"], "name": build["name"], "built": time.time()}
        (target / COMPLETE).write_text(json.dumps(marker))
        log(f"environment {build['describe']}: built")
        return True


def drop(root: Path, short_hash: str) -> bool:
    """Remove the build of ``short_hash`` under its lock (waiting for a build under way); True
    when it is gone, False when it could not be removed."""
    target = venv_dir(root, short_hash)
    if not root.is_dir():
        return True
    try:
        with locked(root / f"{short_hash}.lock"):
            shutil.rmtree(target, ignore_errors=True)
    except OSError:
        return False
    with contextlib.suppress(OSError):
        (root / f"{short_hash}.lock").unlink()
    return not target.exists()


def _touch_if_built(target: Path) -> bool:
    marker = target / COMPLETE
    if not marker.is_file():
        return False
    with contextlib.suppress(OSError):
        os.utime(marker)  # the last use, for the broker's housekeeping
    return True


def _build(target: Path, build: dict[str, Any], log: Log, should_stop: Stop | None) -> None:
    interpreter = build.get("interpreter") or find_interpreter(build.get("python"))
    if interpreter is None:
        raise BuildError(
            f"no Python {build.get('python')} on {platform.node()} (python{build.get('python')})"
        )
    pip = [str(p) for p in build.get("pip") or []]
    pip_args = [str(a) for a in build.get("pip_args") or []]
    uv = build.get("uv")
    if uv is None:
        uv = shutil.which("uv")
    python = str(target / "bin" / "python")
    if build.get("conda"):
        conda = conda_executable()
        if conda is None:
            raise BuildError("no conda or mamba on PATH to install the conda packages")
        version = build.get("python") or platform.python_version()
        channels = [a for c in build.get("channels") or [] for a in ("-c", str(c))]
        command = [conda, "create", "--yes", "--prefix", str(target), f"python={version}", "pip"]
        _run([*command, *channels, *[str(c) for c in build["conda"]]], log, should_stop)
        if pip:
            _run([python, "-m", "pip", "install", *pip_args, *pip], log, should_stop)
        return
    if uv:
        _run([uv, "venv", "--python", interpreter, str(target)], log, should_stop)
        if pip:
            _run([uv, "pip", "install", "--python", python, *pip_args, *pip], log, should_stop)
        return
    if pip and _has_pip(interpreter):
        # The builder's own pip installs into a venv without one: no ensurepip (seconds saved).
        _run([interpreter, "-m", "venv", "--without-pip", str(target)], log, should_stop)
        _run([interpreter, "-m", "pip", "--python", python, "install", *pip_args, *pip], log, should_stop)
        return
    _run([interpreter, "-m", "venv", str(target)], log, should_stop)
    if pip:
        _run([python, "-m", "pip", "install", *pip_args, *pip], log, should_stop)


def _has_pip(interpreter: str) -> bool:
    """The interpreter's pip exists and knows ``--python`` (pip 22.3 and later)."""
    try:
        done = subprocess.run(
            [interpreter, "-m", "pip", "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    words = done.stdout.split()
    if done.returncode != 0 or len(words) < 2:
        return False
    try:
        major, minor = (int(p) for p in words[1].split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (22, 3)


def _installer_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.setdefault("PATH", os.defpath.lstrip(":"))
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONUNBUFFERED="1")
    return env


def _run(argv: list[str], log: Log, should_stop: Stop | None) -> None:
    """Run one installer step, its output line by line to ``log``; :class:`BuildError` with its
    error line when it fails."""
    if should_stop is not None and should_stop():
        raise Cancelled()
    log("$ " + " ".join(redact(a) for a in argv))
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_installer_env(),
        )
    except OSError as exc:
        raise BuildError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            lines.append(line)
            del lines[:-200]
            log(redact(line))
        code = proc.wait()
    except BaseException:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()
        raise
    if should_stop is not None and should_stop():
        raise Cancelled()
    if code != 0:
        raise BuildError(redact(installer_error(lines)) or f"{Path(argv[0]).name} exited with code {code}")


def redact(text: str) -> str:
    """``text`` with the credentials of any URL in it masked (``https://***@host/simple``)."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def installer_error(lines: Sequence[str]) -> str:
    """The line of an installer's output that says what went wrong: pip's last ``ERROR:`` line
    (``No matching distribution found for nosuchpkg``), uv's ``error:`` line with the ``cause:``
    lines after it (``Because nosuchpkg was not found ...``), conda's ``PackagesNotFoundError``
    line, else the last line."""
    text = [line.strip() for line in lines if line.strip()]
    pip = [line for line in text if line.startswith("ERROR:")]
    if pip:
        return pip[-1][:500]
    uv = [i for i, line in enumerate(text) if line.startswith("error:")]
    if uv:
        causes = []
        for line in text[uv[-1] + 1 :]:
            if not line.startswith(("cause:", "╰─▶", "Caused by:")):
                break
            causes.append(line.split(None, 1)[1] if " " in line else line)
        return ": ".join([text[uv[-1]], *causes])[:500]
    conda = [line for line in text if line.startswith("PackagesNotFoundError")]
    if conda:
        return conda[-1][:500]
    return text[-1][:500] if text else ""


# -- a workload's view ---------------------------------------------------------------------------


def read_status(folder: Path) -> dict[str, Any] | None:
    """The workload's ``environment.json``, or None before it has one."""
    try:
        data = json.loads((folder / STATUS).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_status(folder: Path, state: str, message: str = "") -> None:
    tmp = folder / f".{STATUS}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"state": state, "message": message}))
    os.replace(tmp, folder / STATUS)


def prepare(folder: Path, root: Path, build: dict[str, Any], *, should_stop: Stop | None = None) -> Path:
    """Make the environment of the workload in ``folder`` ready, once for all its replicas, and
    return its venv. Raises :class:`BuildError` (also for the replicas that find the first one's
    failure recorded) and :class:`Cancelled`."""
    with locked(folder / ATTEMPT_LOCK, should_stop=should_stop):
        status = read_status(folder) or {}
        target = venv_dir(root, str(build["short_hash"]))
        if status.get("state") == FAILED:
            raise BuildError(str(status.get("message") or "the environment could not be built"))
        if status.get("state") == READY and is_built(root, str(build["short_hash"])):
            return target
        _write_status(folder, BUILDING)

        def log(line: str) -> None:
            with (folder / LOG).open("a", encoding="utf-8") as out:
                out.write(line + "\n")

        try:
            ensure(root, build, log, should_stop=should_stop)
        except BuildError as exc:
            log(f"environment {build['describe']}: the build failed: {exc.args[0]}")
            _write_status(folder, FAILED, str(exc.args[0]))
            raise
        _write_status(folder, READY)
        return target


#: How :func:`main` announces a failed build in its output (the installer's line follows).
FAILURE_MARK = "submarine-broker: environment build failed:"


def main(argv: Sequence[str] | None = None) -> int:
    """``python3 venv_build.py <root> <build.json>``: build one environment into the cache folder
    ``root`` (a Slurm build job's step), its output on stdout; exit 1 after a line
    :data:`FAILURE_MARK` + the installer's error line when the build fails."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python3 venv_build.py <root> <build.json>", file=sys.stderr)
        return 2
    build = json.loads(Path(args[1]).read_text())
    try:
        ensure(Path(args[0]), build, lambda line: print(line, flush=True))
    except BuildError as exc:
        print(f"{FAILURE_MARK} {exc.args[0]}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
