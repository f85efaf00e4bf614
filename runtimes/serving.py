"""The Submarine ServeSpec and the serve plan: N model-server replicas of one registered version.

A served model is a workload of kind ``serve``: replicas of role ``Server`` (``server-0``,
``server-1``, ...), each one model-server process that downloads the version's files from the
broker and answers MLflow's scoring protocol. The proxy at ``/serve/<namespace>/<name>/`` forwards
to a ready replica.

The model-server process contract (``runtimes.model_server``, every cluster kind runs the same)::

    python -m runtimes.model_server --host <host> --port <port> --model-uri <files_url>

- ``--host``/``--port``: where it listens (the address the cluster gave the replica).
- ``--model-uri``: :attr:`ModelPlan.files_url`, the broker's artifact-API URL of the version's
  folder, ``<broker>/api/2.0/mlflow-artifacts/artifacts/registry/<model_key>/<version>``. The
  server lists it (``GET <broker>/api/2.0/mlflow-artifacts/artifacts?path=registry/<key>/<version>``,
  MLflow's list call, recursing into directories) and downloads every file (``GET <files_url>/<path>``)
  into ``./model`` of its working directory, then loads it with ``mlflow.pyfunc.load_model``
  (or its own loader when MLflow is not installed). A ``file://`` URI or a plain local path is
  also accepted (tests, Kubernetes storage initialisers that already downloaded the files).

``python`` is the cluster's interpreter (``notebook_python``), or ``python`` when the serve's
environment installs packages: that environment's interpreter, which the kind puts first on
``PATH`` (local: the built venv) and where it makes this package importable (local: a
``PYTHONPATH`` entry holding only ``runtimes``; Ray: ``py_modules``; Kubernetes: the image).
An environment made from the model's ``requirements.txt`` adds :data:`SERVER_REQUIREMENTS` (and
:data:`MLFLOW_REQUIREMENT` when the model names no MLflow), so the server runs there.

Environment variables (all set by the plan; none ever appears on the command line):

- ``SUBMARINE_SERVE_TOKEN``: the server requires ``Authorization: Bearer <token>`` on every
  request except ``GET /ping`` and ``GET /health`` (401 otherwise). The broker's proxy adds it;
  callers never see it. When unset (a developer running the server by hand), no check.
- ``SUBMARINE_MODEL_FETCH_TOKEN``: the server sends ``Authorization: Bearer <token>`` to the
  broker when downloading the files; the broker accepts it for reading
  ``registry/<model_key>/<version>/...`` of that one version only.
- ``SUBMARINE_SERVE_ID``, ``SUBMARINE_ROLE`` (``Server``), ``SUBMARINE_REPLICA_INDEX``,
  ``SUBMARINE_MODEL_NAME``, ``SUBMARINE_MODEL_VERSION``: for logs and ``/health``.

HTTP surface of the server (MLflow's scoring server's): ``GET /ping`` (200 once the model is
loaded, 503 before), ``GET /health`` (same), ``GET /version``, ``POST /invocations`` with
``dataframe_split``, ``dataframe_records``, ``instances`` or ``inputs`` (JSON) or CSV; a malformed
body is a 400 with MLflow's ``{"error_code": "BAD_REQUEST", "message": ...}``.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from runtimes.environment import EnvironmentPlan
from runtimes.environment_spec import inline_plan
from runtimes.plan import Addressing, LaunchPlan, ModelPlan, ReplicaPlan
from runtimes.resources import parse_resources
from runtimes.spec import (
    EnvironmentRef,
    PlacementSpec,
    _Model,
    check_env,
    check_namespace,
    check_resources,
)

ROLE = "Server"
KIND = "serve"
FRAMEWORK = "serve"
MODULE = "runtimes.model_server"
#: The server's bearer token (required on every request but /ping and /health).
TOKEN_ENV = "SUBMARINE_SERVE_TOKEN"
#: The token the server sends to the broker to download the version's files.
FETCH_TOKEN_ENV = "SUBMARINE_MODEL_FETCH_TOKEN"
#: Paths a server answers without its token (readiness probes).
OPEN_PATHS = ("/ping", "/health")
#: The most replicas one serve may ask for.
MAX_REPLICAS = 32
#: What the model server itself imports beside the standard library (this package's ``pydantic``,
#: the server's ``starlette`` and ``uvicorn``): added to an environment made from a model's
#: requirements, so the server runs in it. The bounds are the broker's own (setup.cfg).
SERVER_REQUIREMENTS = ("pydantic>=2.6", "starlette>=0.40", "uvicorn>=0.30")
#: MLflow, which loads and scores the model: added when the model's requirements do not name it
#: (MLflow writes its own pin there, which then wins). The bound is the ``serving`` extra's.
MLFLOW_REQUIREMENT = "mlflow>=2.10"
#: The interpreter a serve runs in an environment that installs packages: the environment's own,
#: first on ``PATH`` where the kind built it (as an experiment's ``python train.py`` finds it).
ENVIRONMENT_PYTHON = "python"
__all__ = [
    "ENVIRONMENT_PYTHON",
    "FETCH_TOKEN_ENV",
    "KIND",
    "MLFLOW_REQUIREMENT",
    "MODULE",
    "OPEN_PATHS",
    "ROLE",
    "SERVER_REQUIREMENTS",
    "TOKEN_ENV",
    "ModelPlan",
    "ServeSpec",
    "base_path",
    "build_serve_plan",
    "default_name",
    "files_url",
    "registry_path",
]

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_UNSAFE = re.compile(r"[^a-z0-9-]+")


def registry_path(model_key: str, version: int) -> str:
    """The artifact-store path of a registered version's folder: ``registry/<key>/<version>``."""
    return f"registry/{model_key}/{version}"


