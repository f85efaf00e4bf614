"""Configuration of a ``ray`` cluster."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from clusters.config import ClusterConfig


class RayClusterConfig(ClusterConfig):
    """``kind: ray``: experiments run as Ray jobs submitted to the cluster's job API.

    ``address`` is the dashboard's job API (``http://head:8265``). ``headers`` are sent with every
    request (a Ray behind an authenticating proxy, or ``Authorization: Bearer <token>`` for Ray's
    token auth); they are a secret: masked by :meth:`public_view` and never put in a message.
    ``entrypoint_python`` is the interpreter the job's entrypoint runs the launcher with, on the
    cluster (default ``python``: the one on the Ray nodes' PATH). ``workdir_base`` is the folder on
    the Ray nodes under which a notebook's working directory (one per notebook id) is kept across
    its attempts; by default ``<system temp dir>/submarine-broker-workdirs`` of each node, so a
    notebook finds its files again only when it restarts on the same node. Point it at a shared
    filesystem mounted on every node to keep them wherever the notebook lands.
    ``allow_installs: false`` refuses environments with pip or conda dependencies (which Ray
    would otherwise install per job through the runtime_env) where the nodes must not install.
    ``serve_host``/``serve_port``: where Ray Serve's HTTP proxy listens when a served model's
    deploy job is the first to start Serve on the cluster (:mod:`clusters.ray.serving`).
    """

    secret_fields: ClassVar[frozenset[str]] = frozenset({"headers"})

    kind: Literal["ray"] = "ray"
    address: str = Field(description="The Ray job API (dashboard) URL, e.g. http://127.0.0.1:8265")
    client_address: str | None = Field(default=None, description="Ray Client address, ray://host:10001")
    headers: dict[str, str] | None = Field(default=None, description="HTTP headers (secret)")
    entrypoint_python: str = Field(default="python", description="Python on the cluster's nodes")
    workdir_base: str | None = Field(
        default=None,
        description="Absolute folder on the nodes for notebooks' kept working directories "
        "(default: <system temp dir>/submarine-broker-workdirs on each node)",
    )

    serve_host: str = Field(
        default="0.0.0.0",
        description="Address Ray Serve's HTTP proxy listens on when the broker starts Serve on the cluster",
    )
    serve_port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="Port of Ray Serve's HTTP proxy when the broker starts Serve on the cluster "
        "(pick one free on the nodes; a Serve already running keeps its own)",
    )
    allow_installs: bool = Field(
        default=True, description="Install environments' pip/conda dependencies through the runtime_env"
    )

    @field_validator("address")
    @classmethod
    def _http_address(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("the job API address must start with http:// or https://")
        return value

    @field_validator("client_address")
    @classmethod
    def _client_address(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("ray://"):
            raise ValueError("the Ray Client address must start with ray://")
        return value

    @field_validator("workdir_base")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.strip()
            if not value.startswith("/"):
                raise ValueError("must be an absolute path on the Ray nodes")
            value = value.rstrip("/") or "/"
        return value
