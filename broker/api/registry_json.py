"""The registry's records in Submarine's JSON: ``RegisteredModelEntity``, ``ModelVersionEntity``
and the broker's history events, plus the reading of what Submarine's clients send.

Times are ISO 8601 in UTC with milliseconds (``2026-12-07T12:00:00.123Z``): the SDK reads its
entities' ``creationTime``/``lastUpdatedTime`` with ``dateutil.parser.parse``, which takes them.

Tags: Submarine's are plain strings, the store's (shared with MLflow) are key/value pairs. A
Submarine tag ``t`` is stored as key ``t`` with the empty value; a stored tag is shown as its key
when its value is empty and as ``key=value`` otherwise (an MLflow tag with a value), and removing
that shown string removes the tag (:func:`stored_tag_key`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from broker.errors import BadRequest
from broker.model_registry.views import HistoryEvent, ModelView, VersionView


def iso_ms(epoch_ms: int | None) -> str | None:
    """Epoch milliseconds as ``2026-12-07T12:00:00.123Z``."""
    if epoch_ms is None:
        return None
    stamp = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def shown_tags(tags: Mapping[str, str]) -> list[str]:
    """The store's tags as Submarine's strings, sorted: ``key``, or ``key=value`` with a value."""
    return sorted(key if not value else f"{key}={value}" for key, value in tags.items())


def stored_tag_key(tags: Mapping[str, str], shown: str) -> str:
    """The stored key a Submarine tag string names: the string itself when it is a key, else
    ``key`` of a ``key=value`` it was shown as (else the string: the store answers 404)."""
    if shown in tags:
        return shown
    key, equals, value = shown.partition("=")
    if equals and tags.get(key) == value:
        return key
    return shown


def model_json(model: ModelView) -> dict[str, Any]:
    """``RegisteredModelEntity``, plus the broker's ``namespace``, ``owner`` and ``aliases``."""
    return {
        "modelId": model.model_key,
        "name": model.name,
        "creationTime": iso_ms(model.creation_timestamp),
        "lastUpdatedTime": iso_ms(model.last_updated_timestamp),
        "description": model.description or None,
        "tags": shown_tags(model.tags),
        "namespace": model.namespace,
        "owner": model.user_id,
        "aliases": dict(sorted(model.aliases.items())),
    }


def version_json(version: VersionView) -> dict[str, Any]:
    """``ModelVersionEntity``, plus the broker's ``namespace``, ``source``, ``aliases``,
    ``runId``, ``lineage`` and ``servedOn`` (the serves of the version). ``modelVersionId`` is
    null: versions are known by name and number (Submarine's serving took either)."""
    lineage = version.lineage
    return {
        "modelVersionId": None,
        "name": version.model_name,
        "version": version.version,
        "id": version.submarine_id,
        "userId": version.user_id,
        "experimentId": lineage.workload_id,
        "modelType": version.model_type,
        "currentStage": version.current_stage,
        "creationTime": iso_ms(version.creation_timestamp),
        "lastUpdatedTime": iso_ms(version.last_updated_timestamp),
        "dataset": version.dataset,
        "description": version.description or None,
        "tags": shown_tags(version.tags),
        "namespace": version.namespace,
        "source": version.source,
        "aliases": sorted(version.aliases),
        "runId": lineage.run_id,
        "lineage": {
            "runId": lineage.run_id,
            "trackingExperimentId": lineage.tracking_experiment_id,
            "experimentId": lineage.workload_id,
            "cluster": lineage.cluster,
            "datasets": lineage.datasets,
        },
        "servedOn": version.served_on,
    }


def event_json(event: HistoryEvent) -> dict[str, Any]:
    """One audited change: what, who, when (ISO and epoch ms), from what to what, and why."""
    return {
        "id": event.id,
        "name": event.model_name,
        "version": event.version,
        "namespace": event.namespace,
        "action": event.action,
        "actor": event.actor,
        "at": iso_ms(event.at),
        "atMs": event.at,
        "from": event.from_value,
        "to": event.to_value,
        "message": event.message or None,
    }


# -- reading what clients send ------------------------------------------------------------------
def optional_text(document: Mapping[str, Any], field: str) -> str | None:
    """``document[field]`` when it is a string, None when absent or null, else a 400 naming it."""
    value = document.get(field)
    if value is None or isinstance(value, str):
        return value
    raise BadRequest(f"{field}: must be a string, not {type(value).__name__}", field=field)


def required_text(document: Mapping[str, Any], field: str) -> str:
    """A non-blank string ``document[field]``, else a 400 naming it."""
    value = optional_text(document, field)
    if value is None or not value.strip():
        raise BadRequest(f"{field}: is required", field=field)
    return value


def tag_list(document: Mapping[str, Any], field: str = "tags") -> list[str]:
    """Submarine's ``tags``: a list of non-blank strings (absent or null: none), else a 400."""
    value = document.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRequest(f"{field}: must be a list of strings, not {type(value).__name__}", field=field)
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise BadRequest(f"{field}[{index}]: must be a non-empty string", field=f"{field}[{index}]")
    return list(dict.fromkeys(value))


def whole_number(raw: object, field: str) -> int:
    """A version number: a positive whole number (an int, or digits in a path or a query), else a
    400 naming ``field``."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        number = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18:
        number = int(raw)
    else:
        shown = str(raw) if len(str(raw)) <= 40 else str(raw)[:40] + "…"
        raise BadRequest(f"{field}: '{shown}' is not a whole number", field=field)
    if number < 1 or number > 2**62:
        raise BadRequest(f"{field}: must be between 1 and {2**62}", field=field)
    return number