def files_url(broker_url: str, model_key: str, version: int) -> str:
    """The broker's artifact-API URL of a version's folder (the server's ``--model-uri``)."""
    base = broker_url.rstrip("/")
    return f"{base}/api/2.0/mlflow-artifacts/artifacts/{registry_path(model_key, version)}"


def base_path(namespace: str, name: str) -> str:
    """The serve's public prefix on the broker: ``/serve/<namespace>/<name>/``."""
    return f"/serve/{namespace}/{name}/"


def default_name(model_name: str, version: int | None, alias: str | None = None) -> str:
    """The serve name Submarine's ``{modelName, modelVersion}`` gets: ``<model>-<version>`` (or
    ``<model>-<alias>``) made a DNS label (lower case, other characters as dashes, at most 63)."""
    tail = str(version) if version is not None else (alias or "latest")
    text = _UNSAFE.sub("-", f"{model_name}-{tail}".lower()).strip("-")
    if len(text) > 63:
        text = text[-63:].strip("-")
    return text or "model"


def version_number(value: object) -> object:
    """A version given as digits in a string, as a number (Submarine's SDK sends an int; its UI
    and curl users send "1"); anything else as it is, for the field's own check."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


class ServeSpec(_Model):
    """A serve submission: Submarine's ``{modelName, modelVersion}`` plus the broker's fields."""

    modelName: str = Field(min_length=1, max_length=256)
    modelVersion: int | None = Field(default=None, ge=1)
    alias: str | None = Field(default=None, min_length=1, max_length=256)
    name: str | None = Field(default=None, description="The serve's name (default <model>-<version>)")
    namespace: str | None = Field(default=None, max_length=63)
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS)
    resources: str | None = Field(default=None, description="Per replica, e.g. cpu=1,memory=1Gi")
    placement: PlacementSpec = Field(default_factory=PlacementSpec)
    environment: EnvironmentRef = Field(default_factory=EnvironmentRef)
    envVars: dict[str, str] = Field(default_factory=dict)

    @field_validator("modelVersion", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        return version_number(value)

    @field_validator("name", mode="before")
    @classmethod
    def _dns_name(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            if not _NAME.match(value):
                raise ValueError(
                    "must be a DNS label (lower-case letters, digits and dashes, at most 63): "
                    "it is part of the serve's URL"
                )
        return value

    @field_validator("namespace")
    @classmethod
    def _dns_namespace(cls, value: str | None) -> str | None:
        return check_namespace(value)

    @field_validator("resources")
    @classmethod
    def _parseable(cls, value: str | None) -> str | None:
        return check_resources(value)

    @field_validator("envVars")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str] | None:
        return check_env(value)

    @model_validator(mode="after")
    def _version_or_alias(self) -> ServeSpec:
        if self.modelVersion is not None and self.alias is not None:
            raise ValueError("give modelVersion or alias, not both")
        if self.modelVersion is None and self.alias is None:
            raise ValueError("modelVersion or alias is required")
        return self

    @property
    def serve_name(self) -> str:
        """The serve's name: ``name``, else :func:`default_name`."""
        return self.name or default_name(self.modelName, self.modelVersion, self.alias)


