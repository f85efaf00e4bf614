"""Who may read or write which artifact path: the tracking permissions, applied to paths.

The path says what it belongs to (MLflow's layout, see ../shared/reference/mlflow-rest.md §6):
``<experiment_id>/...`` the experiment, ``<experiment_id>/<run_id>/...`` a run,
``<experiment_id>/models/<model_id>/...`` a logged model. Reading needs ``read`` and writing
``write`` on ``tracking/<experiment_id>`` in the namespace of what the path belongs to (a run's
or a model's own namespace: in experiment 0, shared by everyone, each run keeps its team's). A
run the broker opened for an experiment attempt is also readable by whoever may ``read``
``experiment/<workload_id>``. A run-scoped caller (a replica's run token) reaches only its run's
folder and the folders of the models its run logged. Whatever the caller may not read, and
whatever does not exist, is 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.engine import Connection
from starlette.requests import Request

from broker.api.access import guard_of
from broker.api.mlflow_errors import MlflowError, not_found
from broker.guard import Guard
from broker.tracking.model import DEFAULT_EXPERIMENT_ID, TrackingExperiment, TrackingLoggedModel, TrackingRun
from broker.tracking.scope import RunScope, run_scope

#: The experiment-level folders that hold no run: logged models and traces.
MODELS = "models"
TRACES = "traces"
_MAX_ID_DIGITS = 18  # experiment ids are 63-bit integers


class ArtifactGate(Protocol):
    """Decides whether the caller of ``request`` may read (or, with ``write``, change) ``path``,
    a path :func:`~broker.artifacts.store.clean_path` accepted (``""`` is the root).

    Returns when allowed; raises :class:`MlflowError`: ``RESOURCE_DOES_NOT_EXIST`` (404) for what
    does not exist or the caller may not read, ``PERMISSION_DENIED`` (403) for what the caller
    may read but not change."""

    async def check(self, request: Request, path: str, *, write: bool) -> None: ...


@dataclass(frozen=True)
class _Owner:
    """What a path belongs to, as the permission check needs it."""

    kind: str  # "experiment" (its own folder, models/ or traces/ themselves), "trace", "run", "model"
    experiment_id: int
    namespace: str
    run_id: str | None = None  # the run, or the logged model's source run
    workload_id: str | None = None  # that run's broker experiment, when the broker opened it


def _denied(path: str) -> MlflowError:
    return not_found(f"no artifact at '{path}'" if path else "no artifact root to list")


class TrackingArtifactGate:
    """The default :class:`ArtifactGate`: the rule above, read from the tracking tables."""

    async def check(self, request: Request, path: str, *, write: bool) -> None:
        guard = guard_of(request)
        scope = run_scope(request)
        db = request.app.state.broker.db
        await db.read(lambda conn: decide(conn, guard, scope, path, write=write))


def decide(conn: Connection, guard: Guard, scope: RunScope | None, path: str, *, write: bool) -> None:
    """The rule above for one caller (``guard``, and ``scope`` for a run token) and one path:
    returns when allowed, raises :class:`MlflowError` as :class:`ArtifactGate` says. The model
    registry asks it too, for a version's source."""
    segments = path.split("/") if path else []
    if not segments:  # the root lists every experiment: only for who may read them all
        if scope is None and not write and guard.may("*", "tracking/*", "read"):
            return
        raise _denied(path)
    experiment = segments[0]
    if not experiment.isdigit() or len(experiment) > _MAX_ID_DIGITS:
        raise _denied(path)
    owner = _owner_of(conn, int(experiment), segments[1:])
    if owner is None:
        raise _denied(path)
    if scope is not None:
        # A replica's token: its run's folder and its run's models, nothing else.
        if owner.kind not in ("run", "model") or owner.experiment_id != scope.experiment_id:
            raise _denied(path)
        if owner.run_id != scope.run_id:
            raise _denied(path)
        return
    _require(guard, owner, path, write=write)


def _require(guard: Guard, owner: _Owner, path: str, *, write: bool) -> None:
    if owner.kind == "trace" and owner.experiment_id == DEFAULT_EXPERIMENT_ID:
        return  # experiment 0's traces are everyone's, as the experiment is
    obj = f"tracking/{owner.experiment_id}"
    readable = guard.may(owner.namespace, obj, "read") or (
        owner.workload_id is not None
        and guard.may(owner.namespace, f"experiment/{owner.workload_id}", "read")
    )
    if not readable:
        raise _denied(path)
    if not write:
        return
    if owner.kind == "experiment" or not guard.may(owner.namespace, obj, "write"):
        where = " outside a run, logged model or trace" if owner.kind == "experiment" else ""
        raise MlflowError(
            "PERMISSION_DENIED",
            f"{guard.user} may not write artifacts of experiment {owner.experiment_id}{where}",
        )


def _owner_of(conn: Connection, experiment_id: int, rest: list[str]) -> _Owner | None:
    """What ``<experiment_id>/<rest...>`` belongs to, or None when that does not exist."""
    row = conn.execute(
        select(TrackingExperiment.namespace).where(TrackingExperiment.id == experiment_id)
    ).first()
    if row is None:
        return None
    namespace = str(row.namespace)
    if not rest or (rest[0] in (MODELS, TRACES) and len(rest) == 1):
        return _Owner("experiment", experiment_id, namespace)
    if rest[0] == TRACES:  # no trace table yet: a trace's folder is the experiment's
        return _Owner("trace", experiment_id, namespace)
    if rest[0] == MODELS:
        model = conn.execute(
            select(TrackingLoggedModel.namespace, TrackingLoggedModel.source_run_id).where(
                TrackingLoggedModel.model_id == rest[1], TrackingLoggedModel.experiment_id == experiment_id
            )
        ).first()
        if model is None:
            return None
        source = _run(conn, experiment_id, model.source_run_id) if model.source_run_id else None
        return _Owner(
            "model",
            experiment_id,
            str(model.namespace),
            run_id=model.source_run_id,
            workload_id=source.workload_id if source is not None else None,
        )
    run = _run(conn, experiment_id, rest[0])
    if run is None:
        return None
    return _Owner("run", experiment_id, str(run.namespace), run_id=rest[0], workload_id=run.workload_id)


def _run(conn: Connection, experiment_id: int, run_id: str) -> Any:
    return conn.execute(
        select(TrackingRun.namespace, TrackingRun.workload_id).where(
            TrackingRun.run_id == run_id, TrackingRun.experiment_id == experiment_id
        )
    ).first()
