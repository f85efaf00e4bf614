"""Who may do what with a registered model: ``model/<name>`` in the model's namespace.

What the caller may not read is the same 404 as a model that does not exist; what they may read
but not change is a 403 naming the deny line that decided, when one did
(:meth:`broker.guard.Guard.require_explained`). A replica's run token acts as its run's user and
may only read models, create one, and add versions whose source is its own run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.errors import NotFound
from broker.guard import Forbidden
from broker.model_registry.history import Actor

if TYPE_CHECKING:
    from broker.model_registry.service import Caller

READ = "read"
EDIT = "edit"
PROMOTE = "promote"
DELETE = "delete"


def model_object(name: str) -> str:
    return f"model/{name}"


def model_missing(name: str) -> NotFound:
    """The one answer for a model that does not exist and one the caller may not read."""
    return NotFound(f"Registered Model with name={name} not found")


def may_read(caller: Caller, namespace: str, name: str) -> bool:
    return caller.guard.may(namespace, model_object(name), READ)


def readable(caller: Caller, row: Any, name: str | None = None) -> Any:
    """``row`` (a registry_model row, None when missing) when the caller may read it, else 404."""
    if row is None or not may_read(caller, row.namespace, row.name):
        raise model_missing(name if name is not None else row.name)
    return row


def require(caller: Caller, row: Any, action: str, *, name: str | None = None) -> Any:
    """``row`` when the caller may read it and ``action`` it: 404, else 403 naming the deny line."""
    readable(caller, row, name)
    if action != READ:
        unscoped(caller, f"{action} registered models")
        caller.guard.require_explained(row.namespace, model_object(row.name), action)
    return row


def unscoped(caller: Caller, what: str) -> None:
    """403 for a run token: ``what`` is not a replica's to do."""
    if caller.scope is not None:
        raise Forbidden(
            f"a run token may only read registered models and register its own run's models; "
            f"it may not {what}"
        )


def actor_of(caller: Caller) -> Actor:
    return Actor(caller.guard.user, caller.scope.run_id if caller.scope is not None else None)
