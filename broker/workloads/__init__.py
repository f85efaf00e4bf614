"""What every workload kind shares: the row and its events, attempts, the common service verbs and views.

Experiments and notebooks (and the kinds after them) are rows of one table, told apart by
:class:`~broker.workloads.kind.Kind`; placement, dispatch, monitoring, failover and the event history
are the same for all of them. ``broker/experiments/`` and ``broker/notebooks/`` hold only what is
their own.
"""
