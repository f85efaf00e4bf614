"""The broker's own settings (broker.yaml)."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

ModelT = TypeVar("ModelT", bound=BaseModel)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def absolute(path: Path, base_dir: Path) -> Path:
    """``path`` with ``~`` expanded, made absolute against ``base_dir`` when relative."""
    path = path.expanduser()
    return (path if path.is_absolute() else base_dir / path).resolve()


def resolve_paths(model: ModelT, base_dir: Path) -> ModelT:
    """A copy of ``model`` whose ``Path`` values (in nested models and lists too) are absolute.

    Resolving by value type rather than by field name means a path option added later cannot be
    forgotten: declaring it as a ``Path`` is enough.
    """

    def convert(value: Any) -> Any:
        if isinstance(value, Path):
            return absolute(value, base_dir)
        if isinstance(value, BaseModel):
            return resolve_paths(value, base_dir)
        if isinstance(value, list | tuple):
            return type(value)(convert(v) for v in value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    updates = {
        name: convert(getattr(model, name))
        for name, field in type(model).model_fields.items()
        if not field.exclude
    }
    return model.model_copy(update=updates)


class LoopsConfig(BaseModel):
    """Scheduler loop intervals, in seconds."""

    model_config = ConfigDict(extra="forbid")

    dispatch_interval: float = Field(default=2.0, gt=0)
    monitor_interval: float = Field(default=2.0, gt=0)
    monitor_starting_interval: float = Field(
        default=0.25, gt=0, description="Poll interval while a cluster has work that is still starting"
    )
    health_interval: float = Field(default=5.0, gt=0)
    lease_ttl: float = Field(default=15.0, gt=0, description="A lease not renewed for this long is free")
    dispatch_backoff_max: float = Field(default=60.0, gt=0)
    dispatch_paused: bool = Field(default=False, description="Accept submissions but start nothing")
    poll_timeout: float = Field(
        default=30.0, gt=0, description="A cluster poll slower than this counts as no answer"
    )
    cluster_loss_grace: float = Field(
        default=600.0,
        ge=0,
        description="Seconds work on an unreachable cluster is left alone before failover",
    )


class NotebooksConfig(BaseModel):
    """Notebook sessions: their Jupyter server, readiness checks and idle culling."""

    model_config = ConfigDict(extra="forbid")

    idle_timeout: float = Field(
        default=3600.0,
        ge=0,
        description="Stop a notebook idle this many seconds (Jupyter's last_activity); 0 = never. "
        "A notebook's spec.idleTimeoutSeconds overrides it",
    )
    check_interval: float = Field(
        default=1.0, gt=0, description="Seconds between two readiness/activity checks of each notebook"
    )
    start_timeout: float = Field(
        default=600.0,
        gt=0,
        description="A notebook whose server has not answered this long after it started running is stopped",
    )
    python: str | None = Field(
        default=None, description="Interpreter with jupyter_server on local clusters (default: the broker's)"
    )
    app: Literal["auto", "lab", "server"] = Field(
        default="auto", description="JupyterLab, the bare Jupyter server, or Lab when it is installed"
    )


class LimitsConfig(BaseModel):
    """What one request may ask of the broker: the shape of a JSON/YAML body and how many replicas
    one experiment may start. A request past a limit is refused with a 4xx naming it."""

    model_config = ConfigDict(extra="forbid")

    max_body_depth: int = Field(
        default=32,
        ge=4,
        le=100,
        description="Deepest nesting of objects and lists in a request body (a spec needs 4)",
    )
    max_body_nodes: int = Field(
        default=10000,
        ge=100,
        description="Most values (objects, lists, strings, numbers...) in a request body",
    )
    max_replicas_per_role: int = Field(
        default=100, ge=1, description="Most replicas of one role of an experiment"
    )
    max_replicas_per_workload: int = Field(
        default=200, ge=1, description="Most replicas of one experiment, all roles together"
    )


class EnvironmentsConfig(BaseModel):
    """Environments: how long an unused build is kept, how often that is checked, and how much
    placement prefers a cluster where the workload's environment is built already."""

    model_config = ConfigDict(extra="forbid")

    keep_days: float = Field(
        default=14.0, gt=0, description="A build unused this many days is removed from its cluster"
    )
    housekeeping_interval: float = Field(
        default=3600.0, gt=0, description="Seconds between two passes removing unused builds"
    )
    warm_weight: float = Field(
        default=1.0,
        ge=0,
        le=1000,
        description="Weight of placement's warm-environment score (1 where the environment is built); "
        "policy_weight counts 2, free_share 1, spread 0.5",
    )


#: Keys that would hold object-storage credentials: refused, they come from the environment.
_CREDENTIAL_KEYS = (
    "access_key",
    "access_key_id",
    "aws_access_key_id",
    "secret_key",
    "secret_access_key",
    "aws_secret_access_key",
    "session_token",
    "aws_session_token",
    "credentials",
    "password",
)


