"""Submarine resource strings (``cpu=1,memory=1024M,nvidia.com/gpu=1``) into Resources."""

from __future__ import annotations

import pytest

from runtimes.plan import DEFAULT_CPU, DEFAULT_MEMORY, Resources
from runtimes.resources import ResourceError, parse_cpu, parse_memory, parse_resources, resource_map


@pytest.mark.parametrize(
    ("text", "cores"),
    [("2", 2.0), ("0.5", 0.5), ("500m", 0.5), ("1500m", 1.5), (" 4 ", 4.0), ("250m", 0.25)],
)
def test_cpu_forms(text: str, cores: float) -> None:
    assert parse_resources(f"cpu={text}").cpu == pytest.approx(cores)


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [
        ("1024M", 1024 * 10**6),
        ("2G", 2 * 10**9),
        ("1Gi", 2**30),
        ("512Mi", 512 * 2**20),
        ("1.5G", 1_500_000_000),
        ("1.5Gi", 3 * 2**29),
        ("64Ki", 64 * 1024),
        ("1000k", 10**6),
        ("123456", 123456),
        ("1T", 10**12),
    ],
)
def test_memory_forms(text: str, nbytes: int) -> None:
    resources = parse_resources(f"memory={text}")
    assert resources.memory == nbytes
    assert isinstance(resources.memory, int)


def test_full_submarine_string() -> None:
    assert parse_resources("cpu=2,memory=2G,nvidia.com/gpu=1") == Resources(cpu=2, memory=2 * 10**9, gpu=1)


@pytest.mark.parametrize("key", ["nvidia.com/gpu", "gpu"])
def test_gpu_keys(key: str) -> None:
    resources = parse_resources(f"{key}=3")
    assert resources.gpu == 3
    # The other fields keep their defaults.
    assert (resources.cpu, resources.memory) == (DEFAULT_CPU, DEFAULT_MEMORY)


def test_zero_gpus_is_allowed() -> None:
    assert parse_resources("cpu=1,nvidia.com/gpu=0").gpu == 0


@pytest.mark.parametrize("text", [None, "", "   ", ","])
def test_empty_means_defaults(text: str | None) -> None:
    resources = parse_resources(text)
    assert resources == Resources(cpu=DEFAULT_CPU, memory=DEFAULT_MEMORY, gpu=0)
    assert resources.cpu == 1.0
    assert resources.memory == 1024 * 2**20


def test_partial_string_keeps_other_defaults() -> None:
    assert parse_resources("memory=2Gi") == Resources(cpu=DEFAULT_CPU, memory=2 * 2**30, gpu=0)
    assert parse_resources("cpu=3") == Resources(cpu=3, memory=DEFAULT_MEMORY, gpu=0)


def test_spaces_around_parts_are_tolerated() -> None:
    assert parse_resources(" cpu = 2 , memory = 1Gi ") == Resources(cpu=2, memory=2**30, gpu=0)


@pytest.mark.parametrize(
    ("text", "must_name"),
    [
        ("cpu=abc", "cpu 'abc'"),
        ("memory=12XB", "12XB"),
        ("memory=lots", "memory 'lots'"),
        ("nvidia.com/gpu=1.5", "nvidia.com/gpu '1.5'"),
        ("cpu", "'cpu'"),
        ("cpu=", "'cpu='"),
        ("foo=1", "'foo'"),
        ("CPU=1", "'CPU'"),
    ],
)
def test_errors_name_the_bad_part(text: str, must_name: str) -> None:
    with pytest.raises(ResourceError) as info:
        parse_resources(text)
    assert must_name in str(info.value)


def test_bad_part_after_good_parts_is_named() -> None:
    with pytest.raises(ResourceError) as info:
        parse_resources("memory=1G,nvidia.com/gpu=1,cpu=abc")
    assert "cpu 'abc'" in str(info.value)


def test_unknown_unit_is_named() -> None:
    with pytest.raises(ResourceError, match="unknown unit 'XB'"):
        parse_memory("12XB")


def test_missing_equals_says_key_value() -> None:
    with pytest.raises(ResourceError, match="key=value"):
        parse_resources("cpu")


