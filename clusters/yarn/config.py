"""Configuration of a ``yarn`` cluster."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from clusters.config import ClusterConfig

_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]{0,63}$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_ORIGIN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class YarnClusterConfig(ClusterConfig):
    """``kind: yarn``: experiments run as YARN Services through the ResourceManager's REST API.

    ``rm_url`` is the ResourceManager web address (``http://rm:8088``), which serves the Services
    API (``/app/v1/services``, ``yarn.webapp.api-service.enable=true``) and the cluster API
    (``/ws/v1/cluster``). ``user`` is sent as ``?user.name=`` (Hadoop's *simple* HTTP auth) and
    owns the services; ``queue`` is the scheduler queue they are submitted to.

    Replicas reach each other through YARN's registry DNS: component instance ``worker-1`` of
    service ``sb-<uid>`` is ``worker-1.sb-<uid>.<user>.<dns_domain>`` (``dns_domain`` is the
    registry's ``hadoop.registry.dns.domain-name``), listening on ``port`` (the same number for
    every replica: each container has its own address on a Docker network). Without a
    ``dns_domain`` only single-replica work can run here.

    ``artifact`` says what a container runs in: ``docker`` (the experiment's image, else
    ``image``), ``tarball`` (the archive at ``tarball``, e.g. ``hdfs:///envs/py311.tgz``,
    localized under ``lib/``) or ``none`` (the bare command on the NodeManager host).
    ``restart_policy`` is the components' policy: ``NEVER`` (default; a failed container fails
    the attempt, like the Kubernetes adapter's ``backoffLimit: 0``) or ``ON_FAILURE`` (YARN
    relaunches failed containers). Logs are read from the NodeManagers' web services
    (``nodemanager_scheme://<bare_host>:nodemanager_port``), file ``log_file`` of each container.

    Environments: the environment's ``dockerImage`` is the DOCKER artifact. Nothing is installed
    at run time: an environment with pip or conda dependencies is refused unless
    ``images_have_dependencies: true`` declares that the images (or the tarball) this cluster
    runs already have them. ``docker_client_config`` is the URI (``hdfs:///...``) of a Docker
    client ``config.json`` with the credentials of the broker's registries; the service of a plan
    whose image comes from a registry with credentials names it (the service's
    ``docker_client_config``), so YARN pulls with them.
    """

    kind: Literal["yarn"] = "yarn"
    rm_url: str = Field(description="ResourceManager web address, e.g. http://rm.example.com:8088")
    user: str = Field(description="YARN user of every request (simple auth user.name)")
    queue: str = Field(default="default", description="Scheduler queue of the services")
    dns_domain: str | None = Field(default=None, description="Registry DNS domain of the containers")
    port: int = Field(default=23456, ge=1, le=65535, description="Port every replica listens on")
    artifact: Literal["docker", "tarball", "none"] = "docker"
    image: str | None = Field(default=None, description="Docker image of plans that name none")
    tarball: str | None = Field(default=None, description="Archive URI for artifact: tarball")
    docker_network: str | None = Field(default=None, description="Docker network of the containers")
    restart_policy: Literal["NEVER", "ON_FAILURE"] = "NEVER"
    lifetime: int | None = Field(default=None, gt=0, description="Seconds YARN keeps a service at most")
    origin: str | None = Field(default=None, description="Broker mark (default: cluster name)")
    images_have_dependencies: bool = Field(
        default=False,
        description="The images (or tarball) already have environments' pip/conda dependencies",
    )
    docker_client_config: str | None = Field(
        default=None, description="URI of a Docker client config.json with the registries' credentials"
    )
    nodemanager_scheme: Literal["http", "https"] = "http"
    nodemanager_port: int = Field(default=8042, ge=1, le=65535, description="NodeManager web port")
    log_file: str = Field(default="stdout.txt", description="Container log file read as a replica's log")
    log_bytes: int = Field(default=1 << 20, ge=1024, description="Bytes read from the end of a log")
    request_timeout: float = Field(default=10.0, gt=0, description="Seconds of one HTTP call")
    max_concurrent_requests: int = Field(default=8, ge=1, le=64, description="Parallel reads per poll")

    @field_validator("rm_url")
    @classmethod
    def _http(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("the ResourceManager address must start with http:// or https://")
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not _USER.match(value):
            raise ValueError("not a valid user name (letters, digits, '.', '_', '-'; at most 64)")
        return value

    @field_validator("dns_domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().strip(".").lower()
        if not value or len(value) > 200 or not _DOMAIN.match(value):
            raise ValueError("not a valid DNS domain")
        return value

    @field_validator("origin")
    @classmethod
    def _origin(cls, value: str | None) -> str | None:
        if value is not None and not _ORIGIN.match(value):
            raise ValueError("not a valid origin (lower-case letters, digits and dashes, at most 63)")
        return value

    @field_validator("docker_client_config")
    @classmethod
    def _client_config(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[a-z][a-z0-9+.-]*://\S+$", value.strip()):
            raise ValueError("a URI of the file, e.g. hdfs:///user/yarn/docker/config.json")
        return value.strip() if value is not None else None

    @field_validator("log_file")
    @classmethod
    def _log_file(cls, value: str) -> str:
        if not value or "/" in value or value in (".", ".."):
            raise ValueError("a log file name, without folders (examples: stdout.txt, stderr.txt)")
        return value

    @model_validator(mode="after")
    def _artifact(self) -> YarnClusterConfig:
        if self.artifact == "tarball" and not self.tarball:
            raise ValueError("artifact: tarball needs tarball (the archive's URI)")
        if self.artifact != "tarball" and self.tarball:
            raise ValueError("tarball is only used with artifact: tarball")
        return self

    @property
    def origin_mark(self) -> str:
        """The broker's mark in every service's description (an application tag in YARN)."""
        return self.origin or self.name
