"""Typed errors every adapter raises, so the scheduler can tell a retry from a refusal."""


class ClusterError(Exception):
    """Base of every adapter error; the message is safe to show a user (never a secret)."""


class ClusterUnreachable(ClusterError):
    """The cluster did not answer; try again later, nothing is known to have happened."""


class SubmitRejected(ClusterError):
    """The cluster refused this workload (bad plan, quota, admission); retrying unchanged won't help."""


class WorkloadNotFound(ClusterError):
    """The cluster has nothing under this handle."""


class EnvironmentBuildFailed(ClusterError):
    """An environment could not be built; the message is the installer's own error line (the
    package it could not find), so the user sees what to fix."""
