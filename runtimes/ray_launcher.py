"""The entrypoint of a broker's Ray job: gang-start one Ray actor per replica of a launch plan.

``python -m runtimes.ray_launcher <plan>`` runs as the job's driver on the Ray cluster (the ``ray``
cluster kind submits it; ``<plan>`` is :func:`encode_plan` of the :class:`LaunchPlan`). It:

1. connects with ``ray.init()`` (inside a job Ray supplies the address) and reserves every
   replica's resources at once in a placement group (strategy ``PACK``, or
   ``SUBMARINE_RAY_STRATEGY``), so all replicas start or none do;
2. starts one actor per replica in its bundle (``num_cpus``/``num_gpus``/``memory`` of the
   replica) and asks each for its node's IP and a port free on that node;
3. renders each replica's environment and argv over those endpoints
   (:func:`runtimes.rendezvous.render_env` and :func:`~runtimes.rendezvous.resolve_argv`): the
   plan was built with placeholder addressing (hosts ``{{host:<replica>}}``, port 0), so TF_CONFIG,
   MASTER_ADDR/MASTER_PORT, WORKER_ADDRS and DMLC_* are rebuilt from the real endpoints, every
   replica gets ``SUBMARINE_REPLICA_HOST`` and ``SUBMARINE_REPLICA_PORT`` (its own endpoint), and
   a replica whose plan port is 0 gets its real port in an option ``--<...>port=0`` (or
   ``--<...>port 0``), as a notebook's ``--ip={{host:notebook-0}} --port=0``;
4. runs each replica's argv as a subprocess of its actor, in the plan's kept working directory when
   it names one (:func:`workdir_path`: ``<base>/<key>`` on the replica's node, ``base`` from
   ``SUBMARINE_RAY_WORKDIR_BASE`` or ``<system temp dir>/submarine-broker-workdirs``), and prints
   every output line into the job log as ``[<replica>] <line>`` (the adapter splits the log on that
   prefix). Once started, the first replica that was given a port is announced with one driver line
   ``submarine-broker: endpoint <replica> http://<ip>:<port>`` (:func:`endpoint_line`), which the
   adapter's ``endpoint()`` reads back from the job log (:func:`find_endpoint`);
5. uploads each replica's TensorBoard folder (``SUBMARINE_TENSORBOARD_LOG_DIR``, made absolute in
   its working directory) to the broker with its run token once the replica has ended, from its
   actor (:mod:`runtimes.tensorboard_sync`; a failure is a line in the replica's output);
6. ends the job: when a replica exits non-zero, it stops the others and exits 1 with a last line
   ``submarine-broker: replica <name> failed with exit code <n>``; when every replica that decides
   the run (:meth:`LaunchPlan.deciders`) exited 0, it stops the rest (parameter servers) and exits
   0. A SIGTERM (``stop_job``) stops every replica before the driver ends. Stopping a replica signals its
   process group and then kills whatever it started outside that group (Jupyter starts each kernel
   in a session of its own), so a stopped notebook leaves no server and no kernel behind.

Only this package and ``ray`` (with pydantic, which ``ray[default]`` brings) must be importable on
the cluster; the adapter ships the ``runtimes`` package with the job as a ``py_modules`` entry.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from runtimes.plan import LaunchPlan, ReplicaPlan
from runtimes.rendezvous import render_env, resolve_argv
from runtimes.tensorboard_sync import FINAL_BUDGET, TensorBoardSync, absolute_env

#: The driver's own lines start with this; replica lines start with ``[<replica>] ``.
MARKER = "submarine-broker:"
#: How often the driver collects output and exit codes from the replicas (seconds).
POLL_INTERVAL = 0.2
#: Seconds a stopped replica gets between SIGTERM and SIGKILL (the local kind's cancel grace; a
#: Jupyter server needs about 2 s to shut its kernels down).
STOP_GRACE = 5.0
#: The variable (from the job's runtime_env) naming the folder kept working directories live under.
WORKDIR_BASE_ENV = "SUBMARINE_RAY_WORKDIR_BASE"
#: A plan's ``workdir`` key: one path component, never ``..``.
WORKDIR_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ENDPOINT = re.compile(
    r"^" + re.escape(MARKER) + r" endpoint ([a-z0-9]+-\d+) (https?://[^\s/]+)[ \t\r]*$", re.MULTILINE
)


# -- the plan on the command line --------------------------------------------------------------


def encode_plan(plan: LaunchPlan) -> str:
    """The plan as one shell-safe word: urlsafe base64 of zlib-compressed JSON."""
    raw = json.dumps(plan.model_dump(mode="json"), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode("ascii")


def decode_plan(word: str) -> LaunchPlan:
    """The inverse of :func:`encode_plan`; plain JSON is accepted too (for hand-made runs)."""
    word = word.strip()
    if word.startswith("{"):
        return LaunchPlan.model_validate_json(word)
    return LaunchPlan.model_validate_json(zlib.decompress(base64.urlsafe_b64decode(word.encode("ascii"))))


# -- endpoints and working directories ----------------------------------------------------------


def endpoint_url(ip: str, port: int) -> str:
    """``http://ip:port`` (an IPv6 address in brackets)."""
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}"


