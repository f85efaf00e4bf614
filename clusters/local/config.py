"""Configuration of a ``local`` cluster."""

from __future__ import annotations

import pwd
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from clusters.config import ClusterConfig

#: ``run_as`` value meaning the broker's own Unix user (no switch).
BROKER_USER = "broker"
#: ``run_as`` map key for every namespace the map does not name.
ANY_NAMESPACE = "*"

_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_user(name: str) -> str:
    """A run-as user must exist on this host and not be root. Messages never repeat the name."""
    if name == BROKER_USER:
        return name
    if not _USER.match(name):
        raise ValueError("not a Unix user name (lower-case letters, digits, '_', '.', '-')")
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        raise ValueError("no such user on this host (create it, e.g. useradd --system)") from None
    if account.pw_uid == 0:
        raise ValueError("names root (uid 0), which can read everything: name an unprivileged user")
    return name


class LocalClusterConfig(ClusterConfig):
    """``kind: local``: runs replicas as subprocesses on this host.

    ``work_dir`` holds each attempt's folder (replica logs, pid and exit files); by default
    ``<data_dir>/clusters/<name>``. Several local clusters may share a host with different
    names, capacities and work directories.

    ``run_as`` is the Unix user replicas and notebooks run as: one user, or a map from namespace to
    user (``"*"`` for the namespaces it does not name; a namespace it does not cover cannot place
    work here). ``broker`` means the broker's own user. Unset, work runs as the broker's user,
    which a broker with ``auth: token`` refuses. ``env_passthrough`` names variables of the
    broker's environment that replicas get besides ``PATH``, ``HOME``, ``LANG`` and ``TZ``.
    ``environment_python`` is the interpreter venvs are built from (by default the broker's own, or
    one of the same version the run-as users can start); ``pip_args`` are options of every ``pip
    install`` of an environment build (an index, a wheel folder); environments are built in
    ``<work_dir>/environments`` (see :mod:`runtimes.venv_build`).
    """

    kind: Literal["local"] = "local"
    work_dir: Path | None = Field(default=None, description="Default: <data_dir>/clusters/<name>")
    run_as: str | dict[str, str] | None = Field(
        default=None,
        description="Unix user that runs the work (or namespace -> user, '*' for the rest); "
        "'broker' = the broker's own user",
    )
    env_passthrough: list[str] = Field(
        default_factory=list,
        description="Variables of the broker's environment replicas also get (besides PATH, HOME, LANG, TZ)",
    )

    environment_python: Path | None = Field(
        default=None,
        description="The Python environments' venvs are built from (default: the broker's, or "
        "python<version> on PATH); with run_as, one the run-as users can start",
    )
    pip_args: list[str] = Field(
        default_factory=list,
        description="Options of every pip install of an environment build, e.g. "
        "['--index-url', 'https://mirror/simple'] or ['--no-index', '--find-links', '/srv/wheels']",
    )

    @field_validator("run_as")
    @classmethod
    def _run_as(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        if isinstance(value, str):
            return check_user(value)
        if isinstance(value, dict):
            if not value:
                raise ValueError("an empty map runs nothing: name a user per namespace, or '*'")
            problems = []
            for namespace, user in value.items():
                if namespace != ANY_NAMESPACE and not _NAMESPACE.match(namespace):
                    problems.append("a key is not a namespace (a DNS label) nor '*'")
                    continue
                try:
                    check_user(user)
                except ValueError as exc:
                    problems.append(f"the user of {namespace}: {exc}")
            if problems:
                raise ValueError("; ".join(problems))
        return value

    @field_validator("env_passthrough")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        if any(not _VARIABLE.match(name) for name in value):
            raise ValueError("every entry must be an environment variable name (letters, digits, '_')")
        return value

    def run_as_for(self, namespace: str) -> str | None:
        """The ``run_as`` entry for ``namespace`` (a user or ``broker``); None when it names none.

        Unset ``run_as`` is the broker's own user, for every namespace.
        """
        if self.run_as is None:
            return BROKER_USER
        if isinstance(self.run_as, str):
            return self.run_as
        return self.run_as.get(namespace, self.run_as.get(ANY_NAMESPACE))

    def run_as_users(self) -> list[str]:
        """Every distinct user ``run_as`` names (``broker`` included), in the file's order."""
        if self.run_as is None:
            return []
        values = [self.run_as] if isinstance(self.run_as, str) else list(self.run_as.values())
        return list(dict.fromkeys(values))
