"""Parse Submarine resource strings (``cpu=1,memory=1024M,nvidia.com/gpu=1``).

Submarine accepts only ``<int><one-char unit>`` memory; we also accept Kubernetes quantities
(``1Gi``, ``500m``, ``1.5G``) as the broker's reference says we should.
"""

from __future__ import annotations

import functools
import math
import re
from decimal import Decimal, InvalidOperation

from runtimes.plan import Resources

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]{0,2})\s*$")

#: Resource keys the broker understands, with the aliases users type.
KNOWN_KEYS = {"cpu": "cpu", "memory": "memory", "nvidia.com/gpu": "gpu", "gpu": "gpu"}

#: The least CPU one replica may ask for: one millicore, Kubernetes' smallest unit.
MIN_CPU = Decimal("0.001")
#: The most one replica may ask for (memory: a cluster's total too): far past any machine, short of
#: numbers that break arithmetic or JSON.
MAX_CPU = 100_000
MAX_MEMORY = 2**60  # 1Ei
MAX_GPU = 10_000


class ResourceError(ValueError):
    """A resource string that cannot be understood; the message says which part and why."""


def _shown(text: str) -> str:
    """``text`` for a message, cut short: a value may be megabytes long."""
    return text if len(text) <= 40 else text[:40] + "…"


def parse_cpu(text: str) -> float:
    """Return CPU cores from ``2``, ``0.5`` or ``500m`` (at least ``1m``)."""
    value = text.strip()
    not_cores = f"cpu '{_shown(text)}' is not a number of cores (examples: 2, 0.5, 500m)"
    try:
        cores = Decimal(value[:-1]) / 1000 if value.endswith("m") else Decimal(value)
    except InvalidOperation:
        raise ResourceError(not_cores) from None
    if not cores.is_finite():
        raise ResourceError(not_cores)
    if cores <= 0:
        raise ResourceError(f"cpu '{_shown(text)}' must be greater than zero")
    if cores < MIN_CPU:
        raise ResourceError(f"cpu '{_shown(text)}' must be at least 1m (0.001 cores)")
    if not math.isfinite(float(cores)):
        raise ResourceError(f"cpu '{_shown(text)}' is too large")
    return float(cores)


def parse_memory(text: str) -> int:
    """Return bytes from a Kubernetes-style quantity (``1024M``, ``2G``, ``1Gi``, ``512Mi``)."""
    match = _QUANTITY.match(text)
    if not match:
        raise ResourceError(f"memory '{_shown(text)}' is not a quantity (examples: 1024M, 2G, 1Gi)")
    number, unit = match.groups()
    if unit in _BINARY:
        factor = _BINARY[unit]
    elif unit in _DECIMAL:
        factor = _DECIMAL[unit]
    else:
        raise ResourceError(
            f"memory '{_shown(text)}' has an unknown unit '{unit}' (use K, M, G, T, Ki, Mi, Gi, Ti)"
        )
    exact = Decimal(number) * factor
    if exact > MAX_MEMORY:  # compared before int(), which is slow on thousands of digits
        raise ResourceError(f"memory '{_shown(text)}' must be at most 1Ei")
    amount = int(exact)
    if amount <= 0:
        raise ResourceError(f"memory '{_shown(text)}' must be greater than zero")
    return amount


def parse_gpu(text: str) -> int:
    """Return a whole number of GPUs (at most :data:`MAX_GPU`)."""
    digits = text.strip()
    magnitude = digits.lstrip("+-").lstrip("0")
    if magnitude.isdigit() and len(magnitude) > len(str(MAX_GPU)):  # int() is slow on thousands of digits
        bound = "must not be negative" if digits.startswith("-") else f"must be at most {MAX_GPU}"
        raise ResourceError(f"nvidia.com/gpu '{_shown(text)}' {bound}")
    try:
        count = int(digits)
    except ValueError:
        raise ResourceError(f"nvidia.com/gpu '{_shown(text)}' must be a whole number") from None
    if count < 0:
        raise ResourceError(f"nvidia.com/gpu '{_shown(text)}' must not be negative")
    if count > MAX_GPU:
        raise ResourceError(f"nvidia.com/gpu '{_shown(text)}' must be at most {MAX_GPU}")
    return count


@functools.lru_cache(maxsize=4096)
def parse_resources(text: str | None) -> Resources:
    """Parse a Submarine resource string; an empty or missing string means the defaults.

    Cached: the same few strings come back with every submission, and Resources is immutable.
    """
    result = Resources()
    if text is None or not text.strip():
        return result
    seen: set[str] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise ResourceError(f"'{part}' is not of the form key=value")
        canonical = KNOWN_KEYS.get(key)
        if canonical is None:
            raise ResourceError(f"unknown resource '{key}' (known: cpu, memory, nvidia.com/gpu)")
        if canonical in seen:
            raise ResourceError(f"resource '{key}' is given twice")
        seen.add(canonical)
        if canonical == "cpu":
            cpu = parse_cpu(value)
            if cpu > MAX_CPU:
                raise ResourceError(f"cpu '{_shown(value)}' must be at most {MAX_CPU} cores for one replica")
            result = result.model_copy(update={"cpu": cpu})
        elif canonical == "memory":
            result = result.model_copy(update={"memory": parse_memory(value)})
        else:
            result = result.model_copy(update={"gpu": parse_gpu(value)})
    return result


def resource_map(text: str | None) -> dict[str, str]:
    """The ``resourceMap`` Submarine shows beside a task's resource string."""
    out: dict[str, str] = {}
    if not text:
        return out
    for part in text.split(","):
        key, _, value = part.strip().partition("=")
        if key:
            out[key.strip()] = value.strip()
    return out