def endpoint_line(name: str, ip: str, port: int) -> str:
    """The driver's line announcing where replica ``name`` serves; see :func:`find_endpoint`."""
    return f"{MARKER} endpoint {name} {endpoint_url(ip, port)}"


def find_endpoint(log: str, names: Sequence[str] | None = None) -> str | None:
    """The URL of the first endpoint line in a job log (of one of ``names`` when given), or None.

    Only whole driver lines count: replica output is always prefixed ``[<replica>] ``, so a
    replica cannot announce an endpoint (the match is anchored at a line start after ``\\n``, so a
    carriage return inside a replica's line does not start a new one). The first line wins: the
    launcher prints it before any replica output.
    """
    for match in _ENDPOINT.finditer(log):
        if names is None or match.group(1) in names:
            return match.group(2)
    return None


def serving_replica(plan: LaunchPlan) -> ReplicaPlan | None:
    """The replica whose endpoint is announced: the first one the plan gave a port."""
    return next((r for r in plan.replicas if r.port is not None), None)


def default_workdir_base() -> str:
    """``<system temp dir>/submarine-broker-workdirs`` on the node that asks."""
    return os.path.join(tempfile.gettempdir(), "submarine-broker-workdirs")


def workdir_path(key: str, base: str | None = None) -> str:
    """The kept working directory of ``key``: ``<base>/<key>`` (``base`` defaults per node).

    ValueError for a key that is not a single plain path component.
    """
    if not WORKDIR_KEY.match(key) or key in (".", ".."):
        raise ValueError(f"unusable working directory key {key!r}")
    return os.path.join(base or default_workdir_base(), key)


# -- resources -----------------------------------------------------------------------------------


def bundle(cpu: float, memory: int, gpu: int) -> dict[str, float]:
    """A placement-group bundle for one replica (Ray refuses empty bundles)."""
    out: dict[str, float] = {}
    if cpu > 0:
        out["CPU"] = float(cpu)
    if gpu > 0:
        out["GPU"] = float(gpu)
    if memory > 0:
        out["memory"] = float(memory)
    return out or {"CPU": 0.01}


# -- the verdict ---------------------------------------------------------------------------------


def verdict(plan: LaunchPlan, exits: Mapping[str, int | None]) -> tuple[str, str | None, int | None]:
    """``("running"|"succeeded"|"failed", replica, exit code)`` from the exit codes so far.

    The first replica (plan order) with a non-zero code fails the gang. The gang has succeeded
    once every replica that decides the run (:meth:`LaunchPlan.deciders`) exited 0.
    """
    for replica in plan.replicas:
        code = exits.get(replica.name)
        if code is not None and code != 0:
            return "failed", replica.name, code
    if all(exits.get(name) == 0 for name in plan.deciders()):
        return "succeeded", None, None
    return "running", None, None


def failure_line(name: str, code: int) -> str:
    """The driver's last line when a replica fails; the adapter reads it back from Ray's message."""
    return f"{MARKER} replica {name} failed with exit code {code}"


