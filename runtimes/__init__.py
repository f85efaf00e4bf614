"""Translate a workload spec into a cluster-neutral launch plan.

Nothing here knows about the broker's database or about any cluster kind: a runtime takes a
validated spec plus an :class:`~runtimes.plan.Addressing` (how replicas of one attempt will find
each other on the chosen cluster) and returns a :class:`~runtimes.plan.LaunchPlan`.
"""

from runtimes.plan import Addressing, LaunchPlan, ReplicaPlan, Resources, StaticAddressing
from runtimes.resources import ResourceError, parse_resources

__all__ = [
    "Addressing",
    "LaunchPlan",
    "ReplicaPlan",
    "ResourceError",
    "Resources",
    "StaticAddressing",
    "parse_resources",
]
