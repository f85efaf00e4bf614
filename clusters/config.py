"""Configuration every cluster file shares; each kind subclasses it with its own fields."""

from __future__ import annotations

import math
import re
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from clusters import secrets
from runtimes.plan import Resources
from runtimes.resources import ResourceError, parse_cpu, parse_memory

_RESERVED = frozenset({"errors"})
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class CapacityOverride(BaseModel):
    """Totals an admin sets instead of what the cluster reports (for quotas or shared hosts)."""

    model_config = ConfigDict(extra="forbid")

    cpu: float | None = Field(default=None, gt=0)
    memory: int | None = Field(default=None, gt=0, description="bytes, or a quantity such as 8Gi")
    gpu: int | None = Field(default=None, ge=0)

    # Messages here never repeat the value: config errors must not echo what may be a secret.
    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return parse_cpu(value)
            except ResourceError:
                raise ValueError("not a number of cores (examples: 2, 0.5, 500m)") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("not a finite number of cores")
        return value

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return parse_memory(value)
            except ResourceError:
                raise ValueError("not a quantity (examples: 8Gi, 16G, 512Mi)") from None
        return value

    def apply(self, reported: Resources) -> Resources:
        """The totals to use: what the admin set here, the cluster's ``reported`` totals elsewhere."""
        return Resources(
            cpu=self.cpu if self.cpu is not None else reported.cpu,
            memory=self.memory if self.memory is not None else reported.memory,
            gpu=self.gpu if self.gpu is not None else reported.gpu,
        )


class ClusterConfig(BaseModel):
    """One file in ``clusters.d/``. Unknown fields are an error that names them."""

    model_config = ConfigDict(extra="forbid")

    #: Keys of a kind's config whose values are secrets: never shown by the API or logged.
    secret_fields: ClassVar[frozenset[str]] = frozenset()

    name: str = Field(description="Unique cluster name: lower-case letters, digits and dashes")
    kind: str
    labels: dict[str, str] = Field(default_factory=dict)
    weight: float = Field(default=1.0, ge=0)
    capacity: CapacityOverride = Field(default_factory=CapacityOverride)
    notebook_python: str | None = Field(
        default=None,
        description="Interpreter that runs Jupyter for notebooks on this cluster's nodes (default: the "
        "broker's notebooks.python on clusters that run commands on hosts, `python` in image-based ones)",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if value in _RESERVED:
            raise ValueError(f"'{value}' is reserved (it is a path of the cluster API)")
        if not _NAME.match(value):
            raise ValueError(
                "not a valid cluster name (lower-case letters, digits and dashes, "
                "at most 63, starting and ending with a letter or digit)"
            )
        return value

    def public_view(self) -> dict[str, object]:
        """The config with its secrets masked (secret fields, URL credentials), for the API and logs."""
        return secrets.public_view(self)

    def secret_values(self) -> frozenset[str]:
        """Every secret this config holds (see :mod:`clusters.secrets`)."""
        return secrets.secret_values(self)

    def mask(self, text: str) -> str:
        """``text`` (a message about this cluster) with this config's secrets masked."""
        return secrets.mask(text, self.secret_values())
