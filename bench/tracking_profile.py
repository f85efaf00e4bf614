"""Where the broker spends its time on one ``bench/tracking.py`` workload: cProfile in every thread.

Starts a broker like ``bench/tracking.py`` does, but under this script's ``--serve`` mode: the main
thread (the event loop: HTTP, JSON, validation, responses) runs under cProfile and so does every
other thread (``threading.Thread.run`` wrapped: the SQLite writer, the readers), each dumping its
profile when it ends. One workload of ``bench/tracking.py`` is sent (its own functions, its own
client), the broker is stopped with SIGTERM, and the profiles are printed: the event loop's, then
the other threads' merged, each sorted by own time and by cumulative time.

cProfile roughly doubles the cost of Python-heavy code, so read shares, not absolute times.

    python bench/tracking_profile.py --workload batch|single|history|search|create [--seconds 10] [--lines 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tracking  # noqa: E402


def serve(out: Path, config: str) -> None:
    """(The profiled broker.) Profile every thread, run ``broker serve``, dump on the way out."""
    run = threading.Thread.run

    def profiled(self: threading.Thread) -> None:
        profile = cProfile.Profile()
        profile.enable()
        try:
            run(self)
        finally:
            profile.disable()
            profile.dump_stats(out / f"thread-{self.name}-{threading.get_ident()}.prof")

    threading.Thread.run = profiled  # type: ignore[method-assign]
    # uvicorn re-raises the SIGTERM it shut down on with the handler it found: make that an exit
    # that unwinds, so the main thread's profile is written.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    from broker.cli.main import main

    profile = cProfile.Profile()
    profile.enable()
    try:
        main(["serve", "--config", config])
    finally:
        profile.disable()
        profile.dump_stats(out / "main.prof")


def drive(server: tracking.Server, workload: str, seconds: float, points: int, runs: int) -> None:
    api = tracking.Api(server.url)
    experiment_id = tracking.create_experiment(api, f"profile-{uuid.uuid4().hex[:6]}")
    if workload in ("batch", "single"):
        run_id = tracking.create_run(api, experiment_id, workload, int(time.time() * 1000))
        if workload == "batch":
            print(tracking.batch_window(server, run_id, seconds, "raw").line())
        else:
            print(tracking.single_window(server, run_id, seconds, 8, "raw").line())
        return
    if workload == "history":
        (run_id,), _ = tracking.seed(server, experiment_id, "history", points, "api")
        for _ in range(3):
            took, read = tracking.timed(tracking.read_history, server, run_id, "raw")
            print(f"history: {len(read)} points in {took:.3f} s")
        return
    if workload == "create":  # runs/create + a 10-metric log-batch per run, 8 threads
        took, _ = tracking.timed(tracking.seed, server, experiment_id, "search", runs, "api")
        print(f"create: {runs} runs through the API in {took:.1f} s")
        return
    tracking.seed(server, experiment_id, "search", runs, "store")
    for _ in range(3):
        took, found = tracking.timed(
            tracking.search,
            server,
            experiment_id,
            tracking.SEARCH_FILTER,
            tracking.SEARCH_ORDER,
            False,
            "raw",
        )
        print(f"search query: {len(found)} runs in {took:.3f} s")
        took, found = tracking.timed(tracking.search, server, experiment_id, "", [], True, "raw")
        print(f"search page-through: {len(found)} runs in {took:.3f} s")


def report(out: Path, lines: int) -> None:
    def show(title: str, files: list[Path]) -> None:
        if not files:
            return
        stats = pstats.Stats(str(files[0]), stream=io.StringIO())
        for each in files[1:]:
            stats.add(str(each))
        for order in ("tottime", "cumulative"):
            text = io.StringIO()
            stats.stream = text  # type: ignore[attr-defined]
            stats.strip_dirs().sort_stats(order).print_stats(lines)
            body = text.getvalue()
            print(f"\n===== {title}: by {order} =====\n{body[body.find('   ncalls') :]}")

    show("event loop (main thread)", [out / "main.prof"])
    show("other threads (writer, readers)", sorted(out.glob("thread-*.prof")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workload", choices=("batch", "single", "history", "search", "create"), default="batch"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--history-points", type=int, default=100_000)
    parser.add_argument("--search-runs", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=25)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(Path(args.serve[0]), args.serve[1])
        return 0
    root = Path(tempfile.mkdtemp(prefix="bench-tracking-profile-"))
    out = root / "profiles"
    out.mkdir()
    server = tracking.broker_server(root, f"sqlite:///{root / 'broker.db'}")
    config = server.argv[-1]
    server.argv = [sys.executable, str(Path(__file__).resolve()), "--serve", str(out), config]
    server.env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(tracking.REPO), os.environ.get("PYTHONPATH")) if p
    )

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        server.start()
        server.wait_ready()
        drive(server, args.workload, args.seconds, args.history_points, args.search_runs)
        server.stop()
        report(out, args.lines)
        return 0
    finally:
        server.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    sys.exit(main())
