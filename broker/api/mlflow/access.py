"""Who may read and write which tracking objects, for the MLflow handlers.

Objects are ``tracking/<experiment_id>`` with actions ``read`` and ``write``, in the namespace of
the experiment (of the run, for runs of the shared experiment 0, whose runs carry the namespace
chosen at their creation). Experiment 0 itself is open to every authenticated caller. A run the
broker opened for a workload (``workload_id`` set) is also readable by whoever may read
``experiment/<workload_id>``. What a caller may not read is 404 ``RESOURCE_DOES_NOT_EXIST``; what
they may read but not change is 403 ``PERMISSION_DENIED``.

A run-scoped caller (a replica's run token, :mod:`broker.tracking.scope`) reaches its own run and
reads its own experiment, nothing else: other runs and experiments are 404, creating or deleting
anything else is 403.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, distinct, select
from starlette.requests import Request

from broker.api.access import guard_of
from broker.api.mlflow_errors import MlflowError, not_found
from broker.guard import Guard
from broker.tracking.access_rules import may_logged_model, may_run
from broker.tracking.model import DEFAULT_EXPERIMENT_ID
from broker.tracking.run_search import Visibility
from broker.tracking.runs import RUN
from broker.tracking.scope import RunScope, run_scope

NAMESPACE_TAG = "submarine.namespace"


def denied(message: str) -> MlflowError:
    return MlflowError("PERMISSION_DENIED", message)


class TrackingAccess:
    """The caller of one request and what they may do with tracking objects."""

    def __init__(self, request: Request) -> None:
        broker = request.app.state.broker
        self.guard: Guard = guard_of(request)
        self.scope: RunScope | None = run_scope(request)
        self.user = self.guard.user
        self._home = broker.planner.home_namespace(self.user)
        self._default = broker.config.default_namespace

    @property
    def everything(self) -> bool:
        """The unrestricted admin of ``auth: none`` with no run scope: no filtering needed."""
        return self.guard.unrestricted and self.scope is None

    def unscoped(self, what: str) -> None:
        """403 for a run-scoped caller: ``what`` is not its run's to do."""
        if self.scope is not None:
            raise denied(f"a run token may only log to and read its own run; it may not {what}")

    def namespace_for(self, tags: Iterable[tuple[str, str]]) -> str:
        """Where a new experiment (or a run of experiment 0) belongs: the ``submarine.namespace``
        tag, else the caller's first team, else the broker's default namespace."""
        chosen = dict(tags).get(NAMESPACE_TAG)
        return chosen or self._home or self._default

    def require_create(self, namespace: str, experiment_id: int | str = "*") -> None:
        if not self.guard.may(namespace, f"tracking/{experiment_id}", "write"):
            raise denied(f"{self.user} may not write tracking objects in namespace {namespace}")

    # experiments ------------------------------------------------------------------------------
    def may_experiment(self, row: Any, action: str) -> bool:
        if self.scope is not None:
            return action == "read" and row.id == self.scope.experiment_id
        if row.id == DEFAULT_EXPERIMENT_ID or row.namespace == "*":
            return True
        return self.guard.may(row.namespace, f"tracking/{row.id}", action)

    def experiment(self, row: Any, action: str, shown: Any) -> Any:
        """``row`` when the caller may ``action`` it: 404 when they may not read it, else 403."""
        if row is None or not self.may_experiment(row, "read"):
            raise not_found(f"No Experiment with id={shown} exists")
        if action != "read" and not self.may_experiment(row, action):
            if self.scope is not None:
                raise denied("a run token may not change its experiment")
            raise denied(f"{self.user} may not {action} experiment {row.id}")
        return row

    # runs --------------------------------------------------------------------------------------
    def may_run(self, row: Any, action: str) -> bool:
        return may_run(self.guard, self.scope, row, action)

    def run(self, row: Any, action: str, shown: Any) -> Any:
        if row is None or not self.may_run(row, "read"):
            raise not_found(f"Run with id={shown} not found")
        if action != "read" and not self.may_run(row, action):
            raise denied(f"{self.user} may not {action} run {row.run_id}")
        return row

    def visibility(self, conn: Connection, experiments: list[Any]) -> Visibility:
        """Which runs of ``experiments`` (already filtered to those that exist) the caller may read."""
        if self.everything:
            return Visibility(everything=True)
        if self.scope is not None:
            return Visibility(runs={self.scope.run_id})
        seen = Visibility()
        hidden: list[int] = []
        for row in experiments:
            if row.id == DEFAULT_EXPERIMENT_ID or row.namespace == "*":
                names = conn.execute(select(distinct(RUN.c.namespace)).where(RUN.c.experiment_id == row.id))
                seen.by_namespace[row.id] = {
                    n for (n,) in names if self.guard.may(n, f"tracking/{row.id}", "read")
                }
            elif self.guard.may(row.namespace, f"tracking/{row.id}", "read"):
                seen.experiments.add(row.id)
            else:
                hidden.append(row.id)
        if hidden:  # broker-opened runs readable through their workload
            opened = conn.execute(
                select(RUN.c.run_id, RUN.c.namespace, RUN.c.workload_id).where(
                    RUN.c.experiment_id.in_(hidden), RUN.c.workload_id.is_not(None)
                )
            )
            seen.runs = {
                r.run_id for r in opened if self.guard.may(r.namespace, f"experiment/{r.workload_id}", "read")
            }
        return seen

    # logged models -----------------------------------------------------------------------------
    def may_model(self, row: Any, action: str) -> bool:
        return may_logged_model(self.guard, self.scope, row, action)

    def model(self, row: Any, action: str) -> Any:
        if not self.may_model(row, "read"):
            raise not_found(f"Logged model with ID '{row.model_id}' not found")
        if action != "read" and not self.may_model(row, action):
            raise denied(f"{self.user} may not {action} logged model {row.model_id}")
        return row
