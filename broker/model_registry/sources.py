"""A version's source: what the creator names, resolved to artifact-store paths the caller may
read (or to another registered version), with the run it came from for lineage.

Accepted sources:

* ``runs:/<run_id>/<path>``: ``<path>`` under the run's artifacts (``<exp>/<run>/artifacts``);
  when nothing is there, the logged model of that run named ``<path>`` (MLflow 3 keeps a
  model's files with the logged model, not the run);
* ``models:/m-<id>``: a logged model's artifacts;
* ``models:/<name>/<version>``, ``models:/<name>/<stage>``, ``models:/<name>/latest``,
  ``models:/<name>@<alias>``: another registered version (its file list is copied);
* ``mlflow-artifacts:/<path>``, the broker's own
  ``http(s)://<host>/api/2.0/mlflow-artifacts/artifacts/<path>``, or a bare artifact path;
* ``experiment/<experiment id>/<path>`` (where Submarine's SDK puts an experiment's files):
  ``<path>`` under the artifacts of the newest attempt's run of that broker experiment.

The caller must be able to read what the source names under the tracking rules
(:mod:`broker.tracking.access_rules`, :func:`broker.artifacts.gate.decide`): otherwise 404, as for
a source that does not exist. A run token may only name its own run (else 403). Anything else
(``s3://``, ``file://``, another server) is 400. Every refusal names the field (``source``, or
``baseDir`` for Submarine's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import select

from broker.api.mlflow_errors import MlflowError
from broker.artifacts.gate import MODELS, decide
from broker.artifacts.store import InvalidArtifactPath, clean_path
from broker.errors import BadRequest, FieldProblem, NotFound
from broker.guard import Forbidden
from broker.model_registry import records
from broker.model_registry.access import may_read
from broker.model_registry.stages import STAGES, canonical_stage
from broker.tracking import runs
from broker.tracking.access_rules import may_logged_model, may_run
from broker.tracking.model import ACTIVE, TrackingLoggedModel, TrackingRun, TrackingTag

if TYPE_CHECKING:
    from broker.model_registry.service import Caller

ARTIFACTS_SCHEME = "mlflow-artifacts"
_PROXY_MARKERS = ("/api/2.0/mlflow-artifacts/artifacts/", "/ajax-api/2.0/mlflow-artifacts/artifacts/")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
#: The run tag the broker sets on the runs it opens for attempts (broker.tracking.attempt_runs).
CLUSTER_TAG = "submarine.cluster"
MAX_SOURCE = 5000
#: Submarine's SDK keeps an experiment's files under ``experiment/<experiment id>/``.
WORKLOAD_PREFIX = "experiment"


@dataclass(frozen=True)
class Resolved:
    """Where a version's files come from: an artifact-store ``root`` (a folder, or one file), or
    ``from_version`` (model key, version) whose file list is copied. ``fallback`` is tried when
    ``root`` holds nothing (a ``runs:/`` path that is a logged model's name)."""

    root: str | None = None
    from_version: tuple[int, int] | None = None
    fallback: str | None = None
    fallback_model_id: str | None = None
    logged_model_id: str | None = None
    #: The lineage columns of registry_version (run_id, tracking_experiment_id, ...).
    lineage: dict[str, Any] | None = None


def missing(message: str, field: str) -> NotFound:
    error = NotFound(f"{field}: {message}")
    error.field = field
    error.problems = [FieldProblem(field, message)]
    return error


def _bad(message: str, field: str) -> BadRequest:
    return BadRequest(f"{field}: {message}", field=field)


def _refused(caller: Caller, message: str, field: str) -> Exception:
    """A source the caller may not read: 404, or for a run token 403 (it may only name its run)."""
    if caller.scope is not None:
        return Forbidden(f"{field}: a run token may only register files of its own run ({message})")
    return missing(message, field)


def resolve(
    conn: Any, caller: Caller, source: Any, *, field: str = "source", server_host: str | None = None
) -> Resolved:
    """``source`` resolved for ``caller``; raises as the module says."""
    if not isinstance(source, str) or not source.strip():
        raise _bad("a source is required (runs:/<run id>/<path>, models:/..., or an artifact path)", field)
    if len(source) > MAX_SOURCE:
        raise _bad(f"longer than {MAX_SOURCE} characters", field)
    scheme_match = _SCHEME.match(source)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme == "runs":
        return _run_source(conn, caller, source[len("runs:") :], field)
    if scheme == "models":
        return _models_source(conn, caller, source[len("models:") :], field)
    if scheme == ARTIFACTS_SCHEME:
        return path_source(conn, caller, urlsplit(source).path.lstrip("/"), field)
    if scheme in ("http", "https"):
        parts = urlsplit(source)
        marker = next((m for m in _PROXY_MARKERS if m in parts.path), None)
        if marker is None or (server_host is not None and parts.netloc.lower() != server_host.lower()):
            raise _bad(
                f"{_shown(source)} is not this broker's artifact API; name runs:/<run id>/<path>, "
                "models:/... or mlflow-artifacts:/<path>",
                field,
            )
        return path_source(conn, caller, unquote(parts.path.split(marker, 1)[1]), field)
    if scheme:
        raise _bad(
            f"{_shown(source)}: the registry copies only from the broker's artifact store "
            "(runs:/<run id>/<path>, models:/..., mlflow-artifacts:/<path> or an artifact path), "
            f"not from {scheme}: URIs",
            field,
        )
    if source.startswith(f"{WORKLOAD_PREFIX}/"):
        return _workload_source(conn, caller, source[len(WORKLOAD_PREFIX) + 1 :], field)
    return path_source(conn, caller, source, field)


def _workload_source(conn: Any, caller: Caller, rest: str, field: str) -> Resolved:
    workload_id, _, path = rest.partition("/")
    path = _clean(path, field)
    run = conn.execute(
        select(TrackingRun)
        .where(TrackingRun.workload_id == workload_id)
        .order_by(TrackingRun.attempt.desc().nulls_last(), TrackingRun.start_time.desc())
        .limit(1)
    ).first()
    if run is None or not may_run(caller.guard, caller.scope, run, "read"):
        raise _refused(caller, f"no experiment {workload_id} with tracked files", field)
    return Resolved(root=_join(_artifact_root(run.artifact_uri), path), lineage=lineage_of(conn, run))


def _shown(text: str) -> str:
    return repr(text if len(text) <= 200 else text[:200] + "…")


def _clean(path: str, field: str) -> str:
    try:
        return clean_path(path, folder=True)
    except InvalidArtifactPath as exc:
        raise _bad(str(exc), field) from None


def _artifact_root(uri: str) -> str:
    """The store path of a broker artifact URI (``mlflow-artifacts:/<path>``)."""
    return urlsplit(uri).path.lstrip("/")


def _join(root: str, path: str) -> str:
    return f"{root}/{path}" if path else root


def _run_source(conn: Any, caller: Caller, rest: str, field: str) -> Resolved:
    run_id, _, path = rest.lstrip("/").partition("/")
    path = _clean(path, field)
    if not run_id:
        raise _bad("runs:/ needs a run id: runs:/<run id>/<path>", field)
    run = readable_run(conn, caller, run_id, field)
    fallback = None
    fallback_id = None
    if path:
        model = conn.execute(
            select(TrackingLoggedModel)
            .where(
                TrackingLoggedModel.source_run_id == run_id,
                TrackingLoggedModel.name == path,
                TrackingLoggedModel.lifecycle_stage == ACTIVE,
            )
            .order_by(TrackingLoggedModel.creation_timestamp_ms.desc())
            .limit(1)
        ).first()
        if model is not None and may_logged_model(caller.guard, caller.scope, model, "read"):
            fallback = _artifact_root(model.artifact_uri)
            fallback_id = model.model_id
    return Resolved(
        root=_join(_artifact_root(run.artifact_uri), path),
        fallback=fallback,
        fallback_model_id=fallback_id,
        lineage=lineage_of(conn, run),
    )


def readable_run(conn: Any, caller: Caller, run_id: str, field: str) -> Any:
    """The run ``run_id`` when the caller may read it (404, or 403 for another run's token)."""
    run = runs.get(conn, run_id) if len(run_id) <= 32 else None
    if run is None or not may_run(caller.guard, caller.scope, run, "read"):
        raise _refused(caller, f"Run with id={run_id} not found", field)
    return run


def readable_logged_model(conn: Any, caller: Caller, model_id: str, field: str) -> Any:
    model = conn.execute(select(TrackingLoggedModel).where(TrackingLoggedModel.model_id == model_id)).first()
    if (
        model is None
        or model.lifecycle_stage != ACTIVE
        or not may_logged_model(caller.guard, caller.scope, model, "read")
    ):
        raise _refused(caller, f"Logged model with ID '{model_id}' not found", field)
    return model


def _models_source(conn: Any, caller: Caller, rest: str, field: str) -> Resolved:
    rest = rest.lstrip("/")
    if "/" not in rest and "@" not in rest:
        model = readable_logged_model(conn, caller, rest, field)
        run = runs.get(conn, model.source_run_id) if model.source_run_id else None
        return Resolved(
            root=_artifact_root(model.artifact_uri),
            logged_model_id=model.model_id,
            lineage=lineage_of(conn, run)
            if run is not None
            else {"tracking_experiment_id": model.experiment_id},
        )
    if caller.scope is not None:
        raise Forbidden(f"{field}: a run token may only register files of its own run")
    if "@" in rest and "/" not in rest.rpartition("@")[2]:
        name, _, alias = rest.rpartition("@")
        reference = None
    else:
        name, _, reference = rest.rpartition("/")
        alias = None
    owner = records.model_named(conn, name)
    if owner is None or not may_read(caller, owner.namespace, owner.name):
        raise missing(f"Registered Model with name={name} not found", field)
    number = _version_number(conn, owner.model_key, reference, alias, field)
    row = records.version_row(conn, owner.model_key, number) if number is not None else None
    if row is None:
        raise missing(f"no version {reference or '@' + str(alias)} of registered model {name}", field)
    lineage = {
        "run_id": row.run_id,
        "tracking_experiment_id": row.tracking_experiment_id,
        "workload_id": row.workload_id,
        "cluster": row.cluster,
        "datasets": row.datasets,
    }
    return Resolved(
        from_version=(owner.model_key, row.version), logged_model_id=row.logged_model_id, lineage=lineage
    )


def _version_number(
    conn: Any, model_key: int, reference: str | None, alias: str | None, field: str
) -> int | None:
    if alias is not None:
        return records.alias_target(conn, model_key, alias)
    assert reference is not None
    if reference.isdigit() and len(reference) <= 9:
        return int(reference)
    rows = records.versions_of(conn, model_key)
    if reference.lower() == "latest":
        return rows[-1].version if rows else None
    if reference.lower() in {s.lower() for s in STAGES} | {"staging"}:
        newest = records.latest_per_stage(rows, [canonical_stage(reference, field)])
        return newest[0].version if newest else None
    raise _bad(f"models:/<name>/{_shown(reference)}: expected a version number, a stage or latest", field)


def path_source(conn: Any, caller: Caller, raw: str, field: str) -> Resolved:
    """An artifact-store path the caller may read under the tracking rules."""
    path = _clean(raw, field)
    if not path:
        raise _bad("the artifact store's root cannot be registered; name a folder", field)
    try:
        decide(conn, caller.guard, caller.scope, path, write=False)
    except MlflowError as exc:
        raise _refused(caller, exc.message, field) from None
    segments = path.split("/")
    lineage: dict[str, Any] = {"tracking_experiment_id": int(segments[0])}
    logged_model_id = None
    if len(segments) >= 3 and segments[1] == MODELS:
        model = conn.execute(
            select(TrackingLoggedModel).where(TrackingLoggedModel.model_id == segments[2])
        ).first()
        if model is not None:
            logged_model_id = model.model_id
            run = runs.get(conn, model.source_run_id) if model.source_run_id else None
            if run is not None:
                lineage = lineage_of(conn, run)
    elif len(segments) >= 2:
        run = runs.get(conn, segments[1])
        if run is not None and run.experiment_id == int(segments[0]):
            lineage = lineage_of(conn, run)
    return Resolved(root=path, logged_model_id=logged_model_id, lineage=lineage)


def lineage_of(conn: Any, run: Any) -> dict[str, Any]:
    """The lineage columns from a tracking run: the run, its experiment, the workload the broker
    opened it for, the cluster tag the broker set, and the datasets it logged as inputs."""
    cluster = conn.execute(
        select(TrackingTag.value).where(TrackingTag.run_id == run.run_id, TrackingTag.key == CLUSTER_TAG)
    ).scalar()
    datasets = []
    for entry in run.inputs or []:
        dataset = entry.get("dataset") if isinstance(entry, dict) else None
        if isinstance(dataset, dict):
            datasets.append(
                {k: str(dataset[k]) for k in ("name", "digest", "source") if dataset.get(k) is not None}
            )
    return {
        "run_id": run.run_id,
        "tracking_experiment_id": run.experiment_id,
        "workload_id": run.workload_id,
        "cluster": cluster,
        "datasets": datasets,
    }
