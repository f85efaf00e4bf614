"""A scripted cluster that keeps an environment cache (``kind: scripted-cache``): it builds what
``prepare_environment`` asks (instantly, recording it), fails a build that names a package of
``missing`` with pip's own line, removes what ``drop_environment`` asks, and without ``conda``
refuses environments with conda packages. What it holds is an :class:`EnvironmentCache`, found
with :func:`cache` by the broker's data directory and the cluster's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from clusters.base import Capability
from clusters.errors import EnvironmentBuildFailed
from runtimes.environment import EnvironmentPlan
from tests.scripted_cluster import EXTRA_KINDS as SCRIPTED_KINDS
from tests.scripted_cluster import ScriptedAdapter, ScriptedClusterConfig

EXTRA_KINDS = {**SCRIPTED_KINDS, "scripted-cache": "tests.scripted_environments:CachingScriptedAdapter"}


@dataclass
class EnvironmentCache:
    """The builds one cluster holds, and its script."""

    built: dict[str, EnvironmentPlan] = field(default_factory=dict)
    prepared: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    #: Packages no index has: a build naming one fails.
    missing: set[str] = field(default_factory=set)
    conda: bool = True


_CACHES: dict[tuple[str, str], EnvironmentCache] = {}


def cache(data_dir: str | Path, name: str) -> EnvironmentCache:
    """The environment cache of cluster ``name`` of the broker whose data directory is ``data_dir``."""
    return _CACHES.setdefault((str(Path(data_dir).resolve()), name), EnvironmentCache())


class CachingScriptedConfig(ScriptedClusterConfig):
    kind: Literal["scripted-cache"] = "scripted-cache"  # type: ignore[assignment]


class CachingScriptedAdapter(ScriptedAdapter):
    """A scripted cluster with ``Capability.ENVIRONMENT_CACHE``."""

    kind = "scripted-cache"
    config_model = CachingScriptedConfig
    capabilities = ScriptedAdapter.capabilities | Capability.ENVIRONMENT_CACHE

    def __init__(self, config: Any, *, data_dir: str) -> None:
        super().__init__(config, data_dir=data_dir)
        self.cache = cache(data_dir, config.name)

    def environment_problem(self, env: EnvironmentPlan) -> str | None:
        if env.conda and not self.cache.conda:
            return f"conda packages ({', '.join(env.conda)}) need conda, which cluster {self.name} lacks"
        return None

    async def prepare_environment(self, env: EnvironmentPlan) -> None:
        self._reachable()
        self.cache.prepared.append(env.hash)
        for requirement in env.pip:
            if requirement in self.cache.missing:
                raise EnvironmentBuildFailed(f"ERROR: No matching distribution found for {requirement}")
        self.cache.built[env.hash] = env

    async def drop_environment(self, env_hash: str) -> bool:
        self._reachable()
        self.cache.dropped.append(env_hash)
        self.cache.built.pop(env_hash, None)
        return True