class ArtifactsConfig(BaseModel):
    """Where MLflow artifacts are kept: a folder (the default, ``<data_dir>/artifacts``) or an
    S3-compatible bucket. S3 credentials are read from the environment by boto3 (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``...), never from this file."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["folder", "s3"] = Field(default="folder", description="folder or s3")
    path: Path | None = Field(default=None, description="folder: where; default: artifacts in data_dir")
    bucket: str | None = Field(default=None, validate_default=True, description="s3: the bucket (required)")
    prefix: str = Field(default="", description="s3: a key prefix every artifact is stored under")
    endpoint_url: str | None = Field(
        default=None, description="s3: the service's URL (MinIO, Ceph...); default: AWS for the region"
    )
    region: str | None = Field(default=None, description="s3: the region; default: boto3's")

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if isinstance(key, str) and key.lower() in _CREDENTIAL_KEYS:
                    raise ValueError(
                        f"{key}: credentials are not read from broker.yaml; set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the broker's environment"
                    )
        return data

    @field_validator("path")
    @classmethod
    def _path_for_folder(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("backend") == "s3":
            raise ValueError("only for backend: folder")
        return value

    @field_validator("bucket")
    @classmethod
    def _bucket_for_s3(cls, value: str | None, info: ValidationInfo) -> str | None:
        backend = info.data.get("backend")
        if backend == "s3" and not value:
            raise ValueError("required with backend: s3")
        if backend == "folder" and value is not None:
            raise ValueError("only for backend: s3")
        if value is not None and not _BUCKET.match(value):
            raise ValueError("not a bucket name (3-63 lower-case letters, digits, dots and hyphens)")
        return value

    @field_validator("prefix")
    @classmethod
    def _clean_prefix(cls, value: str, info: ValidationInfo) -> str:
        if value and info.data.get("backend") == "folder":
            raise ValueError("only for backend: s3")
        prefix = value.strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ValueError("must be a relative key prefix without empty, '.' or '..' segments")
        return prefix

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("backend") == "folder":
            raise ValueError("only for backend: s3")
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("backend") == "folder":
            raise ValueError("only for backend: s3")
        return value


class BrokerConfig(BaseModel):
    """broker.yaml. Relative paths are resolved against the file's folder."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Path("data")
    database_url: str | None = Field(default=None, description="Default: SQLite broker.db in data_dir")
    secret_key_file: Path | None = Field(
        default=None,
        description="The key that encrypts notebook tokens at rest (0600, made at the first start); "
        "default: secret.key in data_dir. Replicas sharing a database must share it",
    )
    clusters_dir: Path = Path("clusters.d")
    auth: Literal["none", "token"] = "none"
    advertise_host: str | None = Field(
        default=None,
        description="The name workloads reach the broker at (SUBMARINE_SERVER_DNS_NAME); default: host, "
        "or this machine's fully qualified name when host is a wildcard such as 0.0.0.0",
    )
    default_policy: Path = Field(
        default=Path("policy.csv"), description="Casbin lines loaded on the first start only"
    )
    broker_id: str | None = Field(default=None, description="Default: hostname and process id")
    default_namespace: str = "default"
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    loops: LoopsConfig = Field(default_factory=LoopsConfig)
    notebooks: NotebooksConfig = Field(default_factory=NotebooksConfig)
    artifacts: ArtifactsConfig = Field(default_factory=ArtifactsConfig)
    environments: EnvironmentsConfig = Field(default_factory=EnvironmentsConfig)
    extra_kinds: dict[str, str] = Field(
        default_factory=dict, description="More cluster kinds as kind: module:Class (plugins, test doubles)"
    )
    #: Where the broker's own folder is; set by the loader, not by the file.
    base_dir: Path = Field(default=Path("."), exclude=True)

    def resolved(self, base_dir: Path) -> BrokerConfig:
        """A copy with every path option (any ``Path`` value, nested sections included) made
        absolute against ``base_dir``, ``~`` expanded."""
        resolved = resolve_paths(self, base_dir)
        return resolved.model_copy(update={"base_dir": base_dir})

    @property
    def advertised_host(self) -> str:
        """What workloads are told the broker's host is (never a wildcard bind address)."""
        if self.advertise_host:
            return self.advertise_host
        if self.host in ("0.0.0.0", "::", "", "[::]"):
            return socket.getfqdn()
        return self.host

    @property
    def secret_key_path(self) -> Path:
        """Where the broker's secret key is (see :mod:`broker.secret_key`)."""
        return self.secret_key_file or self.data_dir / "secret.key"

    @property
    def artifacts_path(self) -> Path:
        """The folder backend's folder (default: ``artifacts`` in data_dir)."""
        return self.artifacts.path or self.data_dir / "artifacts"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'broker.db'}"
