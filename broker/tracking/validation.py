"""MLflow's input rules for tracking entities: key shapes, value lengths, batch limits, numbers.

Every refusal is :func:`broker.api.mlflow_errors.invalid` (400 ``INVALID_PARAMETER_VALUE``) naming
the field. Long param and tag values are truncated, not refused, as MLflow does by default
(``MLFLOW_TRUNCATE_LONG_VALUES``). See ../shared/reference/mlflow-rest.md §5.
"""

from __future__ import annotations

import math
import posixpath
import re
from typing import Any

from broker.api.mlflow_errors import invalid

MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_EXPERIMENT_NAME = 500
MAX_EXPERIMENT_TAG_VALUE = 20000
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_BATCH_TOTAL = 1000
#: The largest int64, the wire type of timestamps and steps.
MAX_INT64 = 2**63 - 1

_KEY = re.compile(r"^[A-Za-z0-9_ ./:-]+$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][\w-]{0,255}$")
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "inf": math.inf, "-inf": -math.inf}


def shown(value: Any, limit: int = 60) -> str:
    """A value for an error message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def check_key(key: Any, field: str) -> str:
    """A metric, param or tag key: 1..250 characters of ``[A-Za-z0-9_ ./:-]`` that path
    normalization leaves unchanged (no leading ``/``, no ``..``, no ``//``)."""
    if not isinstance(key, str) or not key:
        raise invalid(f"Missing value for required parameter '{field}'")
    if len(key) > MAX_KEY:
        raise invalid(f"'{field}' exceeds the maximum length of {MAX_KEY} characters: {shown(key)}")
    if not _KEY.match(key):
        raise invalid(
            f"Invalid value {shown(key)} for parameter '{field}': names may only contain "
            "alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colons (:) and slashes (/)"
        )
    normal = posixpath.normpath(key)
    if normal != key or normal == "." or normal.startswith("..") or normal.startswith("/"):
        raise invalid(
            f"Invalid value {shown(key)} for parameter '{field}': names may not be absolute or "
            "contain '..', '//' or a trailing '/'"
        )
    return key


def check_value(value: Any, field: str, limit: int, *, truncate: bool = True) -> str:
    """A param or tag value (a string; numbers are taken as their text), cut to ``limit``."""
    if value is None:
        raise invalid(f"Missing value for required parameter '{field}'")
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        raise invalid(f"Invalid value {shown(value)} for parameter '{field}': expected a string")
    if len(value) > limit:
        if not truncate:
            raise invalid(f"'{field}' exceeds the maximum length of {limit} characters")
        value = value[:limit]
    return value


def check_run_id(value: Any, field: str = "run_id") -> str:
    if not isinstance(value, str) or not value:
        raise invalid(f"Missing value for required parameter '{field}'")
    if not _RUN_ID.match(value):
        raise invalid(f"Invalid value {shown(value)} for parameter '{field}': not a run id")
    return value


def as_double(value: Any, field: str) -> float:
    """A JSON double: a number, or ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (or a number's text)."""
    if isinstance(value, bool) or value is None:
        raise invalid(f"Invalid value {shown(value)} for parameter '{field}': expected a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if value in _SPECIAL:
            return _SPECIAL[value]
        try:
            if len(value) <= 64:
                return float(value)
        except ValueError:
            pass
    raise invalid(f"Invalid value {shown(value)} for parameter '{field}': expected a number")


def as_int64(value: Any, field: str, *, default: int | None = None, minimum: int = -MAX_INT64 - 1) -> int:
    """A JSON int64: a whole number or its decimal text, within int64 and at least ``minimum``."""
    if value is None:
        if default is None:
            raise invalid(f"Missing value for required parameter '{field}'")
        return default
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}", value.strip()):
        number = int(value.strip())
    if number is None:
        raise invalid(f"Invalid value {shown(value)} for parameter '{field}': expected a whole number")
    if not minimum <= number <= MAX_INT64:
        raise invalid(f"Invalid value {number} for parameter '{field}': out of range")
    return number


def check_batch_sizes(metrics: int, params: int, tags: int) -> None:
    """MLflow's log-batch limits: 1000 metrics, 100 params, 100 tags, 1000 entities in all."""
    if metrics > MAX_BATCH_METRICS:
        raise invalid(
            f"A batch logging request can contain at most {MAX_BATCH_METRICS} metrics; got {metrics}"
        )
    if params > MAX_BATCH_PARAMS:
        raise invalid(f"A batch logging request can contain at most {MAX_BATCH_PARAMS} params; got {params}")
    if tags > MAX_BATCH_TAGS:
        raise invalid(f"A batch logging request can contain at most {MAX_BATCH_TAGS} tags; got {tags}")
    if metrics + params + tags > MAX_BATCH_TOTAL:
        raise invalid(
            f"A batch logging request can contain at most {MAX_BATCH_TOTAL} metrics, params and tags "
            f"in all; got {metrics + params + tags}"
        )


def double_json(value: float) -> float | str:
    """A double as MLflow writes it in JSON: special values as the strings protobuf uses."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"
