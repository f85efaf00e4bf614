"""The registry of cluster kinds: ``kind`` name → adapter class, imported lazily.

Heavy client libraries (ray, kubernetes) are imported only when a cluster of that kind is
configured. An unknown kind is an error that lists the valid ones; a kind whose client library is
not installed is an error that names the extra installing it, never an ImportError.
"""

from __future__ import annotations

import importlib
import importlib.util

from clusters.base import ClusterAdapter

_KINDS: dict[str, str] = {
    "local": "clusters.local.adapter:LocalAdapter",
    "ray": "clusters.ray.adapter:RayAdapter",
    "kubernetes": "clusters.kubernetes.adapter:KubernetesAdapter",
    "slurm": "clusters.slurm.adapter:SlurmAdapter",
    "yarn": "clusters.yarn.adapter:YarnAdapter",
}

#: Kind → (the client library its adapter needs on the broker host, the extra that installs it).
_REQUIRES: dict[str, tuple[str, str]] = {
    "ray": ("ray", "ray"),  # the Ray job API through ray.job_submission
    "kubernetes": ("kubernetes", "kubernetes"),
}


class KindUnavailable(Exception):
    """A known kind that cannot be used on this broker host: its library or module is missing."""


def register_kind(kind: str, target: str) -> None:
    """Add a kind from ``module:Class`` (broker.yaml ``extra_kinds``: site plugins, test doubles)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"extra kind '{kind}': '{target}' is not of the form module:Class")
    _KINDS[kind] = target


def known_kinds() -> list[str]:
    """Every kind name a cluster file may use."""
    return sorted(_KINDS)


def adapter_class(kind: str) -> type[ClusterAdapter]:
    """The adapter class for ``kind``.

    Raises ``KeyError`` listing the valid names for an unknown kind, and :class:`KindUnavailable`
    when the kind's client library (or a plugin's module) cannot be imported.
    """
    try:
        target = _KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown cluster kind '{kind}'; expected one of {', '.join(known_kinds())}") from None
    package, extra = _REQUIRES.get(kind, (None, None))
    if package and importlib.util.find_spec(package) is None:
        raise KindUnavailable(
            f"the {kind} kind needs the {package} package on the broker host, which is not installed: "
            f"pip install 'submarine-broker[{extra}]'"
        )
    module_name, _, attr = target.partition(":")
    try:
        found: type[ClusterAdapter] = getattr(importlib.import_module(module_name), attr)
    except ImportError as exc:
        hint = f" (pip install 'submarine-broker[{extra}]')" if extra else ""
        raise KindUnavailable(f"the {kind} kind cannot be loaded from {target}: {exc}{hint}") from None
    except AttributeError:
        raise KindUnavailable(f"the {kind} kind cannot be loaded: {module_name} has no {attr}") from None
    return found
