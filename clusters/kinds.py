"""The registry of cluster kinds: ``kind`` name → adapter class, imported lazily.

Heavy client libraries (ray, kubernetes) are imported only when a cluster of that kind is
configured. An unknown kind is an error that lists the valid ones.
"""

from __future__ import annotations

import importlib

from clusters.base import ClusterAdapter

_KINDS: dict[str, str] = {
    "local": "clusters.local.adapter:LocalAdapter",
    "ray": "clusters.ray.adapter:RayAdapter",
    "kubernetes": "clusters.kubernetes.adapter:KubernetesAdapter",
    "slurm": "clusters.slurm.adapter:SlurmAdapter",
    "yarn": "clusters.yarn.adapter:YarnAdapter",
}


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
    """The adapter class for ``kind``; raises ``KeyError`` with the valid names otherwise."""
    try:
        target = _KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown cluster kind '{kind}'; expected one of {', '.join(known_kinds())}") from None
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)
