"""The Submarine 0.8.0 ExperimentSpec, validated, with the broker's extensions.

Field names are Submarine's (camelCase on the wire). Unknown fields are refused with their path
so a typo (``replica: 2``) is a clear 400 instead of a silently ignored setting; the echo-only
fields Submarine's own clients send back (``resourceMap``, task ``cpu``/``gpu``/``memory``,
``meta.experimentId``) are accepted and ignored.
"""

from __future__ import annotations

import functools
import shlex
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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


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
        default=None, ge=0, description="How long to wait for a lost cluster before failover (broker default)"
    )

    @field_validator("framework")
    @classmethod
    def _known_framework(cls, value: str) -> str:
        lowered = value.strip().lower()
        if lowered not in FRAMEWORK_ROLES:
            known = ", ".join(FRAMEWORK_ROLES)
            raise ValueError(f"unknown framework '{value}'; expected one of {known}")
        return lowered

    @field_validator("name", mode="before")
    @classmethod
    def _lower_name(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class TaskSpec(_Model):
    """One role of the experiment (``spec.Worker``)."""

    replicas: int = Field(default=1, ge=1, le=1000)
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

    @model_validator(mode="after")
    def _roles_and_commands(self) -> ExperimentSpec:
        allowed = FRAMEWORK_ROLES[self.meta.framework]
        for role, task in self.spec.items():
            if role not in allowed:
                raise SpecFieldError(
                    f"spec.{role}",
                    f"unknown role '{role}' for framework {self.meta.framework}; "
                    f"expected one of {', '.join(allowed)} (role keys are case-sensitive)",
                )
            cmd = task.cmd if task.cmd is not None else self.meta.cmd
            where = f"spec.{role}.cmd" if task.cmd is not None else "meta.cmd"
            if cmd is None or not cmd.strip():
                raise SpecFieldError(where, "the command is empty; set meta.cmd or a cmd for the role")
            try:
                split_command(cmd)
            except ValueError as exc:
                raise SpecFieldError(where, f"cannot split the command: {exc}") from None
        if self.meta.framework == "pytorch" and self.spec.get("Master", TaskSpec()).replicas > 1:
            raise SpecFieldError("spec.Master.replicas", "a PyTorch experiment has exactly one Master")
        if self.meta.framework == "xgboost" and self.spec.get("Master", TaskSpec()).replicas > 1:
            raise SpecFieldError("spec.Master.replicas", "an XGBoost experiment has exactly one Master")
        if "Chief" in self.spec and self.spec["Chief"].replicas > 1:
            raise SpecFieldError("spec.Chief.replicas", "a TensorFlow experiment has at most one Chief")
        return self

    def ordered_roles(self) -> list[tuple[str, TaskSpec]]:
        """The roles in framework order, primary first."""
        order = FRAMEWORK_ROLES[self.meta.framework]
        return sorted(self.spec.items(), key=lambda item: order.index(item[0]))

    def image(self, role: str) -> str | None:
        """The image for a role: the task's, else the environment's (``image`` then ``dockerImage``)."""
        task = self.spec[role]
        return task.image or self.environment.image or self.environment.dockerImage


class SpecFieldError(ValueError):
    """A spec problem tied to one field path (``spec.Worker.replicas``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


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
