"""The Submarine NotebookSpec and the notebook runtime: one Jupyter server per notebook.

A notebook is a one-replica workload (role ``Notebook``, replica ``notebook-0``) that serves: the
plan starts ``jupyter server`` (JupyterLab's UI when installed) on the address the cluster gives
the replica, with its base URL set to the broker's public prefix ``/notebook/<namespace>/<name>/``
so the broker's proxy forwards paths unchanged. The server's token arrives in ``JUPYTER_TOKEN``
(jupyter_server reads it from there; it never appears on a command line). The plan's ``workdir``
is the notebook id, so a stopped and restarted notebook finds its files again where the cluster
keeps them.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from runtimes.environment import EnvironmentPlan
from runtimes.environment_spec import inline_plan
from runtimes.plan import Addressing, LaunchPlan, ReplicaPlan
from runtimes.resources import parse_resources
from runtimes.spec import (
    MAX_SECONDS,
    EnvironmentRef,
    PlacementSpec,
    _Model,
    check_env,
    check_namespace,
    check_resources,
)

ROLE = "Notebook"
REPLICA = "notebook-0"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class NotebookMeta(_Model):
    """``meta``: name, namespace, owner and labels (Submarine's NotebookMeta) + broker placement."""

    name: str = Field(min_length=1, max_length=63)
    namespace: str | None = Field(default=None, max_length=63)
    ownerId: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    placement: PlacementSpec = Field(default_factory=PlacementSpec)

    @field_validator("name", mode="before")
    @classmethod
    def _dns_name(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            if not _NAME.match(value):
                raise ValueError(
                    "must be a DNS label (lower-case letters, digits and dashes, at most 63): "
                    "it is part of the notebook's URL"
                )
        return value

    @field_validator("namespace")
    @classmethod
    def _dns_namespace(cls, value: str | None) -> str | None:
        return check_namespace(value)


class NotebookPodSpec(_Model):
    """``spec``: environment variables and resources (Submarine's NotebookPodSpec) + idle timeout."""

    envVars: dict[str, str] = Field(default_factory=dict)
    resources: str | None = None
    idleTimeoutSeconds: float | None = Field(
        default=None,
        ge=0,
        le=MAX_SECONDS,
        description="Stop the notebook after this long without activity (0 = never; default: the broker's)",
    )
    # Echo fields of Submarine's NotebookPodSpec (derived from resources there); accepted and ignored.
    cpu: Any = None
    gpu: Any = None
    memory: Any = None

    @field_validator("resources")
    @classmethod
    def _parseable(cls, value: str | None) -> str | None:
        return check_resources(value)

    @field_validator("envVars")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str] | None:
        return check_env(value)


class NotebookSpec(_Model):
    """A whole Submarine notebook submission."""

    meta: NotebookMeta
    environment: EnvironmentRef = Field(default_factory=EnvironmentRef)
    spec: NotebookPodSpec = Field(default_factory=NotebookPodSpec)

    @property
    def image(self) -> str | None:
        """The image where a cluster needs one: ``environment.image``, else ``dockerImage``."""
        return self.environment.image or self.environment.dockerImage


def base_path(namespace: str, name: str) -> str:
    """The notebook's public prefix, also the Jupyter server's base URL."""
    return f"/notebook/{namespace}/{name}/"


def build_notebook_plan(
    spec: NotebookSpec,
    *,
    workload_id: str,
    uid: str,
    namespace: str,
    addressing: Addressing,
    python: str,
    app_module: str = "jupyterlab",
    extra_env: dict[str, str] | None = None,
    environment: EnvironmentPlan | None = None,
) -> LaunchPlan:
    """The launch plan of one attempt of a notebook: one Jupyter server.

    ``python`` is the interpreter that has jupyter_server on the chosen cluster and
    ``app_module`` what it runs: ``jupyterlab`` (the Lab UI) or ``jupyter_server`` (REST, kernels).
    ``extra_env`` (the broker's address, the server token) goes under the spec's own variables,
    except the token, which a spec cannot override. ``environment`` is the registered
    environment's revision pinned at submission (else the spec's inline one, as for experiments).
    """
    if environment is None:
        environment = inline_plan(spec.environment)
    host = addressing.host(ROLE, 0)
    port = addressing.port(ROLE, 0)
    env: dict[str, str] = {}
    env.update({k: v for k, v in (extra_env or {}).items() if k != "JUPYTER_TOKEN"})
    env.update(spec.spec.envVars)
    env.update(
        {
            "JOB_ID": workload_id,
            "SUBMARINE_NOTEBOOK_ID": workload_id,
            "SUBMARINE_ROLE": ROLE,
            "SUBMARINE_REPLICA_INDEX": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if extra_env and "JUPYTER_TOKEN" in extra_env:
        env["JUPYTER_TOKEN"] = extra_env["JUPYTER_TOKEN"]
    argv = [
        python,
        "-m",
        app_module,
        "--no-browser",
        "--allow-root",
        f"--ip={host}",
        f"--port={port}",
        "--port-retries=0",
        f"--ServerApp.base_url={base_path(namespace, spec.meta.name)}",
        "--ServerApp.root_dir=.",
    ]
    replica = ReplicaPlan(
        role=ROLE,
        index=0,
        argv=argv,
        env=env,
        resources=parse_resources(spec.spec.resources),
        host=host,
        port=port,
    )
    return LaunchPlan(
        uid=uid,
        workload_id=workload_id,
        workload_kind="notebook",
        name=spec.meta.name,
        namespace=namespace,
        framework="notebook",
        image=spec.image or (environment.image if environment is not None else None),
        replicas=[replica],
        success_roles=[ROLE],
        pip_packages=list(environment.pip) if environment is not None else [],
        conda_packages=list(environment.conda) if environment is not None else [],
        environment=environment,
        labels={"notebook-id": workload_id, **spec.meta.labels},
        workdir=workload_id,
    )