def test_unknown_key_lists_known_keys() -> None:
    with pytest.raises(ResourceError) as info:
        parse_resources("foo=1")
    message = str(info.value)
    assert "unknown resource 'foo'" in message
    for known in ("cpu", "memory", "nvidia.com/gpu"):
        assert known in message


@pytest.mark.parametrize(
    "text", ["cpu=1,cpu=2", "memory=1G,memory=1G", "gpu=1,nvidia.com/gpu=1", "nvidia.com/gpu=1,gpu=2"]
)
def test_duplicates_refused(text: str) -> None:
    with pytest.raises(ResourceError, match="given twice"):
        parse_resources(text)


def test_duplicate_error_names_the_repeated_key() -> None:
    with pytest.raises(ResourceError, match="'gpu'"):
        parse_resources("nvidia.com/gpu=1,gpu=2")


@pytest.mark.parametrize(
    ("text", "must_name"),
    [
        ("cpu=0", "cpu '0'"),
        ("cpu=0m", "cpu '0m'"),
        ("cpu=-1", "cpu '-1'"),
        ("cpu=-500m", "cpu '-500m'"),
        ("memory=0", "memory '0'"),
        ("memory=0Gi", "memory '0Gi'"),
        ("memory=-1G", "memory '-1G'"),
        ("nvidia.com/gpu=-1", "nvidia.com/gpu '-1'"),
    ],
)
def test_zero_or_negative_refused(text: str, must_name: str) -> None:
    with pytest.raises(ResourceError) as info:
        parse_resources(text)
    assert must_name in str(info.value)


def test_memory_that_rounds_to_zero_bytes_refused() -> None:
    with pytest.raises(ResourceError, match="greater than zero"):
        parse_memory("0.1")


def test_resource_error_is_a_value_error() -> None:
    # Callers (pydantic validators) rely on this to turn it into a 400.
    assert issubclass(ResourceError, ValueError)


@pytest.mark.parametrize("text", ["NaN", "nan", "sNaN", "inf", "Infinity", "-inf"])
def test_cpu_non_finite_refused_as_resource_error(text: str) -> None:
    # A NaN or infinite core count is not "a number of cores"; the caller must get a
    # ResourceError (a 400), never a decimal.InvalidOperation or an infinite request.
    with pytest.raises(ResourceError, match="cpu"):
        parse_cpu(text)


def test_resource_map_echoes_the_string() -> None:
    assert resource_map("cpu=2,memory=2G,nvidia.com/gpu=1") == {
        "cpu": "2",
        "memory": "2G",
        "nvidia.com/gpu": "1",
    }


def test_resource_map_strips_spaces_and_skips_empty_parts() -> None:
    assert resource_map(" cpu = 1 ,, memory=1Gi ") == {"cpu": "1", "memory": "1Gi"}


@pytest.mark.parametrize("text", [None, ""])
def test_resource_map_empty(text: str | None) -> None:
    assert resource_map(text) == {}


def test_resource_map_keeps_keys_as_typed() -> None:
    # resourceMap is an echo field: it shows what the user wrote, aliases included.
    assert resource_map("gpu=1,cpu=500m") == {"gpu": "1", "cpu": "500m"}


def test_what_is_left_never_goes_below_zero() -> None:
    total = Resources(cpu=4.0, memory=8 * 2**30, gpu=2)
    assert total.minus(Resources(cpu=1.5, memory=2**30, gpu=1)) == Resources(cpu=2.5, memory=7 * 2**30, gpu=1)
    assert total.minus(Resources(cpu=6.0, memory=9 * 2**30, gpu=3)) == Resources(cpu=0.0, memory=0, gpu=0)


def test_a_capacity_override_replaces_only_what_it_sets() -> None:
    from clusters.config import CapacityOverride

    reported = Resources(cpu=64.0, memory=256 * 2**30, gpu=8)
    assert CapacityOverride().apply(reported) == reported
    assert CapacityOverride.model_validate({"cpu": "8", "gpu": 0}).apply(reported) == Resources(
        cpu=8.0, memory=256 * 2**30, gpu=0
    )
