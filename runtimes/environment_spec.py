"""From Submarine's environment shapes to an :class:`~runtimes.environment.EnvironmentPlan`.

A registered environment's revision is an ``environmentSpec`` (``dockerImage``, ``kernelSpec``
``{name, channels, condaDependencies, pipDependencies}``, ``description``); a spec without a
registered name may carry the same fields inline under ``environment``. Both become the one plan
every cluster kind builds. The Python version is ``kernelSpec.python`` (a broker extension) or a
``python=<version>`` conda dependency.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from runtimes.environment import EnvironmentPlan
from runtimes.spec import EnvironmentRef

#: The name of the plan made from a spec's own ``environment`` fields.
INLINE = "inline"
_CONDA_PYTHON = re.compile(r"^python\s*=+\s*([0-9][0-9.]*)")


def _strings(kernel: Mapping[str, Any], field: str) -> list[str]:
    return [str(item) for item in kernel.get(field) or []]


def python_version(kernel: Mapping[str, Any]) -> str | None:
    """``kernelSpec.python``, else the version of a ``python=3.11`` conda dependency, else None."""
    explicit = kernel.get("python")
    if explicit:
        return str(explicit)
    for dependency in _strings(kernel, "condaDependencies"):
        match = _CONDA_PYTHON.match(dependency.strip())
        if match:
            return match.group(1).rstrip(".")
    return None


def plan_of(name: str, spec: Mapping[str, Any], revision: int = 0) -> EnvironmentPlan:
    """The plan of an ``environmentSpec`` (a registered revision's, or a spec's inline fields)."""
    kernel: Mapping[str, Any] = spec.get("kernelSpec") or {}
    return EnvironmentPlan.of(
        name,
        revision=revision,
        image=spec.get("dockerImage") or spec.get("image"),
        pip=_strings(kernel, "pipDependencies"),
        conda=_strings(kernel, "condaDependencies"),
        channels=_strings(kernel, "channels"),
        python=python_version(kernel),
    )


def inline_plan(ref: EnvironmentRef) -> EnvironmentPlan | None:
    """The plan of a spec's own ``environment`` (no registered name): its image and kernelSpec;
    None when it asks for neither."""
    if ref.name:
        return None
    plan = plan_of(INLINE, {"dockerImage": ref.image or ref.dockerImage, "kernelSpec": ref.kernelSpec or {}})
    if plan.image is None and not plan.installs and plan.python is None:
        return None
    return plan
