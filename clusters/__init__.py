"""Cluster adapters, one module per kind, and the registry of kinds."""

from clusters.base import (
    Capability,
    ClusterAdapter,
    Handle,
    Health,
    Observation,
    Phase,
    ReplicaLog,
    ReplicaStatus,
)
from clusters.config import ClusterConfig
from clusters.errors import ClusterError, ClusterUnreachable, SubmitRejected, WorkloadNotFound

__all__ = [
    "Capability",
    "ClusterAdapter",
    "ClusterConfig",
    "ClusterError",
    "ClusterUnreachable",
    "Handle",
    "Health",
    "Observation",
    "Phase",
    "ReplicaLog",
    "ReplicaStatus",
    "SubmitRejected",
    "WorkloadNotFound",
]
