"""A throwaway single-node Slurm (munged, slurmctld, slurmd, optionally slurmrestd), stopped by pid.

Used by the Slurm tests (``slurm`` fixture in tests/conftest.py). Everything is private to one
folder under /tmp (short: munge's socket path is limited to 107 bytes): its own munged socket and
key, its own slurm.conf on free ports (``SlurmctldPort``/``SlurmdPort``), state, spool, pid and log
files. Nothing is written to /etc/slurm; clients find the configuration through ``SLURM_CONF``.
Traps handled here (../shared/reference/run-here.md section 2):

* Debian's packages (slurm-wlm, munge, slurmrestd) are installed with apt-get when the commands
  are missing and this runs as root; otherwise starting fails saying why;
* ``NodeName`` must be ``hostname -s``; the node advertises at least 4 CPUs
  (``SlurmdParameters=config_overrides``) so a few small jobs run side by side on a 2-core
  machine (task/none: nothing binds CPUs);
* ``DefMemPerCPU`` keeps one job from taking the node's whole memory; the
  ``SchedulerParameters`` line starts jobs within about a second;
* slurmrestd refuses root: it runs as the user ``sbtest`` (created when absent) with
  ``rest_auth/jwt``, ``-s openapi/v0.0.38`` only (dbv0.0.38 needs slurmdbd);
* :meth:`stop` cancels every job, then ends the daemons by the pids in their own pid files
  (checked against the command line naming this folder) and any ``slurmstepd`` left holding a
  socket in this instance's spool folder, with their children.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psutil

REST_USER = "sbtest"
PACKAGES = ("slurm-wlm", "munge", "slurmrestd")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_installed(rest: bool) -> None:
    """apt-get install Slurm and munge when their commands are missing (root only)."""
    needed = ["sbatch", "squeue", "sinfo", "scancel", "scontrol", "slurmctld", "slurmd", "munged"]
    if rest:
        needed.append("slurmrestd")
    missing = [c for c in needed if shutil.which(c) is None and not Path(f"/usr/sbin/{c}").exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(
            f"Slurm commands {', '.join(missing)} are missing and this is not root: "
            f"apt-get install {' '.join(PACKAGES)} first"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", *PACKAGES]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr[-2000:]}")


def ensure_user(name: str = REST_USER) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", name], check=True, capture_output=True, timeout=60)
        return pwd.getpwnam(name)


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    """One private single-node Slurm in ``/tmp/sbs-<random>``."""

    def __init__(
        self, *, rest: bool = False, cpus: int = 4, memory_mb: int = 4000, message_timeout: int = 5
    ) -> None:
        self.rest = rest
        self.message_timeout = message_timeout
        self.root = Path(tempfile.mkdtemp(prefix="sbs-", dir="/tmp"))
        self.root.chmod(0o755)
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "sock"
        self.spool = self.root / "spool"
        self.work_dir = self.root / "work"
        self.node = socket.gethostname().split(".")[0]
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.ctld_port = free_port()
        self.slurmd_port = free_port()
        while self.slurmd_port == self.ctld_port:
            self.slurmd_port = free_port()
        self.rest_port: int | None = None
        self.rest_proc: subprocess.Popen[bytes] | None = None
        self.token: str | None = None
        self.cluster_name = f"sb{self.root.name[-6:].lower().replace('_', 'x')}"

    # -- configuration ---------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment of Slurm's client commands for this instance."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _real_cpus(self) -> int:
        done = subprocess.run([_sbin("slurmd"), "-C"], capture_output=True, text=True, timeout=30)
        for word in done.stdout.split():
            if word.startswith("CPUs="):
                return int(word.split("=", 1)[1])
        return os.cpu_count() or 1

    def write_config(self) -> None:
        r = self.root
        for sub in ("state", "spool", "log", "munge", "work"):
            (r / sub).mkdir(exist_ok=True)
        (r / "munge").chmod(0o755)  # munged wants its socket folder executable by all
        (r / "work").chmod(0o1777)  # jobs of the REST user write there too
        key = r / "munge" / "key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        jwt = r / "jwt.key"
        jwt.write_bytes(os.urandom(32))
        jwt.chmod(0o600)
        cpus = max(self.cpus, self._real_cpus())
        self.conf.write_text(
            f"""ClusterName={self.cluster_name}
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key={jwt}
StateSaveLocation={r}/state
SlurmdSpoolDir={self.spool}
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=2
Waittime=0
MessageTimeout={self.message_timeout}
SlurmdParameters=config_overrides
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
"""
        )
        self.conf.chmod(0o644)

    # -- lifecycle -------------------------------------------------------------------------------
    def _run(self, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=timeout)

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        """Start munged, slurmctld and slurmd (and slurmrestd); wait until the node is idle."""
        ensure_installed(self.rest)
        self.write_config()
        began = time.monotonic()
        try:
            m = self.root / "munge"
            self._check(
                self._run(
                    [
                        _sbin("munged"),
                        f"--socket={self.munge_socket}",
                        f"--key-file={m / 'key'}",
                        f"--pid-file={m / 'pid'}",
                        f"--log-file={m / 'log'}",
                        f"--seed-file={m / 'seed'}",
                    ]
                ),
                "munged",
            )
            self.start_controller()
            self._check(self._run([_sbin("slurmd"), "-f", str(self.conf)]), "slurmd")
            self.wait_idle(began + timeout)
            if self.rest:
                self.start_rest(began + timeout)
        except Exception as exc:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"Slurm did not start: {exc}\n{tail}") from exc
        return self

    def start_controller(self, *, clear: bool = True) -> None:
        """slurmctld (daemonizes). ``clear``: start with no jobs (-c); else recover the saved state."""
        argv = [_sbin("slurmctld"), *(["-c"] if clear else []), "-f", str(self.conf)]
        self._check(self._run(argv), "slurmctld")

    @staticmethod
    def _check(done: subprocess.CompletedProcess[str], what: str) -> None:
        if done.returncode != 0:
            raise RuntimeError(
                f"{what} exited with {done.returncode}: {(done.stderr or done.stdout)[-1000:]}"
            )

    def wait_idle(self, deadline: float) -> None:
        while True:
            done = self._run(["sinfo", "--noheader", "-o", "%t"], timeout=15)
            if done.returncode == 0 and "idle" in done.stdout.split():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the node is not idle: {done.stdout.strip()} {done.stderr.strip()[-500:]}"
                )
            time.sleep(0.1)

    def start_rest(self, deadline: float) -> None:
        user = ensure_user()
        os.chmod(self.root / "log", 0o1777)
        self.rest_port = free_port()
        log = (self.root / "log" / "slurmrestd.log").open("ab")
        self.rest_proc = subprocess.Popen(
            [
                _sbin("slurmrestd"),
                "-s",
                "openapi/v0.0.38",
                "-a",
                "rest_auth/jwt",
                f"127.0.0.1:{self.rest_port}",
            ],
            env={"SLURM_CONF": str(self.conf), "SLURM_JWT": "daemon", "PATH": "/usr/sbin:/usr/bin:/bin"},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
            cwd=self.root,
        )
        log.close()
        done = self._run(["scontrol", "token", f"username={REST_USER}", "lifespan=14400"])
        self._check(done, "scontrol token")
        self.token = done.stdout.strip().split("=", 1)[1]
        while True:
            if self.rest_proc.poll() is not None:
                raise RuntimeError(f"slurmrestd exited with {self.rest_proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(
                    f"{self.rest_url}/slurm/v0.0.38/ping", headers=self.rest_headers(), timeout=5
                )
                if answer.status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("slurmrestd does not answer /ping")
            time.sleep(0.1)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def rest_headers(self) -> dict[str, str]:
        return {"X-SLURM-USER-NAME": REST_USER, "X-SLURM-USER-TOKEN": self.token or ""}

    # -- what tests ask --------------------------------------------------------------------------
    def squeue(self, *args: str) -> list[list[str]]:
        """``squeue --states=all`` rows of ``%i|%j|%T|%k`` (id, name, state, comment)."""
        done = self._run(["squeue", "--noheader", "--states=all", "--format=%i|%j|%T|%k", *args])
        self._check(done, "squeue")
        return [line.split("|", 3) for line in done.stdout.splitlines() if line.strip()]

    def jobs_named(self, name: str) -> list[list[str]]:
        return [row for row in self.squeue() if row[1] == name]

    def cluster_config(self, name: str = "slurm", **extra: object) -> dict[str, object]:
        """A clusters.d body for this instance (cli mode unless ``mode: rest`` is passed)."""
        body: dict[str, object] = {
            "kind": "slurm",
            "work_dir": str(self.work_dir),
            "python": "/usr/bin/python3",
        }
        if extra.get("mode") == "rest":
            body.update(rest_url=self.rest_url, user=REST_USER, token=self.token)
        else:
            body["slurm_conf"] = str(self.conf)
        body.update(extra)
        return body

    # -- stopping --------------------------------------------------------------------------------
    def _pid(self, path: Path, must_mention: str) -> psutil.Process | None:
        """The live process whose pid ``path`` holds, if its command line names ``must_mention``."""
        try:
            proc = psutil.Process(int(path.read_text().strip()))
            if must_mention in " ".join(proc.cmdline()):
                return proc
        except (OSError, ValueError, psutil.Error):
            pass
        return None

    def steps(self) -> list[psutil.Process]:
        """slurmstepd processes of this instance (a socket in its spool folder), with their children."""
        found: dict[int, psutil.Process] = {}
        spool = str(self.spool)
        for proc in psutil.process_iter(["pid", "name"]):
            if "slurmstepd" not in (proc.info["name"] or ""):
                continue
            with contextlib.suppress(psutil.Error):
                if any(spool in (c.laddr or "") for c in proc.net_connections(kind="unix")):
                    found[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        found.setdefault(child.pid, child)
        return list(found.values())

    def stop_controller(self) -> None:
        """SIGTERM slurmctld (by its pid file) and wait for it to end."""
        proc = self._pid(self.root / "slurmctld.pid", str(self.conf))
        if proc is not None:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
                proc.wait(15)

    def stop(self) -> None:
        """Cancel every job, stop slurmrestd, slurmd, slurmctld and munged by pid; remove the folder."""
        if self.conf.exists():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._run(["scancel", "--full", "--partition=debug"], timeout=15)
            deadline = time.monotonic() + 10
            while self.steps() and time.monotonic() < deadline:
                time.sleep(0.2)
        if self.rest_proc is not None and self.rest_proc.poll() is None:
            self.rest_proc.terminate()
            try:
                self.rest_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.rest_proc.kill()
                self.rest_proc.wait(10)
        daemons = [
            self._pid(self.root / "slurmd.pid", str(self.conf)),
            self._pid(self.root / "slurmctld.pid", str(self.conf)),
        ]
        self._end([p for p in daemons if p is not None])
        self._end(self.steps())
        munged = self._pid(self.root / "munge" / "pid", str(self.munge_socket))
        if munged is not None:
            self._end([munged])
        shutil.rmtree(self.root, ignore_errors=True)

    @staticmethod
    def _end(procs: list[psutil.Process], grace: float = 5.0) -> None:
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=grace)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for path in (
            self.root / "log" / "slurmctld.log",
            self.root / "log" / "slurmd.log",
            self.root / "log" / "slurmrestd.log",
            self.root / "munge" / "log",
        ):
            if path.exists() and path.stat().st_size:
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts) or f"(no logs under {self.root})"

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
