"""The environment a served version brings: its ``requirements.txt`` as an environment plan.

MLflow writes beside a model's ``MLmodel`` the pip requirements it was logged with
(``requirements.txt``), the Python it ran on (``python_env.yaml``) and a conda file. A serve whose
spec names no environment (no ``environment.name``, no inline image or ``kernelSpec``) is served
in the environment :func:`model_environment` makes of them: an
:class:`~runtimes.environment.EnvironmentPlan` like any other, hashed by what it installs, so two
versions (or serves) with the same requirements share one build per cluster.

What is read of ``requirements.txt``, line by line:

- blank lines and comments (``# ...``, also after a requirement) are skipped; a line ending in
  ``\\`` continues on the next;
- option lines (``-r other.txt``, ``-c constraints.txt``, ``-e ...``, ``--index-url ...``) and
  per-requirement options (``--hash=...``) are skipped: the files they name are not fetched, and
  where packages come from is the cluster's configuration, never a model's (as registered
  environments refuse installer options);
- a line naming a URL or path but no package (``./dist/x.whl``, ``https://...``) is skipped: the
  cluster cannot reach the model author's files;
- everything else must read as a requirement (a distribution name, then extras, a version
  specifier, ``@ url`` or a marker); a file that is not text, or holds a line that is none of the
  above, is refused (400 naming the field that chose the version).

The model server's own needs are added (:data:`runtimes.serving.SERVER_REQUIREMENTS`, and MLflow
when the model names none). ``python_env.yaml``'s Python version is not asked for: MLflow writes
the exact version it ran on (``3.11.7``), which a builder rarely has; a plan no cluster can build
is worse than one on the cluster's Python (recorded: the plan's ``python`` stays unset). The conda
file is not read (its pip part is ``requirements.txt``; conda packages would need conda on every
cluster). A version without ``requirements.txt``, or with one that requires nothing, has no
environment of its own (None): it is served on the cluster's Python, as before.
"""

from __future__ import annotations

import re

from broker.environments.checks import MAX_DEPENDENCIES
from broker.errors import BadRequest
from broker.model_registry.service import Caller, ModelRegistry
from broker.model_registry.views import VersionView
from runtimes.environment import EnvironmentPlan, normalise_requirement
from runtimes.serving import MLFLOW_REQUIREMENT, SERVER_REQUIREMENTS

#: The file MLflow writes the model's pip requirements to, beside ``MLmodel``.
REQUIREMENTS = "requirements.txt"
#: Largest requirements file read (MLflow's are a few hundred bytes).
MAX_BYTES = 1 << 20
#: The name a derived plan gets starts with this; what follows is ``<model>/<version>``.
PREFIX = "model:"
#: Longest plan name (the build records' ``name`` column).
MAX_NAME = 128

_REQUIREMENT = re.compile(
    r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"  # the distribution name
    r"\s*(?:\[[^\]]*\])?"  # extras
    r"\s*(?:$|[<>=!~;@(,])"  # nothing more, or a specifier, marker or URL
)
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
#: Where a requirement's own options (``--hash=...``) or an inline comment begin.
_TAIL = re.compile(r"\s+(?:#|--?[A-Za-z])")
_MLFLOW = frozenset({"mlflow", "mlflow-skinny"})


class Unreadable(ValueError):
    """The requirements file is not one: the message says where."""


def plan_name(model: str, version: int) -> str:
    """``model:<model>/<version>``, the model's name shortened to fit :data:`MAX_NAME`."""
    tail = f"/{version}"
    return PREFIX + model[: MAX_NAME - len(PREFIX) - len(tail)] + tail


def parse_requirements(data: bytes) -> list[str]:
    """The requirements of a ``requirements.txt`` (see the module's docstring for what is
    skipped); :class:`Unreadable` when it is not a pip requirements file."""
    if b"\x00" in data:
        raise Unreadable("it is binary, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Unreadable("it is not UTF-8 text") from None
    found: list[str] = []
    pending = ""
    number = 0
    for index, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            number = index
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = ""
        requirement = _requirement(line, number)
        if requirement is not None:
            found.append(requirement)
    if pending:
        requirement = _requirement(pending, number)
        if requirement is not None:
            found.append(requirement)
    if len(found) > MAX_DEPENDENCIES:
        raise Unreadable(f"it lists {len(found)} requirements; at most {MAX_DEPENDENCIES}")
    return found


def _requirement(line: str, number: int) -> str | None:
    """One logical line's requirement, None for what is skipped; :class:`Unreadable` for garbage."""
    text = line.strip()
    if not text or text.startswith("#") or text.startswith("-"):
        return None
    if any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in text):
        raise Unreadable(f"line {number} holds a control character")
    text = _TAIL.split(text, maxsplit=1)[0].strip()
    if "://" in text.split("@", 1)[0] or text.startswith((".", "/", "~")):
        return None  # a URL or a path, no package name before it
    if not _REQUIREMENT.match(text):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise Unreadable(f"line {number} is not a requirement: {shown!r}")
    return text


def _distribution(requirement: str) -> str:
    match = _NAME.match(normalise_requirement(requirement))
    return match.group(0) if match else requirement


def derived_plan(model: str, version: int, requirements: list[str]) -> EnvironmentPlan | None:
    """The plan of a version's requirements plus what the model server needs; None when the
    model requires nothing."""
    if not requirements:
        return None
    extra = list(SERVER_REQUIREMENTS)
    if not any(_distribution(r) in _MLFLOW for r in requirements):
        extra.append(MLFLOW_REQUIREMENT)
    return EnvironmentPlan.of(plan_name(model, version), pip=[*requirements, *extra])


async def model_environment(
    models: ModelRegistry, caller: Caller, version: VersionView, *, field: str = "modelVersion"
) -> EnvironmentPlan | None:
    """The environment ``version`` is served in when its serve names none: its
    ``requirements.txt`` (read as ``caller``) with the model server's own requirements, named
    ``model:<model>/<version>``; None when the version has no such file or it requires nothing.
    A file that is not a requirements file is a 400 naming ``field`` (``modelVersion`` or
    ``alias``: what chose the version)."""
    listing = await models.list_files(caller, version.model_key, version.version, "")
    if not any(f.path == REQUIREMENTS and not f.is_dir for f in listing):
        return None
    blob = await models.open_file(caller, version.model_key, version.version, REQUIREMENTS)
    what = f"version {version.version} of model '{version.model_name}'"
    data = b""
    try:
        async for chunk in blob.chunks:
            data += chunk
            if len(data) > MAX_BYTES:
                raise BadRequest(
                    f"{field}: the {REQUIREMENTS} of {what} is larger than {MAX_BYTES} bytes", field=field
                )
    finally:
        await blob.aclose()
    try:
        requirements = parse_requirements(data)
    except Unreadable as exc:
        raise BadRequest(
            f"{field}: the {REQUIREMENTS} of {what} is not a pip requirements file ({exc})", field=field
        ) from None
    return derived_plan(version.model_name, version.version, requirements)
