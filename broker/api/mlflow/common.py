"""Small helpers the MLflow handlers share: the database, tag and param lists, enums, page sizes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from broker.api.mlflow.request import Args
from broker.api.mlflow_errors import invalid
from broker.store.database import Database
from broker.tracking.validation import MAX_PARAM_VALUE, MAX_TAG_VALUE, check_key, check_value, shown


def db(request: Request) -> Database:
    database: Database = request.app.state.broker.db
    return database


def key_values(items: list[dict[str, Any]], field: str, limit: int) -> list[tuple[str, str]]:
    """``[{key, value}]`` checked (keys) and cut (values longer than ``limit``)."""
    return [
        (
            check_key(item.get("key"), f"{field}[{i}].key"),
            check_value(item.get("value"), f"{field}[{i}].value", limit),
        )
        for i, item in enumerate(items)
    ]


def tags_of(args: Args, field: str = "tags") -> list[tuple[str, str]]:
    return key_values(args.objects(field), field, MAX_TAG_VALUE)


def params_of(args: Args, field: str = "params") -> list[tuple[str, str]]:
    return key_values(args.objects(field), field, MAX_PARAM_VALUE)


def enum(args: Args, name: str, choices: tuple[str, ...], default: str) -> str:
    """An enum sent by name (or by its proto number, 1-based)."""
    value = args.raw(name)
    if value is None or value == "":
        return default
    if isinstance(value, str) and value in choices:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= len(choices):
        return choices[value - 1]
    if isinstance(value, str) and value.isdigit() and 1 <= int(value) <= len(choices):
        return choices[int(value) - 1]
    raise invalid(
        f"Invalid value {shown(value)} for parameter '{name}': expected one of {', '.join(choices)}"
    )


def page_size(args: Args, name: str, default: int, cap: int) -> int:
    size = args.integer(name, default)
    assert size is not None
    if size < 1:
        raise invalid(f"Invalid value {size} for parameter '{name}' supplied: it must be at least 1")
    if size > cap:
        raise invalid(f"Invalid value {size} for parameter '{name}' supplied: it must be at most {cap}")
    return size
