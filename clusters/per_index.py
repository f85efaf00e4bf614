"""One role's replicas under one template: values that differ per replica written once, by index.

Clusters that run a role as one templated unit (a Kubernetes pod template, a YARN component) give
every replica of the role the same environment and command, plus a token the cluster replaces
with the replica's index (``$(JOB_COMPLETION_INDEX)`` on Kubernetes, ``${COMPONENT_ID}`` on YARN).
The plan's environment differs per replica (``RANK``, ``TF_CONFIG``'s task index,
``SUBMARINE_REPLICA_INDEX``): a value that differs only by the index is written once with the
token (:func:`index_template`); any other difference (PyTorch worker ``i`` has ``RANK`` ``i+1``)
is left for a shell ``case`` on the index (:func:`case_arms`). Each kind brings its own token and
its own escaping.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence

from runtimes.plan import ReplicaPlan

_DIGITS = "0123456789"


def role_values(group: Sequence[ReplicaPlan]) -> dict[str, list[str]]:
    """Every variable of a role's replicas (first seen first) with its value per replica, in the
    order of ``group``. ValueError names a variable only some replicas have."""
    names: list[str] = []
    for replica in group:
        names += [n for n in replica.env if n not in names]
    out: dict[str, list[str]] = {}
    for name in names:
        values = [r.env.get(name) for r in group]
        present = [v for v in values if v is not None]
        if len(present) != len(values):
            raise ValueError(f"role {group[0].role}: {name} is set on some replicas only")
        out[name] = present
    return out


def _common_prefix(values: Sequence[str]) -> str:
    first, last = min(values), max(values)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


def index_template(values: Sequence[str], token: str, escape: Callable[[str], str]) -> str | None:
    """One value giving ``values[i]`` for the replica of index ``i`` once ``token`` is replaced by
    ``i``, its literal parts passed through ``escape``; None when the values differ otherwise."""
    if len(set(values)) == 1:
        return escape(values[0])
    prefix = _common_prefix(values).rstrip(_DIGITS)
    rests = [v[len(prefix) :] for v in values]
    suffix = _common_prefix([r[::-1] for r in rests])[::-1].lstrip(_DIGITS)
    middles = [r[: len(r) - len(suffix)] for r in rests]
    if all(m == str(i) for i, m in enumerate(middles)):
        return escape(prefix) + token + escape(suffix)
    return None


def case_arms(by_index: Mapping[str, Sequence[str]]) -> list[str]:
    """The arms of a shell ``case`` on the index exporting each variable's value for that index:
    ``0) export RANK=1 ;;`` (values shell-quoted)."""
    count = len(next(iter(by_index.values())))
    arms = []
    for i in range(count):
        exports = " ".join(f"{name}={shlex.quote(values[i])}" for name, values in by_index.items())
        arms.append(f"{i}) export {exports} ;;")
    return arms
