"""Environments: registered, revisioned descriptions of what a workload installs, and the record
of which cluster has built which environment hash (placement and housekeeping read it)."""
