"""What an environment installs, and its identity: the one description every cluster kind builds.

An environment revision (a registered environment, or a spec's inline ``kernelSpec``) becomes an
:class:`EnvironmentPlan` on the launch plan. Its :attr:`~EnvironmentPlan.hash` is a hash of what it
installs (the image, the normalised and sorted dependencies, the Python version): two names with
the same content share one build, and an edit that changes nothing installed keeps the hash.
Each kind keeps a cache of builds keyed by that hash (a venv per hash on local and Slurm, a volume
per node on Kubernetes, ...), so a build is done once per cluster and reused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

#: Length of :attr:`EnvironmentPlan.short_hash` (folder and label names).
SHORT_HASH = 16

_SPACES = re.compile(r"\s+")
_NAME_SEPARATORS = re.compile(r"[-_.]+")
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(.*)$")


def normalise_requirement(requirement: str) -> str:
    """One dependency as the hash sees it: whitespace removed, and the distribution name in
    PEP 503's normal form (``Torch_Vision >= 0.1`` and ``torch-vision>=0.1`` are one thing)."""
    text = _SPACES.sub("", requirement)
    match = _NAME.match(text)
    if match is None:
        return text
    name, rest = match.groups()
    return _NAME_SEPARATORS.sub("-", name).lower() + rest


def normalised(requirements: Iterable[str]) -> list[str]:
    """Dependencies normalised, duplicates dropped, sorted."""
    return sorted({normalise_requirement(r) for r in requirements if r.strip()})


def environment_hash(
    *,
    image: str | None,
    pip: Iterable[str],
    conda: Iterable[str],
    channels: Iterable[str],
    python: str | None,
) -> str:
    """The identity of what an environment installs (sha256, hex)."""
    content = {
        "image": image or None,
        "pip": normalised(pip),
        "conda": normalised(conda),
        "channels": sorted({c.strip() for c in channels if c.strip()}),
        "python": python or None,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class EnvironmentPlan(BaseModel):
    """What a workload's replicas need installed; adapters build it once per cluster per hash."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The registered environment's name, or 'inline' (a spec's own kernelSpec)")
    revision: int = Field(default=0, description="The environment's revision the workload was submitted with")
    image: str | None = None
    pip: list[str] = Field(default_factory=list, description="pip requirements, normalised and sorted")
    conda: list[str] = Field(default_factory=list, description="conda packages, normalised and sorted")
    channels: list[str] = Field(default_factory=list, description="conda channels")
    python: str | None = Field(default=None, description="The Python version asked for ('3.11'), if any")
    hash: str = Field(description="environment_hash() of the fields above")

    @classmethod
    def of(
        cls,
        name: str,
        *,
        revision: int = 0,
        image: str | None = None,
        pip: Iterable[str] = (),
        conda: Iterable[str] = (),
        channels: Iterable[str] = (),
        python: str | None = None,
    ) -> EnvironmentPlan:
        """The plan of an environment, its hash computed."""
        pip_list, conda_list = normalised(pip), normalised(conda)
        channel_list = sorted({c.strip() for c in channels if c.strip()})
        return cls(
            name=name,
            revision=revision,
            image=image or None,
            pip=pip_list,
            conda=conda_list,
            channels=channel_list,
            python=python or None,
            hash=environment_hash(
                image=image, pip=pip_list, conda=conda_list, channels=channel_list, python=python
            ),
        )

    @property
    def short_hash(self) -> str:
        """The first characters of the hash, for folder, volume and label names."""
        return self.hash[:SHORT_HASH]

    @property
    def installs(self) -> bool:
        """True when something must be installed beyond the image (pip or conda packages)."""
        return bool(self.pip or self.conda)

    def describe(self) -> str:
        """``torch-2 (3 packages)``: how a status message names it."""
        count = len(self.pip) + len(self.conda)
        return f"{self.name} ({count} package{'s' if count != 1 else ''})"
