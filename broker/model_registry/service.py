"""The registry's one entry point: every read and change of registered models and versions, with
its permission check and its history event, in one transaction.

Permissions: a model belongs to a namespace (team); the object is ``model/<name>`` with actions
``read``, ``edit`` (create, describe, tag, alias, add and delete versions), ``promote`` (change a
version's stage) and ``delete`` (the model). What the caller may not read is
:class:`~broker.errors.NotFound` (404, the same answer as a model that does not exist); what they
may read but not change is :class:`~broker.guard.Forbidden` (403) whose message names the policy
line that denied it when a deny line decided. A run-scoped caller (a replica's run token) may
only create versions whose source is its own run, in its run's namespace, acting as the run's
user; anything else is 403.

Errors: unknown model or version or alias 404; duplicate model name 409 (:class:`Conflict`);
invalid names, stages, sources, a baseDir without ``description.json`` 400 naming the field;
deleting a model with a version in ``Production`` 406 (:class:`NotAcceptable`).

Every method is async: database work runs on the database's threads, file copies stream through
the artifact store. Every change writes one :class:`~broker.model_registry.views.HistoryEvent`
per effect (a transition with ``archive_existing`` writes one per archived version too), in
the same transaction as the change; deleting a model keeps its events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker.artifacts.store import ArtifactBlob, ArtifactStore, FileInfo
from broker.errors import ApiError
from broker.guard import Guard
from broker.model_registry.views import HistoryEvent, ModelView, VersionView
from broker.store.database import Database
from broker.tracking.scope import RunScope


class NotAcceptable(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(406, message)


@dataclass(frozen=True)
class Caller:
    """Who asks: their guard (user + policy) and, for a replica's token, its run scope."""

    guard: Guard
    scope: RunScope | None = None
    #: Where a model this caller creates belongs when the request names no namespace.
    home_namespace: str = "default"


@dataclass(frozen=True)
class Page:
    """One page of a search, and the token of the next (None on the last page)."""

    items: list[Any]
    next_page_token: str | None


