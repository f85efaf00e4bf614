"""Configuration of a ``kubernetes`` cluster."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from clusters.config import ClusterConfig

_DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
DEFAULT_NOTEBOOK_ENDPOINT = "http://{service}.{namespace}.svc:{port}"
_ENDPOINT_FIELDS = {"service": "sb-x", "namespace": "ns", "port": 80, "cluster_ip": "10.0.0.1", "uid": "u"}


class KubernetesClusterConfig(ClusterConfig):
    """``kind: kubernetes``: experiments run as Kubeflow training jobs or Indexed Jobs.

    The API server is reached through a kubeconfig file (``kubeconfig`` and optionally
    ``context``) or, for a broker running in a pod, the service account (``in_cluster: true``).
    ``token`` (a secret) replaces the credentials of the kubeconfig's user: it is masked by
    :meth:`public_view` and never logged or put in a message. ``workload_api`` chooses what is
    created: ``kubeflow`` (TFJob, PyTorchJob, XGBoostJob; the training operator must be
    installed), ``job`` (one Indexed ``batch/v1`` Job per role and a headless Service) or
    ``auto`` (Kubeflow when the API server serves ``kubeflow.org/v1``). ``image`` is the image of
    plans that name none. ``origin`` is the value of the ``submarine-broker/origin`` label on
    every object (the orphan sweep deletes only objects with it); default: the cluster name.

    Notebooks (see :mod:`clusters.kubernetes.notebooks`) run as a Kubeflow ``Notebook`` when
    ``workload_api`` is not ``job`` and discovery finds ``notebooks`` served under
    ``kubeflow.org/v1``, else as a StatefulSet and a ClusterIP Service; their working directory is
    a PersistentVolumeClaim per notebook (``notebook_storage`` of ``notebook_storage_class``; null:
    an emptyDir, nothing kept) mounted at ``notebook_mount_path``. The interpreter is the shared
    ``notebook_python`` (the broker plans ``python`` on image-based clusters, as this one is).
    ``notebook_endpoint`` is where the broker reaches a notebook's
    Service: a template with ``{service}``, ``{namespace}``, ``{port}``, ``{cluster_ip}`` and
    ``{uid}``; the default, ``http://{service}.{namespace}.svc:{port}``, resolves only inside the
    cluster, so a broker outside it names a route that reaches the Service from where it runs.

    Models (see :mod:`clusters.kubernetes.serving`) are served by a KServe ``InferenceService``
    when ``serve_api`` is ``kserve``, or ``auto`` and discovery finds ``inferenceservices`` served
    under ``serving.kserve.io/v1beta1``; else by a Deployment and a ClusterIP Service, reached at
    ``serve_endpoint`` (a template like ``notebook_endpoint``). An InferenceService is reached at
    the URL KServe reports (``status.address.url``).

    Environments (see :mod:`clusters.kubernetes.environment`): an environment's pip dependencies
    are installed by an init container into ``<environment_cache>/<hash>`` on each node (a
    ``hostPath``), with ``environment_python`` of the image; ``allow_installs: false`` refuses
    environments with pip dependencies instead (the image must have them).
    """

    secret_fields: ClassVar[frozenset[str]] = frozenset({"token"})

    kind: Literal["kubernetes"] = "kubernetes"
    kubeconfig: str | None = Field(default=None, description="Path of a kubeconfig file")
    context: str | None = Field(default=None, description="Context of the kubeconfig (default: current)")
    in_cluster: bool = Field(default=False, description="Use the pod's service account")
    namespace: str = Field(default="default", description="Namespace every object is created in")
    workload_api: Literal["auto", "kubeflow", "job"] = "auto"
    image: str | None = Field(default=None, description="Image of plans that name none")
    token: str | None = Field(default=None, description="Bearer token (secret), replaces the kubeconfig's")
    origin: str | None = Field(default=None, description="Origin label value (default: the cluster name)")
    request_timeout: float = Field(default=30.0, gt=0, description="Seconds of one API call")
    log_tail: int = Field(default=1000, ge=1, description="Lines read per pod log when no tail is asked")
    notebook_endpoint: str = Field(
        default=DEFAULT_NOTEBOOK_ENDPOINT,
        description="Where the broker reaches a notebook's Service: a template with {service}, "
        "{namespace}, {port}, {cluster_ip}, {uid}",
    )
    notebook_storage: str | None = Field(
        default="10Gi", description="Size of a notebook's working-directory claim (null: an emptyDir)"
    )
    notebook_storage_class: str | None = Field(
        default=None, description="StorageClass of the claims (default: the cluster's default class)"
    )
    notebook_mount_path: str = Field(
        default="/home/jovyan", description="Where the working directory is mounted (the server's cwd)"
    )

    serve_api: Literal["auto", "kserve", "deployment"] = Field(
        default="auto",
        description="How models are served: a KServe InferenceService, a Deployment + Service, or "
        "auto (KServe when the API server serves serving.kserve.io/v1beta1 inferenceservices)",
    )
    serve_endpoint: str = Field(
        default=DEFAULT_NOTEBOOK_ENDPOINT,
        description="Where the broker reaches a served model's Service (the Deployment fallback): a "
        "template with {service}, {namespace}, {port}, {cluster_ip}, {uid}",
    )

    allow_installs: bool = Field(
        default=True, description="Install environments' pip dependencies in pods (else refuse them)"
    )
    environment_cache: str = Field(
        default="/var/cache/submarine-broker/envs",
        description="Folder on the nodes under which installed environments are kept, one per hash",
    )
    environment_python: str = Field(
        default="python", description="The images' Python, which installs an environment's pip dependencies"
    )

    @field_validator("environment_cache")
    @classmethod
    def _cache(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("/") or ":" in value or value.rstrip("/") == "":
            raise ValueError("must be an absolute folder on the nodes, without ':' and not '/'")
        return value.rstrip("/")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _DNS_1123_LABEL.match(value):
            raise ValueError("not a valid namespace (a DNS-1123 label)")
        return value

    @field_validator("origin")
    @classmethod
    def _origin(cls, value: str | None) -> str | None:
        if value is not None and (not value or not _LABEL_VALUE.match(value)):
            raise ValueError("not a valid label value (at most 63 letters, digits, '-', '_', '.')")
        return value

    @field_validator("notebook_endpoint", "serve_endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        value = value.strip()
        try:
            example = value.format(**_ENDPOINT_FIELDS)
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                "not a template of {service}, {namespace}, {port}, {cluster_ip} and {uid} "
                "(unknown field or unbalanced braces)"
            ) from None
        if not example.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("notebook_storage")
    @classmethod
    def _storage(cls, value: str | None) -> str | None:
        if value is not None and not _QUANTITY.match(value.strip()):
            raise ValueError("not a storage quantity (examples: 10Gi, 500Mi)")
        return value.strip() if value is not None else None

    @field_validator("notebook_storage_class")
    @classmethod
    def _storage_class(cls, value: str | None) -> str | None:
        if value is not None and (not _DNS_1123_SUBDOMAIN.match(value) or len(value) > 253):
            raise ValueError("not a valid StorageClass name (a DNS-1123 subdomain)")
        return value

    @field_validator("notebook_mount_path")
    @classmethod
    def _mount_path(cls, value: str) -> str:
        if not value.startswith("/") or ":" in value:
            raise ValueError("must be an absolute path without ':'")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> KubernetesClusterConfig:
        if self.in_cluster and self.kubeconfig:
            raise ValueError("give either kubeconfig or in_cluster: true, not both")
        if not self.in_cluster and not self.kubeconfig:
            raise ValueError("give kubeconfig (a path) or in_cluster: true")
        return self

    @property
    def origin_label(self) -> str:
        return self.origin or self.name