# -- one replica ---------------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: SIGKILL the replica if its actor's worker process dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _stat(pid: int) -> tuple[int, int] | None:
    """``(parent pid, start time)`` of a live process from ``/proc`` (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        return int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every live descendant of ``pid`` as ``(pid, start time)`` (empty where there is no /proc)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = _stat(int(entry))
                if stat is not None:
                    children.setdefault(stat[0], []).append(int(entry))
                    starts[int(entry)] = stat[1]
    found: list[tuple[int, int]] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append((child, starts[child]))
        todo.extend(children.get(child, []))
    return found


def _kill_leftovers(family: Sequence[tuple[int, int]]) -> None:
    """SIGKILL each process of ``family`` that still runs (same pid and start time: never a reuse)."""
    for pid, start in family:
        stat = _stat(pid)
        if stat is not None and stat[1] == start:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


class ReplicaProcess:
    """One replica's process; the body of the Ray actor (plain Python, so tests can run it alone)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lines: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._exit: int | None = None
        self._tensorboard: TensorBoardSync | None = None

    def endpoint(self) -> tuple[str, int]:
        """This node's IP (as Ray knows it) and a port that was free on it a moment ago."""
        try:
            import ray.util

            ip = ray.util.get_node_ip_address()
        except Exception:  # noqa: BLE001 - outside Ray (tests): the loopback
            ip = "127.0.0.1"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("", 0))
            return ip, int(sock.getsockname()[1])

    def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        workdir: str | None = None,
        workdir_base: str | None = None,
    ) -> str | None:
        """Start the replica; its output is collected by a thread until :meth:`drain` takes it.

        With a ``workdir`` key the replica runs in :func:`workdir_path` on this node (made, mode
        0700, when missing); returns that folder (None without a key).
        """
        cwd = None
        try:
            if workdir is not None:
                cwd = workdir_path(workdir, workdir_base)
                os.makedirs(cwd, mode=0o700, exist_ok=True)
        except (OSError, ValueError) as exc:
            self._lines.append(f"cannot use the working directory {cwd or workdir!r}: {exc}")
            self._exit = 126
            return cwd
        env = absolute_env(env, cwd or os.getcwd())
        self._tensorboard = TensorBoardSync({**os.environ, **env}, self.name, cwd or os.getcwd(), stderr=self)
        try:
            self._proc = subprocess.Popen(
                list(argv),
                env={**os.environ, **env},
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509
            )
        except OSError as exc:
            self._lines.append(f"cannot start {argv[0]!r}: {exc.strerror or exc}")
            self._exit = 127
            return cwd
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return cwd

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._lock:
                self._lines.append(line)
        self._proc.stdout.close()
        code = self._proc.wait()
        if self._tensorboard is not None:  # before the exit is seen: the run token still works
            self._tensorboard.sync(FINAL_BUDGET)
        with self._lock:
            self._exit = code

    def write(self, text: str) -> int:
        """The uploader's complaints, as lines of the replica's output."""
        with self._lock:
            self._lines.extend(line for line in text.splitlines() if line)
        return len(text)

    def flush(self) -> None:
        pass

    def drain(self) -> tuple[list[str], int | None]:
        """Lines printed since the last call, and the exit code once the output has ended."""
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
            return lines, self._exit

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM the replica's process group, SIGKILL it after ``grace`` seconds.

        Descendants outside the group (Jupyter's kernels, each in a session of its own) are listed
        before the signal and SIGKILLed if they outlive the replica's own process.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return self._exit
        family = descendants(proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        _kill_leftovers(family)
        if self._reader is not None:
            self._reader.join(1.0)
        return proc.returncode


# -- the driver ----------------------------------------------------------------------------------


def _say(text: str) -> None:
    print(f"{MARKER} {text}", flush=True)


def _emit(name: str, lines: Sequence[str]) -> None:
    if lines:
        sys.stdout.write("".join(f"[{name}] {line}\n" for line in lines))
        sys.stdout.flush()


class _Terminated(Exception):
    pass


def _on_sigterm(signum: int, _frame: object) -> None:
    raise _Terminated(signum)


def run(plan: LaunchPlan) -> int:
    """Gang-run ``plan`` on the Ray cluster this job belongs to; the job's exit code."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ray.init(log_to_driver=False)
    signal.signal(signal.SIGTERM, _on_sigterm)  # after ray.init, which installs its own handler
    names = [r.name for r in plan.replicas]
    strategy = os.environ.get("SUBMARINE_RAY_STRATEGY", "PACK")
    pg = placement_group(
        [bundle(r.resources.cpu, r.resources.memory, r.resources.gpu) for r in plan.replicas],
        strategy=strategy,
    )
    actors: list[Any] = []
    try:
        _say(f"reserving resources for {len(names)} replicas ({strategy})")
        waited = 0.0
        while True:
            ready, _ = ray.wait([pg.ready()], timeout=30.0)
            if ready:
                break
            waited += 30.0
            _say(f"still waiting for resources after {waited:.0f}s")
        actor_class = ray.remote(ReplicaProcess)
        for i, replica in enumerate(plan.replicas):
            res = replica.resources
            actors.append(
                actor_class.options(
                    num_cpus=res.cpu,
                    num_gpus=res.gpu,
                    memory=res.memory if res.memory > 0 else None,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        placement_group=pg, placement_group_bundle_index=i
                    ),
                ).remote(replica.name)
            )
        found = ray.get([a.endpoint.remote() for a in actors])
        endpoints = {n: (ip, int(port)) for n, (ip, port) in zip(names, found, strict=True)}
        envs = render_env(plan, endpoints)
        base = os.environ.get(WORKDIR_BASE_ENV) or None
        cwds = ray.get(
            [
                a.start.remote(resolve_argv(r, endpoints), envs[r.name], plan.workdir, base)
                for a, r in zip(actors, plan.replicas, strict=True)
            ]
        )
        _say("started " + ", ".join(f"{n}@{ip}:{port}" for n, (ip, port) in endpoints.items()))
        for name, cwd in zip(names, cwds, strict=True):
            if cwd is not None:
                _say(f"working directory of {name}: {cwd}")
        serving = serving_replica(plan)
        if serving is not None:
            print(endpoint_line(serving.name, *endpoints[serving.name]), flush=True)
        exits: dict[str, int | None] = dict.fromkeys(names)
        while True:
            refs = [a.drain.remote() for a in actors]
            for name, ref in zip(names, refs, strict=True):
                try:
                    lines, code = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    lines, code = [f"the replica's actor died: {str(exc).splitlines()[0]}"], -9
                _emit(name, lines)
                if code is not None:
                    exits[name] = code
            state, failed, code = verdict(plan, exits)
            if state == "failed":
                assert failed is not None and code is not None
                _stop(ray, actors, names, exits)
                _say(failure_line(failed, code).removeprefix(MARKER + " "))
                return 1
            if state == "succeeded":
                _stop(ray, actors, names, exits)
                _say("all replicas finished")
                return 0
            time.sleep(POLL_INTERVAL)
    except _Terminated:
        _say("stopped: stopping every replica")
        _stop(ray, actors, names, {})
        return 143
    finally:
        with contextlib.suppress(Exception):
            remove_placement_group(pg)


def _stop(ray: Any, actors: list[Any], names: list[str], exits: Mapping[str, int | None]) -> None:
    """Stop every replica still running, then print what they wrote last."""
    live = [(n, a) for n, a in zip(names, actors, strict=False) if exits.get(n) is None]
    refs = [a.stop.remote() for _, a in live]
    with contextlib.suppress(Exception):
        ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE + 1.0)
    for (name, actor), ref in zip(live, refs, strict=True):
        with contextlib.suppress(Exception):
            lines, _ = ray.get(actor.drain.remote(), timeout=1.0)
            _emit(name, lines)
        with contextlib.suppress(Exception):
            _say(f"replica {name} stopped (exit code {ray.get(ref, timeout=0.1)})")
    for actor in actors:
        with contextlib.suppress(Exception):
            ray.kill(actor)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m runtimes.ray_launcher <encoded launch plan>", file=sys.stderr)
        return 2
    return run(decode_plan(args[0]))


if __name__ == "__main__":
    sys.exit(main())