class ServeUpdate(_Model):
    """A rollout (``PATCH /api/v1/serve/{id}``): the version of the same model to serve from now
    on, by number or by an alias to follow (re-rolled whenever the alias moves)."""

    modelVersion: int | None = Field(default=None, ge=1)
    alias: str | None = Field(default=None, min_length=1, max_length=256)

    @field_validator("modelVersion", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        return version_number(value)

    @model_validator(mode="after")
    def _version_or_alias(self) -> ServeUpdate:
        if (self.modelVersion is None) == (self.alias is None):
            raise ValueError("give modelVersion or alias (one of them)")
        return self


def build_serve_plan(
    spec: ServeSpec,
    model: ModelPlan,
    *,
    workload_id: str,
    uid: str,
    namespace: str,
    addressing: Addressing,
    python: str,
    server_token: str,
    fetch_token: str,
    extra_env: dict[str, str] | None = None,
    environment: EnvironmentPlan | None = None,
) -> LaunchPlan:
    """The launch plan of one attempt of a serve: ``spec.replicas`` model servers of ``model``.

    ``python`` is the interpreter that has the broker's ``runtimes`` package (and MLflow) on the
    chosen cluster; when the environment installs packages the servers run
    :data:`ENVIRONMENT_PYTHON` instead (that environment's interpreter: what it installs is what
    the server loads the model with; the kind makes ``runtimes`` importable there).
    ``extra_env`` goes under the spec's own variables; the tokens and the ``SUBMARINE_*``
    identity variables go over both (a spec cannot override them).
    ``environment`` is the one the serve pinned: a registered environment's revision, the spec's
    inline one, or one made from the model's ``requirements.txt`` (else the spec's inline one).
    """
    if environment is None:
        environment = inline_plan(spec.environment)
    if environment is not None and environment.installs:
        python = ENVIRONMENT_PYTHON
    resources = parse_resources(spec.resources)
    replicas: list[ReplicaPlan] = []
    for index in range(spec.replicas):
        host = addressing.host(ROLE, index)
        port = addressing.port(ROLE, index)
        env: dict[str, str] = {}
        env.update({k: v for k, v in (extra_env or {}).items() if k not in (TOKEN_ENV, FETCH_TOKEN_ENV)})
        env.update(spec.envVars)
        env.update(
            {
                "JOB_ID": workload_id,
                "SUBMARINE_SERVE_ID": workload_id,
                "SUBMARINE_ROLE": ROLE,
                "SUBMARINE_REPLICA_INDEX": str(index),
                "SUBMARINE_MODEL_NAME": model.name,
                "SUBMARINE_MODEL_VERSION": str(model.version),
                "PYTHONUNBUFFERED": "1",
                TOKEN_ENV: server_token,
                FETCH_TOKEN_ENV: fetch_token,
            }
        )
        argv = [
            python,
            "-m",
            MODULE,
            "--host",
            host,
            "--port",
            str(port),
            "--model-uri",
            model.files_url,
        ]
        replicas.append(
            ReplicaPlan(role=ROLE, index=index, argv=argv, env=env, resources=resources, host=host, port=port)
        )
    return LaunchPlan(
        uid=uid,
        workload_id=workload_id,
        workload_kind=KIND,
        name=spec.serve_name,
        namespace=namespace,
        framework=FRAMEWORK,
        image=environment.image if environment is not None else None,
        replicas=replicas,
        success_roles=[ROLE],
        pip_packages=list(environment.pip) if environment is not None else [],
        conda_packages=list(environment.conda) if environment is not None else [],
        environment=environment,
        labels={"serve-id": workload_id, "model": model.name, "model-version": str(model.version)},
        model=model,
    )
