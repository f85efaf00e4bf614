"""Image references and the registry credentials a cluster needs to pull them.

The broker resolves which configured registry an image belongs to (:mod:`broker.images`) and puts
the credentials of the registries a plan's images come from on the plan
(:attr:`runtimes.plan.LaunchPlan.registry_auth`); adapters turn them into their own objects (a
Kubernetes ``kubernetes.io/dockerconfigjson`` Secret, a Docker client config). The password is a
:class:`~pydantic.SecretStr` and the field is excluded from the plan's serialisation, so it never
rides in a Ray entrypoint, a log line or a stored record.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, SecretStr

#: Docker's name for Docker Hub in a client config's ``auths``.
DOCKER_HUB = "docker.io"


class RegistryAuth(BaseModel):
    """How to log in to one registry: its server (``host[:port]``) and credentials."""

    model_config = ConfigDict(frozen=True)

    registry: str
    server: str
    username: str
    password: SecretStr


def image_host(image: str) -> str:
    """The registry host of a Docker image reference (``docker.io`` when it names none).

    The first path component is a host when it contains ``.`` or ``:`` or is ``localhost``
    (Docker's own rule, ``reference.SplitHostname``).
    """
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def docker_config_json(auths: Mapping[str, RegistryAuth]) -> str:
    """A Docker client ``config.json`` (``{"auths": {server: {username, password, auth}}}``)."""
    entries = {}
    for auth in sorted(auths.values(), key=lambda a: a.server):
        password = auth.password.get_secret_value()
        token = base64.b64encode(f"{auth.username}:{password}".encode()).decode()
        entries[auth.server] = {"username": auth.username, "password": password, "auth": token}
    return json.dumps({"auths": entries}, sort_keys=True, separators=(",", ":"))