class ModelRegistry:
    """Registered models and versions on ``db``, version files on ``artifacts``."""

    def __init__(self, db: Database, artifacts: ArtifactStore) -> None:
        self.db = db
        self.artifacts = artifacts

    # registered models ------------------------------------------------------------------------
    async def create_model(
        self,
        caller: Caller,
        name: str,
        *,
        namespace: str | None = None,
        description: str = "",
        tags: Sequence[tuple[str, str]] = (),
    ) -> ModelView:
        """A new model (``edit`` on ``model/<name>`` in ``namespace``, default the caller's home)."""
        raise NotImplementedError

    async def get_model(self, caller: Caller, name: str) -> ModelView:
        raise NotImplementedError

    async def search_models(
        self,
        caller: Caller,
        *,
        filter: str | None = None,
        order_by: Sequence[str] = (),
        max_results: int = 100,
        page_token: str | None = None,
    ) -> Page:
        """The models the caller may read. ``filter`` is MLflow's registered-model filter
        (``name``, ``name LIKE/ILIKE``, ``tags.<k>``/``tag.<k>`` =, !=, LIKE, ILIKE, joined by
        AND); ``order_by``: ``name``, ``creation_timestamp``, ``last_updated_timestamp`` with
        ASC/DESC. Page items are :class:`ModelView`."""
        raise NotImplementedError

    async def update_model(
        self,
        caller: Caller,
        name: str,
        *,
        new_name: str | None = None,
        description: str | None = None,
    ) -> ModelView:
        """Rename and/or describe (``edit``); a rename to a taken name is 409."""
        raise NotImplementedError

    async def delete_model(self, caller: Caller, name: str) -> None:
        """Delete the model and its versions (``delete``); 406 while a version is in Production.
        Files no other version shares are removed; the history stays."""
        raise NotImplementedError

    async def set_model_tag(self, caller: Caller, name: str, key: str, value: str) -> None:
        raise NotImplementedError

    async def delete_model_tag(self, caller: Caller, name: str, key: str) -> None:
        """404 when the model has no such tag."""
        raise NotImplementedError

    # versions ---------------------------------------------------------------------------------
    async def create_version(
        self,
        caller: Caller,
        name: str,
        *,
        source: str,
        run_id: str | None = None,
        model_id: str | None = None,
        description: str = "",
        tags: Sequence[tuple[str, str]] = (),
        run_link: str = "",
        create_model: bool = False,
    ) -> VersionView:
        """A new version (number max+1) of ``name`` (``edit``), its files copied from ``source``
        into the registry's content-addressed area: ``runs:/<run>/<path>``, ``models:/m-<id>``
        (a logged model), ``models:/<name>/<version>`` or ``models:/<name>@<alias>`` (another
        version: its file list, no bytes copied), ``mlflow-artifacts:/<path>``, the tracking
        server's own ``http(s)://.../api/2.0/mlflow-artifacts/artifacts/<path>`` or a bare
        artifact path. The caller must be able to read what the source names; anything else
        (``s3://``, ``file://``, another server) is 400 naming ``source``. Lineage is read from
        the source run. ``create_model`` creates the model first when missing (run tokens)."""
        raise NotImplementedError

    async def create_version_from_base_dir(
        self,
        caller: Caller,
        name: str,
        *,
        base_dir: str,
        experiment_id: str | None = None,
        description: str = "",
        tags: Sequence[str] = (),
        dataset: str | None = None,
    ) -> VersionView:
        """Submarine's ``POST /v1/model-version?baseDir=``: reads ``<base_dir>/description.json``
        (``id``, ``model_type``) from the artifact store (400 naming ``baseDir`` when missing or
        not JSON) and registers every file under ``base_dir``. ``experiment_id`` is a broker
        experiment (workload) id the caller may read, recorded as lineage."""
        raise NotImplementedError

    async def get_version(self, caller: Caller, name: str, version: int) -> VersionView:
        raise NotImplementedError

    async def list_versions(self, caller: Caller, name: str) -> list[VersionView]:
        """Every version of ``name``, oldest first."""
        raise NotImplementedError

    async def search_versions(
        self,
        caller: Caller,
        *,
        filter: str | None = None,
        order_by: Sequence[str] = (),
        max_results: int = 10000,
        page_token: str | None = None,
    ) -> Page:
        """Versions of the models the caller may read. ``filter``: ``name`` (=, LIKE, ILIKE),
        ``version_number``, ``run_id`` (= or IN), ``source_path``, ``current_stage``,
        ``tags.<k>``, joined by AND. Page items are :class:`VersionView`."""
        raise NotImplementedError

    async def latest_versions(
        self, caller: Caller, name: str, stages: Sequence[str] = ()
    ) -> list[VersionView]:
        """The newest version per stage asked (every stage when none)."""
        raise NotImplementedError

    async def update_version(
        self,
        caller: Caller,
        name: str,
        version: int,
        *,
        description: str | None = None,
        dataset: str | None = None,
        stage: str | None = None,
        archive_existing: bool = False,
        message: str = "",
    ) -> VersionView:
        """Describe (``edit``) and/or move to ``stage`` (``promote``; Submarine's or MLflow's
        names). ``archive_existing`` moves the model's other versions in that stage to Archived."""
        raise NotImplementedError

    async def delete_version(self, caller: Caller, name: str, version: int) -> None:
        """Delete the version (``edit``) and its aliases; files no other version shares go too."""
        raise NotImplementedError

    async def set_version_tag(self, caller: Caller, name: str, version: int, key: str, value: str) -> None:
        raise NotImplementedError

    async def delete_version_tag(self, caller: Caller, name: str, version: int, key: str) -> None:
        raise NotImplementedError

    # aliases ----------------------------------------------------------------------------------
    async def set_alias(self, caller: Caller, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` (``edit``; moving it is one event, from -> to).
        Aliases match ``[\\w-]{1,255}``; ``latest`` and ``v<digits>`` are reserved (400)."""
        raise NotImplementedError

    async def delete_alias(self, caller: Caller, name: str, alias: str) -> None:
        raise NotImplementedError

    async def version_by_alias(self, caller: Caller, name: str, alias: str) -> VersionView:
        raise NotImplementedError

    # history ----------------------------------------------------------------------------------
    async def history(self, caller: Caller, name: str, version: int | None = None) -> list[HistoryEvent]:
        """The model's events (with ``version``, that version's only), oldest first. A deleted
        model's history stays readable by whoever may read ``model/<name>`` in its namespace."""
        raise NotImplementedError

    # files ------------------------------------------------------------------------------------
    async def list_files(self, caller: Caller, model_key: int, version: int, path: str) -> list[FileInfo]:
        """The registry view ``registry/<model_key>/<version>/<path>`` as a folder listing
        (MLflow's rule: empty for a file or a missing path); 404 when the caller may not read
        the model."""
        raise NotImplementedError

    async def open_file(self, caller: Caller, model_key: int, version: int, path: str) -> ArtifactBlob:
        """A file of the version, streamed from its content-addressed blob."""
        raise NotImplementedError


