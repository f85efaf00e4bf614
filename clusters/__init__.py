"""Cluster adapters, one module per kind (see ``clusters.base`` for the protocol, ``clusters.kinds``
for the registry of kinds). Kept empty so the local supervisor starts without importing pydantic."""
