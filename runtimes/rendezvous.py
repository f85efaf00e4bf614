"""Addresses known only at launch: the placeholder scheme, and environments rendered over real endpoints.

Some clusters place replicas themselves (Ray puts actors on nodes, Slurm tasks on hosts), so a
replica's host and port are known only once it starts. A plan for such a cluster is built with
:class:`PlaceholderAddressing`: each replica's host is ``{{host:<replica>}}`` and its port 0 (to be
allocated on its node). Whoever learns the real endpoints at launch (the Ray launcher, the Slurm
task entry) fills them in:

* :func:`render_env` re-runs the framework's environment builder (TF_CONFIG, MASTER_ADDR/PORT,
  WORKER_ADDRS, DMLC_*: see :mod:`runtimes.frameworks`) over the endpoints, puts the result over
  each replica's plan environment exactly where the plan had it, replaces any other placeholder
  left in a value, and adds the replica's own ``SUBMARINE_REPLICA_HOST``/``SUBMARINE_REPLICA_PORT``.
  The endpoints may be placeholders themselves: the Slurm adapter renders with
  ``({{host:<replica>}}, {{port:<replica>}})`` before the job runs, and each task then only has to
  :func:`substitute` strings once the peers have published where they are.
* :func:`resolve_argv` does the same for a replica's command line, where a placeholder port 0 of
  a ``--...port=0`` option becomes the replica's real port (a notebook's ``--port=0``).

Only the standard library is imported at module level: the Slurm job ships this file, as it is,
beside ``slurm_task.py`` to clusters where this project is not installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtimes.plan import LaunchPlan, ReplicaPlan

#: A replica's ``(host, port)``; both may be placeholders (a port placeholder is a string).
Endpoint = tuple[str, int | str]

_OPEN = "{{"
_PORT_OPTION = re.compile(r"^(--?[A-Za-z0-9_.-]*port)=0$", re.IGNORECASE)
_PORT_FLAG = re.compile(r"^--?[A-Za-z0-9_.-]*port$", re.IGNORECASE)


def host_placeholder(name: str) -> str:
    """What stands for replica ``name``'s host until it is known: ``{{host:<name>}}``."""
    return "{{host:" + name + "}}"


def port_placeholder(name: str) -> str:
    """What stands for replica ``name``'s port until it is known: ``{{port:<name>}}``."""
    return "{{port:" + name + "}}"


def placeholder_endpoints(names: list[str]) -> dict[str, Endpoint]:
    """Every replica's endpoint as placeholders, for rendering before the replicas run."""
    return {name: (host_placeholder(name), port_placeholder(name)) for name in names}


class PlaceholderAddressing:
    """Addressing for plans bound to clusters that place replicas themselves (Ray, Slurm)."""

    def host(self, role: str, index: int) -> str:
        return host_placeholder(f"{role.lower()}-{index}")

    def port(self, role: str, index: int) -> int:
        return 0  # allocated on the replica's node at launch


class EndpointAddressing:
    """Addressing over endpoints known by replica name: ``{name: (host, port)}``."""

    def __init__(self, endpoints: Mapping[str, Endpoint]) -> None:
        self._endpoints = endpoints

    def host(self, role: str, index: int) -> str:
        return self._endpoints[f"{role.lower()}-{index}"][0]

    def port(self, role: str, index: int) -> int | str:
        return self._endpoints[f"{role.lower()}-{index}"][1]


def substitute(value: str, endpoints: Mapping[str, Endpoint]) -> str:
    """``value`` with every host and port placeholder of ``endpoints`` replaced by the endpoint."""
    if _OPEN not in value:
        return value
    for name, (host, port) in endpoints.items():
        value = value.replace(host_placeholder(name), host).replace(port_placeholder(name), str(port))
    return value


def render_env(plan: LaunchPlan, endpoints: Mapping[str, Endpoint]) -> dict[str, dict[str, str]]:
    """Each replica's environment (by replica name) over ``endpoints``: see the module docstring."""
    # Imported here: the Slurm task entry runs this file alone, without the project's packages.
    from runtimes.frameworks import framework_env

    slots = [(r.role, r.index) for r in plan.replicas]
    built = framework_env(plan.framework, slots, EndpointAddressing(endpoints))
    envs = {}
    for replica in plan.replicas:
        env = dict(replica.env)
        env.update(built.get((replica.role, replica.index), {}))
        env = {key: substitute(value, endpoints) for key, value in env.items()}
        host, port = endpoints[replica.name]
        env["SUBMARINE_REPLICA_HOST"] = host
        env["SUBMARINE_REPLICA_PORT"] = str(port)
        envs[replica.name] = env
    return envs


def resolve_argv(replica: ReplicaPlan, endpoints: Mapping[str, Endpoint]) -> list[str]:
    """The replica's argv with the endpoints in place of the placeholders.

    Every ``{{host:<replica>}}`` becomes that replica's host. When the plan gave this replica the
    placeholder port 0, an option whose name ends in ``port`` with the value 0 (``--port=0``,
    ``--ServerApp.port=0``, or ``--port`` followed by ``0``) gets the replica's port; other
    options (``--port-retries=0``) and other values stay as they are.
    """
    _host, port = endpoints[replica.name]
    out: list[str] = []
    for i, arg in enumerate(replica.argv):
        arg = substitute(arg, endpoints)
        if replica.port == 0:
            match = _PORT_OPTION.match(arg)
            if match:
                arg = f"{match.group(1)}={port}"
            elif arg == "0" and i > 0 and _PORT_FLAG.match(replica.argv[i - 1]):
                arg = str(port)
        out.append(arg)
    return out
