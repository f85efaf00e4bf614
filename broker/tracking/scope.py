"""What a run-scoped caller may touch: the run an experiment replica was given, nothing else.

A replica's ``MLFLOW_TRACKING_TOKEN`` is a run token (:mod:`broker.tracking.run_tokens`): the
authentication middleware puts its :class:`RunScope` in ``scope["state"]["run_scope"]`` beside
the caller (the experiment's owner). Tracking handlers then answer only for that run and its
experiment (another run is 404); every other endpoint refuses the token (403).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request


@dataclass(frozen=True)
class RunScope:
    """The run a token may log to and read, and the replica (``worker-1``) that holds it."""

    run_id: str
    experiment_id: int
    replica: str | None


def run_scope(request: Request) -> RunScope | None:
    """The run scope of ``request``'s caller, or None for a user's own token (or ``auth: none``)."""
    state = request.scope.get("state") or {}
    scope = state.get("run_scope")
    return scope if isinstance(scope, RunScope) else None
