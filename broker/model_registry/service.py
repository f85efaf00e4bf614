"""The registry's one entry point: every read and change of registered models and versions, with
its permission check and its history event, in one transaction.

Permissions: a model belongs to a namespace (team); the object is ``model/<name>`` with actions
``read``, ``edit`` (create, describe, tag, alias, add and delete versions), ``promote`` (change a
version's stage) and ``delete`` (the model). What the caller may not read is
:class:`~broker.errors.NotFound` (404, the same answer as a model that does not exist); what they
may read but not change is :class:`~broker.guard.Forbidden` (403) whose message names the policy
line that denied it when a deny line decided. A run-scoped caller (a replica's run token) acts
as the run's user: it may read models, create a model in its run's namespace and create versions
whose source is its own run (what ``mlflow.register_model`` does from a training script);
anything else is 403. Model names are unique across namespaces (MLflow's clients name a model
alone), so a taken name is 409 whoever holds it.

Errors: unknown model or version or alias 404; duplicate model name 409 (:class:`Conflict`);
invalid names, stages, sources, a baseDir without ``description.json`` 400 naming the field
(``error.field``); deleting a model with a version in ``Production`` 406
(:class:`NotAcceptable`); a source file that changed or vanished while being copied 409; the
artifact store down 503.

Every method is async: database work runs on the database's threads, file copies stream through
the artifact store. Every change writes one :class:`~broker.model_registry.views.HistoryEvent`
per effect (a transition with ``archive_existing`` writes one per archived version too), in
the same transaction as the change; deleting a model keeps its events.
"""

from __future__ import annotations

from broker.model_registry.alias_operations import AliasHistoryFileOperations
from broker.model_registry.model_operations import ModelOperations
from broker.model_registry.registry_core import (
    Caller,
    NotAcceptable,
    Page,
    alias_missing,
    version_missing,
)
from broker.model_registry.version_operations import VersionOperations

__all__ = ["Caller", "ModelRegistry", "NotAcceptable", "Page", "alias_missing", "version_missing"]


class ModelRegistry(ModelOperations, VersionOperations, AliasHistoryFileOperations):
    """Registered models and versions on ``db``, version files on ``artifacts``: the one entry
    point the APIs call (each part in its module, all on :class:`RegistryCore`)."""
