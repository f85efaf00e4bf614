"""Which interpreter runs a notebook's Jupyter server on a cluster, and whether it has Jupyter.

On clusters whose replicas run on the broker's own host (the local kind) the broker can look:
a notebook placed where the interpreter lacks Jupyter would only end with "exited with code 1",
so placement refuses such a cluster with the command that installs what is missing. The answer
is cached: a yes for good, a no (or an interpreter that is not there) for :data:`RECHECK_AFTER`
seconds, so installing Jupyter takes effect without a restart.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from broker.registry import ClusterState
from clusters.base import Capability

log = logging.getLogger(__name__)

#: Seconds a "missing" answer is kept before the interpreter is asked again.
RECHECK_AFTER = 10.0
#: Seconds another interpreter may take to say what it has; past it the answer is "unknown".
PROBE_TIMEOUT = 5.0
#: Module → the distribution that installs it.
DISTRIBUTIONS = {"jupyter_server": "jupyter-server", "jupyterlab": "jupyterlab", "ipykernel": "ipykernel"}
#: Prints the names of the modules given as arguments that the interpreter cannot find.
_PROBE = (
    "import importlib.util, sys; "
    "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
)


@dataclass(frozen=True)
class NotebookRuntime:
    """How notebook plans start their Jupyter server: the interpreter and the app module."""

    python: str
    app_module: str = "jupyterlab"

    @property
    def modules(self) -> tuple[str, ...]:
        """What the interpreter needs: the app and a kernel to run notebooks with."""
        return (self.app_module, "ipykernel")

    def python_on(self, cluster: ClusterState) -> str:
        """The cluster's ``notebook_python``, else the broker's interpreter on host-command clusters
        and the image's ``python`` on clusters that run images."""
        if cluster.config.notebook_python:
            return cluster.config.notebook_python
        return "python" if Capability.IMAGES in cluster.adapter.capabilities else self.python


@dataclass
class InterpreterProbe:
    """Which modules an interpreter on this host lacks, asked once and cached.

    The broker's own interpreter is asked in-process; another one runs once with a short script.
    ``None`` means the interpreter could not be asked (it did not answer in time, or failed):
    nothing is refused on a guess.
    """

    clock: Callable[[], float] = time.monotonic
    _answers: dict[tuple[str, tuple[str, ...]], tuple[float, list[str] | None | OSError]] = field(
        default_factory=dict
    )

    def missing(self, python: str, modules: Sequence[str]) -> list[str] | None | OSError:
        """The modules of ``modules`` that ``python`` cannot import; an :class:`OSError` when the
        interpreter cannot be run at all; ``None`` when it could not tell."""
        key = (python, tuple(modules))
        now = self.clock()
        cached = self._answers.get(key)
        if cached is not None and (cached[1] == [] or cached[1] is None or now - cached[0] < RECHECK_AFTER):
            return cached[1]
        answer = self._ask(python, key[1])
        self._answers[key] = (now, answer)
        return answer

    def _ask(self, python: str, modules: tuple[str, ...]) -> list[str] | None | OSError:
        if _is_this_interpreter(python):
            importlib.invalidate_caches()  # see packages installed since the last look
            return [m for m in modules if importlib.util.find_spec(m) is None]
        try:
            done = subprocess.run(
                [python, "-c", _PROBE, *modules],
                capture_output=True,
                text=True,
                timeout=PROBE_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            return exc
        except subprocess.TimeoutExpired:
            log.warning("notebook interpreter %s did not say within %gs what it has", python, PROBE_TIMEOUT)
            return None
        if done.returncode != 0:
            log.warning("notebook interpreter %s failed to answer (exit %s)", python, done.returncode)
            return None
        return [m for m in done.stdout.split() if m in modules]


def _is_this_interpreter(python: str) -> bool:
    if python == sys.executable:
        return True
    try:
        return os.path.samefile(python, sys.executable)
    except OSError:
        return False


def jupyter_problem(runtime: NotebookRuntime, cluster: ClusterState, probe: InterpreterProbe) -> str | None:
    """Why notebooks cannot run on ``cluster`` (its interpreter lacks Jupyter), with the command
    that installs what is missing; None when they can or the broker cannot tell."""
    if not cluster.adapter.runs_on_broker_host:
        return None
    python = runtime.python_on(cluster)
    missing = probe.missing(python, runtime.modules)
    if isinstance(missing, OSError):
        return f"notebooks need a Jupyter interpreter, and {python} cannot be run: {missing.strerror}"
    if not missing:
        return None
    names = " and ".join(missing)
    if _is_this_interpreter(python):
        how = "pip install 'submarine-broker[notebook]' (from a source checkout: pip install '.[notebook]')"
        where = f"the broker's Python ({python})"
    else:
        how = f"{python} -m pip install {' '.join(DISTRIBUTIONS.get(m, m) for m in missing)}"
        where = python
    return f"notebooks need {names} in {where}, which lacks {'it' if len(missing) == 1 else 'them'}: {how}"
