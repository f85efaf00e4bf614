"""The environment a served version brings (broker.serving.model_environment): what is read of its
``requirements.txt`` (comments, options, URLs skipped; garbage refused naming the field), what the
model server adds, the name and the hash (same requirements, same build)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from broker.artifacts.store import ArtifactBlob
from broker.errors import BadRequest
from broker.model_registry.service import Caller, ModelRegistry
from broker.model_registry.views import VersionView
from broker.serving.model_environment import (
    MAX_NAME,
    Unreadable,
    derived_plan,
    model_environment,
    parse_requirements,
    plan_name,
)
from runtimes.serving import MLFLOW_REQUIREMENT, SERVER_REQUIREMENTS

MLFLOW_WRITES = b"mlflow==3.1.0\nnumpy==2.0.1\nscikit-learn==1.5.0\n"


def test_requirements_skip_comments_blank_lines_options_and_urls() -> None:
    text = b"""# written by mlflow
mlflow==3.1.0

-r other.txt
-c constraints.txt
--index-url https://elsewhere.example/simple
-e ./src
scikit-learn >= 1.5  # the flavour
pandas==2.2.0 --hash=sha256:0123abcd
numpy[extra]==2.0.1 ; python_version >= "3.9"
torch \\
  ==2.3.0
https://example.com/wheels/private-1.0-py3-none-any.whl
./dist/local-1.0-py3-none-any.whl
git+https://github.com/org/repo.git
mine @ https://example.com/mine-1.0.tar.gz
"""
    assert parse_requirements(text) == [
        "mlflow==3.1.0",
        "scikit-learn >= 1.5",
        "pandas==2.2.0",
        'numpy[extra]==2.0.1 ; python_version >= "3.9"',
        "torch   ==2.3.0",
        "mine @ https://example.com/mine-1.0.tar.gz",
    ]
    assert parse_requirements(b"") == [] and parse_requirements(b"# nothing\n\n") == []
    assert parse_requirements("\ufeffnumpy\r\n".encode()) == ["numpy"]  # a BOM, CRLF


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "binary"),
        (b"numpy==1\n\xff\xfe broken", "not UTF-8"),
        (b"numpy==1\n<html><body>Not Found</body></html>\n", "line 2 is not a requirement: '<html>"),
        (b"numpy==1\nthis is prose, not a package\n", "line 2 is not a requirement"),
        (b"numpy\x07==1\n", "line 1 holds a control character"),
        ("".join(f"p{i}\n" for i in range(501)).encode(), "501 requirements; at most 500"),
    ],
)
def test_garbage_is_unreadable_and_says_where(data: bytes, why: str) -> None:
    with pytest.raises(Unreadable) as caught:
        parse_requirements(data)
    assert why in str(caught.value)


def test_the_plan_adds_what_the_server_needs_and_hashes_by_content() -> None:
    plan = derived_plan("iris", 1, parse_requirements(MLFLOW_WRITES))
    assert plan is not None and plan.name == "model:iris/1" and plan.python is None
    assert "mlflow==3.1.0" in plan.pip and MLFLOW_REQUIREMENT not in plan.pip  # the model's pin wins
    assert all(r in plan.pip for r in SERVER_REQUIREMENTS)
    # Another version (or model) with the same requirements: another name, the same build.
    other = derived_plan("other", 7, parse_requirements(b"scikit-learn==1.5.0\nnumpy==2.0.1\nmlflow==3.1.0"))
    assert other is not None and other.name == "model:other/7" and other.hash == plan.hash
    changed = derived_plan("iris", 2, parse_requirements(MLFLOW_WRITES + b"scipy==1.13\n"))
    assert changed is not None and changed.hash != plan.hash
    # No MLflow named: the server's own bound is added. Nothing required: no environment.
    bare = derived_plan("m", 1, ["numpy"])
    assert bare is not None and MLFLOW_REQUIREMENT in bare.pip
    skinny = derived_plan("m", 1, ["MLflow_Skinny==3.1"])
    assert skinny is not None and MLFLOW_REQUIREMENT not in skinny.pip
    assert derived_plan("m", 1, []) is None


def test_long_model_names_are_shortened_to_the_build_records_column() -> None:
    name = plan_name("m" * 300, 12)
    assert len(name) == MAX_NAME and name.startswith("model:mmm") and name.endswith("/12")


@dataclass
class _File:
    path: str
    is_dir: bool = False


@dataclass
class _Registry:
    """The two calls model_environment makes of the model registry, over a dict of files."""

    files: dict[str, bytes]
    callers: list[Any] = field(default_factory=list)

    async def list_files(self, caller: Any, model_key: int, version: int, path: str) -> list[_File]:
        self.callers.append(caller)
        return [_File(p) for p in self.files]

    async def open_file(self, caller: Any, model_key: int, version: int, path: str) -> ArtifactBlob:
        self.callers.append(caller)
        content = self.files[path]

        async def chunks() -> AsyncIterator[bytes]:
            yield content

        return ArtifactBlob(size=len(content), chunks=chunks())


def _version() -> VersionView:
    fields = {name: None for name in VersionView.__dataclass_fields__}
    fields.update(model_name="iris", model_key=3, version=2, aliases=[], tags={}, served_on=[])
    return VersionView(**fields)  # type: ignore[arg-type]


def _derive(files: dict[str, bytes], field_name: str = "modelVersion") -> Any:
    registry = _Registry(files)
    caller = cast(Caller, object())
    plan = asyncio.run(model_environment(cast(ModelRegistry, registry), caller, _version(), field=field_name))
    assert registry.callers and all(c is caller for c in registry.callers)  # read as the caller
    return plan


def test_a_version_without_requirements_keeps_the_clusters_python() -> None:
    assert _derive({"MLmodel": b"flavors: {}"}) is None
    assert _derive({"MLmodel": b"", "requirements.txt": b"# nothing needed\n"}) is None


def test_a_versions_requirements_become_its_environment() -> None:
    plan = _derive({"MLmodel": b"", "requirements.txt": MLFLOW_WRITES, "python_env.yaml": b"python: 3.4.1"})
    assert plan.name == "model:iris/2" and "scikit-learn==1.5.0" in plan.pip
    assert plan.python is None  # python_env.yaml's version is not asked of the builders


@pytest.mark.parametrize("field_name", ["modelVersion", "alias"])
def test_garbage_requirements_are_a_400_naming_the_field_that_chose_the_version(field_name: str) -> None:
    with pytest.raises(BadRequest) as caught:
        _derive({"requirements.txt": b"<html>oops</html>"}, field_name)
    assert caught.value.field == field_name
    assert caught.value.message == (
        f"{field_name}: the requirements.txt of version 2 of model 'iris' is not a pip requirements "
        "file (line 1 is not a requirement: '<html>oops</html>')"
    )
