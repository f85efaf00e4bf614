"""Placement and permission policies. Placement is a filter → score pipeline that explains itself."""

from policies.placement import (
    ClusterView,
    Decision,
    PlacementEngine,
    PlacementRequest,
    Verdict,
    default_engine,
)

__all__ = ["ClusterView", "Decision", "PlacementEngine", "PlacementRequest", "Verdict", "default_engine"]
