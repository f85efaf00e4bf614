"""The Submarine 0.8.0 ExperimentSpec, validated, with the broker's extensions.

Field names are Submarine's (camelCase on the wire). Unknown fields are refused with their path
so a typo (``replica: 2``) is a clear 400 instead of a silently ignored setting; the echo-only
fields Submarine's own clients send back (``resourceMap``, task ``cpu``/``gpu``/``memory``,
``meta.experimentId``) are accepted and ignored.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runtimes.resources import ResourceError, parse_resources

#: Role keys each framework accepts, in the order their replicas are listed (primary first).
FRAMEWORK_ROLES: dict[str, tuple[str, ...]] = {
    "tensorflow": ("Chief", "Master", "Worker", "Ps", "Evaluator"),
    "pytorch": ("Master", "Worker"),
    "xgboost": ("Master", "Worker"),
    "python": ("Master", "Worker"),
}


def check_resources(value: str | None) -> str | None:
    """A resources string that parses (``cpu=1,memory=2Gi``), else a ValueError saying why."""
    if value is not None:
        try:
            parse_resources(value)
        except ResourceError as exc:
            raise ValueError(str(exc)) from None
    return value


#: The longest duration a spec may set (a grace period, an idle timeout): 365 days, in seconds.
MAX_SECONDS = 365 * 24 * 3600


def check_env(value: dict[str, str] | None) -> dict[str, str] | None:
    """Environment variables a process can be given, else a ValueError naming the first bad one:
    names neither empty nor holding ``=`` or a NUL character, values without NUL."""
    for name, text in (value or {}).items():
        if not name:
            raise ValueError("an environment variable name is empty")
        invalid = f"{name!r} is not a valid environment variable name"
        if "=" in name:
            raise ValueError(f"{invalid}: it contains '='")
        if "\0" in name:
            raise ValueError(f"{invalid}: it contains a NUL character")
        if "\0" in text:
            raise ValueError(f"the value of {name!r} contains a NUL character")
    return value


def check_text(value: str | None) -> str | None:
    """A name or command without a NUL character (no process or database can take one)."""
    if value is not None and "\0" in value:
        raise ValueError("contains a NUL character")
    return value


_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_namespace(value: str | None) -> str | None:
    """A namespace that is a DNS label, else a ValueError saying so."""
    if value is not None and not _NAMESPACE.match(value):
        raise ValueError("must be a DNS label (lower-case letters, digits, dashes)")
    return value


class _Model(BaseModel):
    # allow_inf_nan: pydantic would read "inf", "NaN" or "1e400" as a float.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class PlacementSpec(_Model):
    """Broker extension ``meta.placement``: where the workload may or should go."""

    cluster: str | None = Field(default=None, description="Run only on this cluster")
    clusterSelector: dict[str, str] = Field(
        default_factory=dict, description="Run only on clusters carrying all these labels"
    )
    preferredClusters: list[str] = Field(
        default_factory=list, description="Among the clusters that fit, prefer these, in this order"
    )


class ExperimentMeta(_Model):
    """``meta``: name, framework, default command and environment."""

    experimentId: str | None = Field(default=None, description="Ignored on input (echo field)")
    name: str = Field(min_length=1, max_length=128)
    namespace: str | None = Field(default=None, max_length=63)
    framework: str
    cmd: str | None = None
    envVars: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    placement: PlacementSpec = Field(default_factory=PlacementSpec)
    maxRetries: int = Field(
        default=0, ge=0, le=100, description="New attempts allowed after the experiment's cluster is lost"
    )
    clusterLossGraceSeconds: float | None = Field(
        default=None,
        ge=0,
        le=MAX_SECONDS,
        description="How long to wait for a lost cluster before failover (broker default)",
    )
    trackingExperiment: str | None = Field(
        default=None,
        min_length=1,
        max_length=400,
        description="The MLflow experiment the attempts' runs go to (default: one named after the namespace)",
    )

    @field_validator("framework")
    @classmethod
    def _known_framework(cls, value: str) -> str:
        lowered = value.strip().lower()
        if lowered not in FRAMEWORK_ROLES:
            known = ", ".join(FRAMEWORK_ROLES)
            raise ValueError(f"unknown framework '{value}'; expected one of {known}")
        return lowered

    @field_validator("namespace")
    @classmethod
    def _dns_namespace(cls, value: str | None) -> str | None:
        return check_namespace(value)

    @field_validator("name", mode="before")
    @classmethod
    def _lower_name(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("name", "cmd")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return check_text(value)

    @field_validator("envVars")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str] | None:
        return check_env(value)


class TaskSpec(_Model):
    """One role of the experiment (``spec.Worker``)."""

    replicas: int = Field(default=1, ge=1, description="At most the broker's limits.max_replicas_per_role")
    resources: str | None = None
    name: str | None = None
    image: str | None = None
    cmd: str | None = None
    envVars: dict[str, str] | None = None
    # Echo fields of Submarine's models; accepted and ignored.
    resourceMap: dict[str, Any] | None = None
    cpu: Any = None
    gpu: Any = None
    memory: Any = None

    @field_validator("resources")
    @classmethod
    def _parseable(cls, value: str | None) -> str | None:
        return check_resources(value)

    @field_validator("cmd")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        return check_text(value)

    @field_validator("envVars")
    @classmethod
    def _env(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_env(value)


class EnvironmentRef(_Model):
    """``environment``: an image, or the name of a registered environment."""

    name: str | None = None
    image: str | None = None
    dockerImage: str | None = None
    kernelSpec: dict[str, Any] | None = None
    description: str | None = None


class GitCode(_Model):
    url: str
    branch: str | None = None
    username: str | None = None
    password: str | None = None
    trustCerts: bool | None = None


class CodeSpec(_Model):
    syncMode: str | None = None
    git: GitCode | None = None


class ExperimentSpec(_Model):
    """A whole Submarine experiment submission."""

    meta: ExperimentMeta
    environment: EnvironmentRef = Field(default_factory=EnvironmentRef)
    spec: dict[str, TaskSpec] = Field(min_length=1)
    code: CodeSpec | None = None
    experimentHandlerSpec: dict[str, str] | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _roles_and_commands(cls, data: Any, handler: Any) -> ExperimentSpec:
        spec: ExperimentSpec = handler(data)
        problems = cross_field_problems(data if isinstance(data, dict) else spec.model_dump())
        if problems:
            raise SpecFieldError.together(problems)
        return spec

    def ordered_roles(self) -> list[tuple[str, TaskSpec]]:
        """The roles in framework order, primary first."""
        order = FRAMEWORK_ROLES[self.meta.framework]
        return sorted(self.spec.items(), key=lambda item: order.index(item[0]))

    def image(self, role: str) -> str | None:
        """The image for a role: the task's, else the environment's (``image`` then ``dockerImage``)."""
        task = self.spec[role]
        return task.image or self.environment.image or self.environment.dockerImage


class SpecFieldError(ValueError):
    """A spec problem tied to one field path (``spec.Worker.replicas``).

    ``problems`` holds it and every other problem found with it (:meth:`together`), so one
    pydantic error can carry all of them.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message
        self.problems: list[SpecFieldError] = [self]

    @classmethod
    def together(cls, problems: Sequence[SpecFieldError]) -> SpecFieldError:
        """The first problem, carrying all of them in ``problems``."""
        first = problems[0]
        first.problems = list(problems)
        return first


