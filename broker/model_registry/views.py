"""What the registry answers: plain records the API layers turn into Submarine's or MLflow's JSON.

Times are epoch milliseconds. Stages are Submarine's (``None``, ``Developing``, ``Production``,
``Archived``); MLflow's ``Staging`` is read as ``Developing`` on input (see
:func:`broker.model_registry.stages.canonical_stage`) and MLflow clients are shown the stored
stage as ``current_stage``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Lineage:
    """Where a version came from, where known: the tracking run and experiment, the broker
    experiment (Submarine's ``experimentId``, a workload id), the cluster it ran on and the
    dataset references its run logged (``[{name, digest, source}]``)."""

    run_id: str | None = None
    tracking_experiment_id: str | None = None
    workload_id: str | None = None
    cluster: str | None = None
    datasets: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class VersionView:
    """One model version."""

    model_name: str
    model_key: int  # the registered model's numeric id (stable across renames)
    version: int
    namespace: str
    user_id: str
    creation_timestamp: int
    last_updated_timestamp: int
    current_stage: str
    description: str
    source: str  # what the creator gave (runs:/..., models:/..., an artifact path, a baseDir)
    status: str  # always "READY": the files are copied before the version exists
    run_link: str
    tags: dict[str, str]
    aliases: list[str]
    dataset: str | None  # Submarine's free-text dataset field
    model_type: str | None  # Submarine's description.json model_type
    submarine_id: str | None  # Submarine's description.json id
    logged_model_id: str | None  # MLflow 3's m-... when the source was one
    lineage: Lineage
    download_uri: str  # mlflow-artifacts:/registry/<model_key>/<version>
    #: The serves (not deleted) of this version: ``[{id, name, namespace, status, cluster}]``.
    served_on: list[dict[str, object]] = field(default_factory=list)


@dataclass(frozen=True)
class ModelView:
    """One registered model, with its tags, aliases (alias -> version) and the newest version
    per stage (MLflow's ``latest_versions``)."""

    name: str
    model_key: int
    namespace: str
    user_id: str
    description: str
    creation_timestamp: int
    last_updated_timestamp: int
    tags: dict[str, str]
    aliases: dict[str, int]
    latest_versions: list[VersionView]


@dataclass(frozen=True)
class HistoryEvent:
    """One audited change. ``action`` is one of :data:`broker.model_registry.history.ACTIONS`
    (``model_created``, ``model_renamed``, ``description_changed``, ``model_deleted``,
    ``model_tag_set``, ``model_tag_deleted``, ``version_created``, ``stage_changed``,
    ``dataset_changed``, ``version_tag_set``, ``version_tag_deleted``, ``version_deleted``,
    ``alias_set``, ``alias_deleted``); ``from_value``/``to_value`` are the old and new value
    (stage, name, alias target version, tag value, description, dataset) where the action has
    them. ``message``: the caller's for stage and description changes; ``tag <key>`` and
    ``alias <alias>`` for tag and alias events; ``from <source>`` for a new version; a change
    made with a run token ends with ``(via run <run id>)`` (the actor is the run's user)."""

    id: int
    model_name: str  # the name at the time of the event
    model_key: int
    version: int | None
    namespace: str
    action: str
    actor: str
    at: int
    from_value: str | None
    to_value: str | None
    message: str