def _as_count(value: object) -> int | None:
    """A replica count as pydantic would read it (an int or a string of digits), else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _command_problem(where: str, cmd: object) -> SpecFieldError | None:
    if cmd is not None and not isinstance(cmd, str):
        return None  # a wrong type: the field check names it
    if cmd is None or not cmd.strip():
        return SpecFieldError(where, "the command is empty; set meta.cmd or a cmd for the role")
    try:
        split_command(cmd)
    except ValueError as exc:
        return SpecFieldError(where, f"cannot split the command: {exc}")
    return None


def cross_field_problems(document: Mapping[str, Any]) -> list[SpecFieldError]:
    """Every problem across ``meta`` and ``spec`` of a submitted document, in document order.

    The role keys the framework accepts, each role's command (its own ``cmd`` or ``meta.cmd``) and
    the framework's limits on Master and Chief replicas. It reads the raw document, so it also runs
    when other fields are refused (the API then names all the problems at once); a part whose type
    is wrong is left to the field checks, and nothing is checked against an unknown framework.
    """
    meta = document.get("meta")
    spec = document.get("spec")
    if not isinstance(meta, Mapping) or not isinstance(spec, Mapping):
        return []
    framework = meta.get("framework")
    framework = framework.strip().lower() if isinstance(framework, str) else None
    if framework not in FRAMEWORK_ROLES:
        return []
    allowed = FRAMEWORK_ROLES[framework]
    found: dict[str, SpecFieldError] = {}
    for role, task in spec.items():
        task = task if isinstance(task, Mapping) else {}
        if role not in allowed:
            found.setdefault(
                f"spec.{role}",
                SpecFieldError(
                    f"spec.{role}",
                    f"unknown role '{role}' for framework {framework}; "
                    f"expected one of {', '.join(allowed)} (role keys are case-sensitive)",
                ),
            )
            continue
        own = task.get("cmd")
        where = f"spec.{role}.cmd" if own is not None else "meta.cmd"
        problem = _command_problem(where, own if own is not None else meta.get("cmd"))
        if problem is not None:
            found.setdefault(where, problem)
    limits = {
        "pytorch": ("Master", "a PyTorch experiment has exactly one Master"),
        "xgboost": ("Master", "an XGBoost experiment has exactly one Master"),
        "tensorflow": ("Chief", "a TensorFlow experiment has at most one Chief"),
    }
    if framework in limits:
        role, reason = limits[framework]
        task = spec.get(role)
        count = _as_count(task.get("replicas", 1)) if isinstance(task, Mapping) else None
        if count is not None and count > 1:
            found.setdefault(f"spec.{role}.replicas", SpecFieldError(f"spec.{role}.replicas", reason))
    return list(found.values())


def split_command(cmd: str) -> list[str]:
    """Split a command into argv without a shell.

    Submarine splits on single spaces; we split with POSIX shell quoting rules, which gives the
    same argv for every command without quotes and lets ``python -c "print(1)"`` work.
    """
    return list(_split(cmd))


@functools.lru_cache(maxsize=4096)
def _split(cmd: str) -> tuple[str, ...]:
    argv = tuple(shlex.split(cmd))
    if not argv:
        raise ValueError("the command is empty")
    return argv
