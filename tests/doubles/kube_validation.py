"""Validate Kubernetes objects the way a real apiserver (plus the Kubeflow training operator) would.

``validate(obj) -> list[str]``: an empty list means the object would be accepted. Each message is
``<path>: <what is wrong>``, the path dotted from the object's root (``spec.template.spec...``).

* Core kinds (Pod, Service, Job, ConfigMap, any kind kubernetes-validate ships): a cached strict
  jsonschema validator built from kubernetes-validate's bundled schemas for Kubernetes 1.30
  (unknown fields are refused like ``kubectl --validate=strict``).
* Kubeflow kinds (TFJob, PyTorchJob, XGBoostJob, plus MPIJob/PaddleJob/JAXJob): the CRD's
  openAPIV3Schema from ``../shared/schemas/kubernetes/kubeflow-training/`` with strict mode emulated
  (``additionalProperties: false`` on every object schema with properties, except ``metadata`` and
  ``x-kubernetes-preserve-unknown-fields``), plus the operator's admission-webhook rules.
* The Kubeflow ``Notebook`` (v1, v1beta1, v1alpha1): the CRD from
  ``../shared/schemas/kubernetes/kubeflow-notebook/`` with its ``validation_patches.yaml`` JSON
  patch applied first (as the kustomize build does: every container needs ``name`` and ``image``,
  at least one container), strict as above, plus the pod rules below on ``spec.template.spec``
  and a DNS-1035 name (the controller names its StatefulSet and Service after it).
* Apiserver rules no schema encodes: DNS-1123/1035 names, label keys and values, a Job's pod
  ``restartPolicy`` (Never/OnFailure), quantities (``512MB`` is refused), extended resources such as
  ``nvidia.com/gpu`` (whole numbers, request equal to limit), container and env names, env
  ``valueFrom`` (one source; a ``secretKeyRef`` with a name and a valid key), volumes (unique
  DNS-1123 names, one source each) and volume mounts (a defined volume, an absolute path), probe
  handlers (exactly one) and ports. A StatefulSet's selector must match its template's labels and
  its pods restart ``Always``; a Secret's data is base64 under valid keys; a claim names access
  modes and a storage request. These are applied to the pod templates inside Kubeflow jobs and
  Notebooks too, since the controllers' pods would be refused.

The CRD folder is found from ``configure(crd_dir)``, else ``$KUBEFLOW_CRD_DIR``, else
``<repo>/../shared/schemas/kubernetes/kubeflow-training``; the Notebook CRD's folder is its sibling
``kubeflow-notebook``.

* KServe's ``InferenceService`` (``serving.kserve.io/v1beta1``): the CRD from
  ``../shared/schemas/kubernetes/kserve/`` (the training CRDs' sibling folder ``kserve``), strict as
  above, plus KServe's validating webhook rules (a DNS-1035 name; exactly one predictor
  implementation: ``model``, a framework field or ``containers``; a storage URI of a scheme the
  storage initializer knows; ``minReplicas <= maxReplicas``) and the pod rules on the predictor's
  containers and volumes (the model container is named ``kserve-container`` by the controller).
* A ``Deployment``: its selector must match its template's labels, its pods restart ``Always``.

``webhook_problems(obj)`` returns only the Kubeflow operator's webhook-rule messages (the double can
answer those with a 403 "admission webhook ... denied the request" like a real cluster).
"""

from __future__ import annotations

import copy
import functools
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonpatch
import jsonschema
import yaml

K8S_VERSION = "1.30.0"
_REPO = Path(__file__).resolve().parents[2]
_DEFAULT_CRD_DIR = _REPO.parent / "shared" / "schemas" / "kubernetes" / "kubeflow-training"
_crd_dir: Path | None = None
_lock = threading.Lock()

# kind -> (CRD file stem, replica-spec field, allowed replica keys, default container name)
KUBEFLOW: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "TFJob": ("tfjobs", "tfReplicaSpecs", ("Chief", "Master", "PS", "Worker", "Evaluator"), "tensorflow"),
    "PyTorchJob": ("pytorchjobs", "pytorchReplicaSpecs", ("Master", "Worker"), "pytorch"),
    "XGBoostJob": ("xgboostjobs", "xgbReplicaSpecs", ("Master", "Worker"), "xgboost"),
    "PaddleJob": ("paddlejobs", "paddleReplicaSpecs", ("Master", "Worker"), "paddle"),
    "JAXJob": ("jaxjobs", "jaxReplicaSpecs", ("Worker",), "jax"),
    "MPIJob": ("mpijobs", "mpiReplicaSpecs", ("Launcher", "Worker"), "mpi"),
}
KUBEFLOW_GROUP_VERSION = "kubeflow.org/v1"
#: The notebook controller's kind: versions the CRD serves.
NOTEBOOK_VERSIONS = ("kubeflow.org/v1", "kubeflow.org/v1beta1", "kubeflow.org/v1alpha1")

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_SUFFIX = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}  # fmt: skip
STANDARD_RESOURCES = {"cpu", "memory", "ephemeral-storage", "storage"}


def configure(crd_dir: str | os.PathLike[str] | None) -> None:
    """Point the Kubeflow kinds at a folder holding ``kubeflow.org_<plural>.yaml`` CRDs."""
    global _crd_dir
    _crd_dir = Path(crd_dir) if crd_dir is not None else None


def crd_dir() -> Path:
    if _crd_dir is not None:
        return _crd_dir
    env = os.environ.get("KUBEFLOW_CRD_DIR")
    return Path(env) if env else _DEFAULT_CRD_DIR


def notebook_crd_dir() -> Path:
    """``kubeflow-notebook`` beside the training CRDs' folder."""
    return crd_dir().parent / "kubeflow-notebook"


def kserve_crd_dir() -> Path:
    """``kserve`` beside the training CRDs' folder."""
    return crd_dir().parent / "kserve"


#: KServe's predictor implementations (``predictor.model`` or one framework field, or ``containers``).
KSERVE_FRAMEWORKS = ("sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "pmml",
                     "lightgbm", "paddle", "huggingface", "model")  # fmt: skip
#: The storage URI prefixes KServe's webhook and storage initializer accept (pkg/constants, storage.py).
KSERVE_STORAGE_PREFIXES = ("gs://", "s3://", "pvc://", "file://", "https://", "http://", "hdfs://",
                           "webhdfs://", "oci://", "hf://", "/mnt/models")  # fmt: skip
KSERVE_GROUP_VERSION = "serving.kserve.io/v1beta1"


def parse_quantity(value: Any) -> float | None:
    """A Kubernetes quantity as a number (``"500m"`` → 0.5, ``"1Gi"`` → 2**30); None when malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not QUANTITY.match(value.strip() if value else value):
        return None
    match = re.match(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(.*)$", value)
    assert match is not None
    number, suffix = float(match.group(1)), match.group(2)
    if suffix[:1] in ("e", "E") and suffix not in _SUFFIX:
        return number * 10 ** int(suffix[1:])
    return number * _SUFFIX[suffix]


# -- public entry points ------------------------------------------------------------------------


def validate(obj: Any) -> list[str]:
    """Every reason a real cluster would refuse ``obj`` (a dict, or a client model with ``to_dict``)."""
    obj = _as_dict(obj)
    if not isinstance(obj, dict):
        return [f"<root>: an object must be a JSON object, not {type(obj).__name__}"]
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        return ["kind: Required value"]
    if not isinstance(api_version, str) or not api_version:
        return ["apiVersion: Required value"]
    if kind == "Notebook":
        if api_version not in NOTEBOOK_VERSIONS:
            return [f"apiVersion: Notebook is served as {', '.join(NOTEBOOK_VERSIONS)}, not {api_version!r}"]
        problems = _notebook_schema_problems(api_version, obj)
        problems += _metadata_problems(obj, name_rule="dns1035")
        template = _dict(_dict(obj.get("spec")).get("template"))
        if _dict(template.get("spec")).get("containers"):
            problems += _pod_spec_problems(template.get("spec"), "spec.template.spec")
        return problems
    if kind == "InferenceService":
        if api_version != KSERVE_GROUP_VERSION:
            return [f"apiVersion: InferenceService is served as {KSERVE_GROUP_VERSION}, not {api_version!r}"]
        problems = _kserve_schema_problems(obj)
        problems += _metadata_problems(obj, name_rule="dns1035")
        problems += _kserve_problems(obj)
        return problems
    if kind in KUBEFLOW:
        if api_version != KUBEFLOW_GROUP_VERSION:
            return [f"apiVersion: {kind} is served as {KUBEFLOW_GROUP_VERSION}, not {api_version!r}"]
        problems = _crd_schema_problems(kind, obj)
        problems += _metadata_problems(obj, name_rule="dns1035")
        problems += webhook_problems(obj)
        problems += _kubeflow_pod_problems(kind, obj)
        return problems
    problems = _core_schema_problems(kind, api_version, obj)
    if problems and problems[0].startswith("<schema>"):
        return problems
    name_rule = "dns1035" if kind == "Service" else "dns1123"
    problems += _metadata_problems(obj, name_rule=name_rule, max_len=63 if kind == "Job" else 253)
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    if kind == "Pod":
        problems += _pod_spec_problems(spec, "spec")
    elif kind == "Job":
        problems += _job_problems(spec)
    elif kind == "Service":
        problems += _service_problems(spec)
    elif kind == "StatefulSet":
        problems += _statefulset_problems(spec)
    elif kind == "Deployment":
        problems += _deployment_problems(spec)
    elif kind == "Secret":
        problems += _secret_problems(obj)
    elif kind == "PersistentVolumeClaim":
        problems += _claim_problems(spec)
    elif kind == "ConfigMap":
        for key in _dict(obj.get("data")) | _dict(obj.get("binaryData")):
            if not re.match(r"^[-._a-zA-Z0-9]+$", key) or len(key) > 253:
                problems.append(
                    f"data[{key}]: Invalid value: a valid config key must consist of alphanumerics, '-', '_' or '.'"
                )
    return problems


def webhook_problems(obj: Any) -> list[str]:
    """The Kubeflow training operator v1.9 admission-webhook rules (empty for other kinds)."""
    obj = _as_dict(obj)
    kind = obj.get("kind") if isinstance(obj, dict) else None
    if kind not in KUBEFLOW:
        return []
    _, field, allowed, default_container = KUBEFLOW[kind]
    problems: list[str] = []
    name = _dict(obj.get("metadata")).get("name")
    if isinstance(name, str) and (not DNS1035_LABEL.match(name) or len(name) > 63):
        problems.append(
            f"metadata.name: Invalid value: {name!r}: a {kind} name must be a DNS-1035 label "
            "(lower case alphanumerics or '-', start with a letter, at most 63 characters)"
        )
    spec = _dict(obj.get("spec"))
    replicas = spec.get(field)
    path = f"spec.{field}"
    if not isinstance(replicas, dict) or not replicas:
        return [*problems, f"{path}: Required value: {kind} needs at least one replica spec"]
    for role, rspec in replicas.items():
        rpath = f"{path}.{role}"
        if role not in allowed:
            problems.append(
                f"{rpath}: Unsupported value: {role!r}: supported replica types: {', '.join(allowed)}"
            )
        rspec = _dict(rspec)
        count = rspec.get("replicas", 1)
        if role == "Master" and kind in ("PyTorchJob", "XGBoostJob", "PaddleJob") and count != 1:
            problems.append(
                f"{rpath}.replicas: Forbidden: there must be exactly 1 Master replica, not {count}"
            )
        elif isinstance(count, int) and count < 1:
            problems.append(f"{rpath}.replicas: Invalid value: {count}: must be at least 1")
        containers = _dict(_dict(rspec.get("template")).get("spec")).get("containers")
        cpath = f"{rpath}.template.spec.containers"
        if not isinstance(containers, list) or not containers:
            problems.append(f"{cpath}: Required value: the replica template needs at least one container")
            continue
        for i, container in enumerate(containers):
            if not _dict(container).get("image"):
                problems.append(f"{cpath}[{i}].image: Required value: every container needs an image")
        if not any(_dict(c).get("name") == default_container for c in containers):
            problems.append(
                f"{cpath}: Required value: one container must be named {default_container!r} "
                f"(names given: {[_dict(c).get('name') for c in containers]})"
            )
    if kind == "TFJob" and sum(1 for role in replicas if role in ("Chief", "Master")) > 1:
        problems.append(f"{path}: Forbidden: a TFJob may have at most one Chief or Master")
    if kind == "TFJob":
        for role in ("Chief", "Master"):
            count = _dict(replicas.get(role)).get("replicas", 1) if role in replicas else None
            if isinstance(count, int) and count > 1:
                problems.append(f"{path}.{role}.replicas: Forbidden: {role} must have at most 1 replica")
    if kind == "XGBoostJob" and "Master" not in replicas:
        problems.append(f"{path}.Master: Required value: an XGBoostJob needs a Master replica")
    if kind == "PyTorchJob":
        elastic = spec.get("elasticPolicy")
        if elastic is not None and "Worker" not in replicas:
            problems.append(
                "spec.elasticPolicy: Forbidden: an elastic PyTorchJob needs a Worker replica spec"
            )
        if _dict(elastic).get("nProcPerNode") is not None and spec.get("nprocPerNode") is not None:
            problems.append(
                "spec.nprocPerNode: Forbidden: do not set both elasticPolicy.nProcPerNode and nprocPerNode"
            )
    return problems


# -- schemas ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _core_validator(kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    from kubernetes_validate import utils as kvu
    from referencing import Registry, Resource

    group, _, version = api_version.rpartition("/")
    base = kind.lower() + (f"-{group.split('.')[0]}" if group else "") + f"-{version}.json"
    folder = f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"
    try:
        schema = kvu.schema_contents(f"{folder}/{base}", K8S_VERSION)
    except FileNotFoundError:
        return None
    defs = kvu.schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _core_schema_problems(kind: str, api_version: str, obj: dict[str, Any]) -> list[str]:
    with _lock:
        validator = _core_validator(kind, api_version)
    if validator is None:
        return [f"<schema>: no Kubernetes {K8S_VERSION} schema for kind {kind!r} in {api_version!r}"]
    return _schema_messages(validator.iter_errors(obj))


@functools.lru_cache(maxsize=16)
def _crd_validator(kind: str, folder: str) -> jsonschema.protocols.Validator:
    path = Path(folder) / f"kubeflow.org_{KUBEFLOW[kind][0]}.yaml"
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return jsonschema.Draft4Validator(schema)


def _strict(schema: Any, *, name: str = "") -> Any:
    """``additionalProperties: false`` wherever the apiserver would prune (what --validate=strict reports)."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                for prop, sub in value.items():
                    _strict(sub, name=prop)
            elif key != "properties":
                _strict(value)
        if (
            "properties" in schema
            and name != "metadata"
            and not schema.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in schema
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        for item in schema:
            _strict(item)
    return schema


@functools.lru_cache(maxsize=4)
def _notebook_validator(version: str, folder: str) -> jsonschema.protocols.Validator:
    """The Notebook CRD's schema for ``version`` after ``validation_patches.yaml`` (a JSON patch)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((Path(folder) / "kubeflow.org_notebooks.yaml").read_text(), Loader=loader)
    patch = yaml.load((Path(folder) / "validation_patches.yaml").read_text(), Loader=loader)
    crd = jsonpatch.apply_patch(crd, patch)
    found = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    return jsonschema.Draft4Validator(_strict(copy.deepcopy(found["schema"]["openAPIV3Schema"])))


def _notebook_schema_problems(api_version: str, obj: dict[str, Any]) -> list[str]:
    folder = notebook_crd_dir()
    try:
        with _lock:
            validator = _notebook_validator(api_version.rpartition("/")[2], str(folder))
    except (OSError, StopIteration, KeyError, jsonpatch.JsonPatchException) as exc:
        return [f"<schema>: cannot load the patched Notebook CRD from {folder}: {exc}"]
    return _schema_messages(validator.iter_errors(obj))


@functools.lru_cache(maxsize=2)
def _kserve_validator(folder: str) -> jsonschema.protocols.Validator:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load((Path(folder) / "serving.kserve.io_inferenceservices.yaml").read_text(), Loader=loader)
    found = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    return jsonschema.Draft4Validator(_strict(copy.deepcopy(found["schema"]["openAPIV3Schema"])))


def _kserve_schema_problems(obj: dict[str, Any]) -> list[str]:
    folder = kserve_crd_dir()
    try:
        with _lock:
            validator = _kserve_validator(str(folder))
    except (OSError, StopIteration, KeyError) as exc:
        return [f"<schema>: cannot load the InferenceService CRD from {folder}: {exc}"]
    return _schema_messages(validator.iter_errors(obj))


def _kserve_problems(obj: dict[str, Any]) -> list[str]:
    """KServe's validating webhook (pkg/apis/serving/v1beta1/inference_service_validation.go) and
    the pod rules on the predictor, as the controller builds the predictor's pod from it."""
    spec = _dict(obj.get("spec"))
    predictor = _dict(spec.get("predictor"))
    problems: list[str] = []
    found = [name for name in KSERVE_FRAMEWORKS if name in predictor]
    containers = predictor.get("containers") or []
    if len(found) + (1 if containers and not found else 0) != 1 or (found and len(containers) > 1):
        problems.append(
            "spec.predictor: Invalid value: exactly one of [model, a framework field, containers] must "
            f"be specified (found {found + (['containers'] if containers else [])})"
        )
    pod_containers: list[dict[str, Any]] = []
    for name in found:
        model = dict(_dict(predictor.get(name)))
        model.setdefault("name", "kserve-container")
        uri = model.get("storageUri")
        if uri is not None and not (isinstance(uri, str) and uri.startswith(KSERVE_STORAGE_PREFIXES)):
            problems.append(
                f"spec.predictor.{name}.storageUri: Invalid value: {uri!r}: storage URI format is invalid "
                f"(supported: {', '.join(KSERVE_STORAGE_PREFIXES)})"
            )
        if name == "model" and not _dict(model.get("modelFormat")).get("name"):
            # ModelSpec.ModelFormat has no omitempty: KServe picks the serving runtime by it.
            problems.append(
                "spec.predictor.model.modelFormat: Required value: the model's format names its runtime"
            )
        pod_containers.append(model)
    pod_containers += [_dict(c) for c in containers]
    low, high = predictor.get("minReplicas"), predictor.get("maxReplicas")
    if isinstance(low, int) and low < 0:
        problems.append(
            f"spec.predictor.minReplicas: Invalid value: {low}: MinReplicas cannot be less than 0"
        )
    if isinstance(low, int) and isinstance(high, int) and high and low > high:
        problems.append(
            f"spec.predictor.maxReplicas: Invalid value: {high}: MinReplicas cannot be greater than MaxReplicas"
        )
    if pod_containers:
        pod = {"containers": pod_containers, "volumes": predictor.get("volumes") or []}
        problems += _pod_spec_problems(pod, "spec.predictor")
    return problems


def _crd_schema_problems(kind: str, obj: dict[str, Any]) -> list[str]:
    folder = crd_dir()
    try:
        with _lock:
            validator = _crd_validator(kind, str(folder))
    except (OSError, StopIteration, KeyError) as exc:
        return [f"<schema>: cannot load the {kind} CRD from {folder}: {exc}"]
    return _schema_messages(validator.iter_errors(obj))


def _schema_messages(errors: Iterable[jsonschema.ValidationError]) -> list[str]:
    out = []
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        out.append(f"{_path(error.absolute_path)}: {error.message}")
    return out


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


# -- apiserver rules ----------------------------------------------------------------------------


def _metadata_problems(
    obj: dict[str, Any], *, name_rule: str, max_len: int = 253, path: str = "metadata"
) -> list[str]:
    meta = _dict(obj.get("metadata"))
    problems: list[str] = []
    name = meta.get("name")
    if path == "metadata" and not name and not meta.get("generateName"):
        problems.append("metadata.name: Required value: name or generateName is required")
    if isinstance(name, str) and name:
        if name_rule == "dns1035":
            if not DNS1035_LABEL.match(name) or len(name) > 63:
                problems.append(
                    f"{path}.name: Invalid value: {name!r}: a DNS-1035 label must consist of lower case "
                    "alphanumeric characters or '-', start with an alphabetic character, end with an "
                    "alphanumeric character, and be at most 63 characters"
                )
        elif not DNS1123_SUBDOMAIN.match(name) or len(name) > max_len:
            problems.append(
                f"{path}.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of lower "
                "case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                f"character (at most {max_len} characters)"
            )
    namespace = meta.get("namespace")
    if (
        isinstance(namespace, str)
        and namespace
        and (not DNS1123_LABEL.match(namespace) or len(namespace) > 63)
    ):
        problems.append(f"{path}.namespace: Invalid value: {namespace!r}: must be a DNS-1123 label")
    problems += _label_problems(meta.get("labels"), f"{path}.labels")
    for key in _dict(meta.get("annotations")):
        if not _qualified_key_ok(key):
            problems.append(f"{path}.annotations: Invalid value: {key!r}: not a qualified name")
    return problems


def _qualified_key_ok(key: Any) -> bool:
    if not isinstance(key, str) or not key:
        return False
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= 63 and bool(QUALIFIED_NAME.match(name))


def _label_problems(labels: Any, path: str) -> list[str]:
    problems = []
    for key, value in _dict(labels).items():
        if not _qualified_key_ok(key):
            problems.append(
                f"{path}: Invalid value: {key!r}: a label key must be a qualified name "
                "(optional DNS subdomain prefix and '/', then at most 63 alphanumerics, '-', '_' or '.')"
            )
        if not isinstance(value, str):
            problems.append(f"{path}[{key}]: Invalid value: {value!r}: label values must be strings")
        elif len(value) > 63 or not LABEL_VALUE.match(value):
            problems.append(
                f"{path}[{key}]: Invalid value: {value!r}: a valid label value must be 63 characters or less "
                "and consist of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
            )
    return problems


def _pod_spec_problems(spec: Any, path: str, *, restart_policies: tuple[str, ...] | None = None) -> list[str]:
    spec = _dict(spec)
    problems: list[str] = []
    policy = spec.get("restartPolicy", "Always")
    allowed = restart_policies or ("Always", "OnFailure", "Never")
    if policy not in allowed:
        problems.append(
            f"{path}.restartPolicy: Unsupported value: {policy!r}: supported values: "
            + ", ".join(f'"{p}"' for p in allowed)
        )
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        problems.append(f"{path}.containers: Required value")
    volumes: set[str] = set()
    for i, volume in enumerate(spec.get("volumes") or []):
        volume = _dict(volume)
        vname = volume.get("name")
        where = f"{path}.volumes[{i}]"
        if not isinstance(vname, str) or not DNS1123_LABEL.match(vname) or len(vname) > 63:
            problems.append(f"{where}.name: Invalid value: {vname!r}: a volume name must be a DNS-1123 label")
        elif vname in volumes:
            problems.append(f"{where}.name: Duplicate value: {vname!r}")
        volumes.add(str(vname))
        sources = [key for key in volume if key != "name"]
        if len(sources) != 1:
            problems.append(f"{where}: Invalid value: must specify exactly 1 volume type (found {sources})")
        claim = _dict(volume.get("persistentVolumeClaim"))
        if "persistentVolumeClaim" in volume and not claim.get("claimName"):
            problems.append(f"{where}.persistentVolumeClaim.claimName: Required value")
    names: set[str] = set()
    for field in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(field) or []):
            problems += _container_problems(_dict(container), f"{path}.{field}[{i}]", names, volumes)
    return problems


def _container_problems(
    container: dict[str, Any], path: str, names: set[str], volumes: set[str] | None = None
) -> list[str]:
    problems: list[str] = []
    name = container.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{path}.name: Required value")
    else:
        if not DNS1123_LABEL.match(name) or len(name) > 63:
            problems.append(
                f"{path}.name: Invalid value: {name!r}: a container name must be a DNS-1123 label"
            )
        if name in names:
            problems.append(f"{path}.name: Duplicate value: {name!r}")
        names.add(name)
    if not container.get("image"):
        problems.append(f"{path}.image: Required value")
    policy = container.get("imagePullPolicy")
    if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
        problems.append(
            f'{path}.imagePullPolicy: Unsupported value: {policy!r}: supported values: "Always", "IfNotPresent", "Never"'
        )
    env_names: set[str] = set()
    for i, env in enumerate(container.get("env") or []):
        env_name = _dict(env).get("name")
        if not isinstance(env_name, str) or not ENV_NAME.match(env_name):
            problems.append(f"{path}.env[{i}].name: Invalid value: {env_name!r}: a valid environment variable name "
                            "must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit")  # fmt: skip
        env_names.add(str(env_name))
        problems += _env_source_problems(_dict(env), f"{path}.env[{i}]")
    mounts: set[str] = set()
    for i, mount in enumerate(container.get("volumeMounts") or []):
        mount = _dict(mount)
        where = f"{path}.volumeMounts[{i}]"
        if volumes is not None and mount.get("name") not in volumes:
            problems.append(f"{where}.name: Not found: {mount.get('name')!r}")
        mount_path = mount.get("mountPath")
        if not isinstance(mount_path, str) or not mount_path:
            problems.append(f"{where}.mountPath: Required value")
        elif ":" in mount_path:
            problems.append(f"{where}.mountPath: Invalid value: {mount_path!r}: must not contain ':'")
        elif mount_path in mounts:
            problems.append(f"{where}.mountPath: Invalid value: {mount_path!r}: must be unique")
        mounts.add(str(mount_path))
    if container.get("workingDir") is not None and not str(container["workingDir"]):
        problems.append(f"{path}.workingDir: Invalid value: must not be empty when set")
    for probe_field in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe_field in container:
            problems += _probe_problems(_dict(container[probe_field]), f"{path}.{probe_field}")
    ports_seen: set[Any] = set()
    for i, port in enumerate(container.get("ports") or []):
        port = _dict(port)
        number = port.get("containerPort")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            problems.append(
                f"{path}.ports[{i}].containerPort: Invalid value: {number!r}: must be between 1 and 65535"
            )
        pname = port.get("name")
        if pname is not None and (
            not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", str(pname)) or len(pname) > 15
        ):
            problems.append(
                f"{path}.ports[{i}].name: Invalid value: {pname!r}: must be an IANA_SVC_NAME (at most 15 characters)"
            )
        if pname is not None and pname in ports_seen:
            problems.append(f"{path}.ports[{i}].name: Duplicate value: {pname!r}")
        ports_seen.add(pname)
    problems += _resource_problems(_dict(container.get("resources")), f"{path}.resources")
    return problems


def _env_source_problems(env: dict[str, Any], path: str) -> list[str]:
    """``value`` or ``valueFrom`` with exactly one source; key references name a valid key."""
    if "valueFrom" not in env:
        return []
    problems: list[str] = []
    if env.get("value"):
        problems.append(f"{path}.valueFrom: Invalid value: may not be specified when `value` is not empty")
    source = _dict(env.get("valueFrom"))
    kinds = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef") if k in source]
    if len(kinds) != 1:
        problems.append(
            f"{path}.valueFrom: Invalid value: may not have more than one field specified at a time"
        )
    for ref in ("configMapKeyRef", "secretKeyRef"):
        if ref not in source:
            continue
        key_ref = _dict(source[ref])
        if not key_ref.get("name"):
            problems.append(f"{path}.valueFrom.{ref}.name: Required value")
        key = key_ref.get("key")
        if not isinstance(key, str) or not re.match(r"^[-._a-zA-Z0-9]+$", key) or len(key) > 253:
            problems.append(f"{path}.valueFrom.{ref}.key: Invalid value: {key!r}: a valid config key must "
                            "consist of alphanumeric characters, '-', '_' or '.'")  # fmt: skip
    return problems


def _probe_problems(probe: dict[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    handlers = [k for k in ("exec", "httpGet", "tcpSocket", "grpc") if k in probe]
    if len(handlers) != 1:
        problems.append(f"{path}: Required value: must specify exactly 1 handler type (found {handlers})")
    for handler in ("httpGet", "tcpSocket"):
        port = _dict(probe.get(handler)).get("port")
        if handler in probe and not _port_ok(port):
            problems.append(
                f"{path}.{handler}.port: Invalid value: {port!r}: a port number or an IANA_SVC_NAME"
            )
    for field in ("periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold"):
        value = probe.get(field)
        if isinstance(value, int) and value < 1:
            problems.append(f"{path}.{field}: Invalid value: {value}: must be greater than or equal to 1")
    success = probe.get("successThreshold")
    if success is not None and success != 1 and path.endswith(("livenessProbe", "startupProbe")):
        problems.append(f"{path}.successThreshold: Invalid value: must be 1")
    return problems


def _port_ok(port: Any) -> bool:
    """A port number 1-65535 or an IANA service name (at most 15, a letter somewhere, no '--')."""
    if isinstance(port, bool):
        return False
    if isinstance(port, int):
        return 1 <= port <= 65535
    return (
        isinstance(port, str)
        and 0 < len(port) <= 15
        and bool(re.match(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", port))
        and bool(re.search(r"[a-z]", port))
        and "--" not in port
    )


def _resource_problems(resources: dict[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    parsed: dict[str, dict[str, float]] = {"requests": {}, "limits": {}}
    for section in ("requests", "limits"):
        for name, value in _dict(resources.get(section)).items():
            where = f"{path}.{section}[{name}]"
            if not _qualified_key_ok(name):
                problems.append(
                    f"{where}: Invalid value: {name!r}: must be a standard resource type or fully qualified"
                )
                continue
            if "/" not in name and name not in STANDARD_RESOURCES and not name.startswith("hugepages-"):
                problems.append(
                    f"{where}: Invalid value: {name!r}: must be a standard resource type or fully qualified"
                )
            number = parse_quantity(value)
            if number is None:
                problems.append(
                    f"{where}: Invalid value: {value!r}: quantities must match the regular expression "
                    "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (e.g. 512Mi, 0.5, 500m)"
                )
                continue
            if number < 0:
                problems.append(f"{where}: Invalid value: {value!r}: must be greater than or equal to 0")
            if "/" in name and not name.startswith("kubernetes.io/") and number != int(number):
                problems.append(f"{where}: Invalid value: {value!r}: must be an integer")
            parsed[section][name] = number
    requests, limits = parsed["requests"], parsed["limits"]
    for name, number in requests.items():
        extended = "/" in name and not name.startswith(("kubernetes.io/", "requests."))
        if extended and name not in limits:
            problems.append(
                f"{path}.limits[{name}]: Required value: Limit must be set for non overcommitable resources"
            )
        elif extended and limits[name] != number:
            problems.append(f"{path}.requests[{name}]: Invalid value: must be equal to {name} limit")
        elif name in limits and number > limits[name]:
            problems.append(
                f"{path}.requests[{name}]: Invalid value: must be less than or equal to {name} limit"
            )
    return problems


def _job_problems(spec: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    template = _dict(spec.get("template"))
    if not template:
        return ["spec.template: Required value"]
    problems += _metadata_problems(template, name_rule="dns1123", path="spec.template.metadata")
    pod = _dict(template.get("spec"))
    if "restartPolicy" not in pod:
        problems.append(
            'spec.template.spec.restartPolicy: Required value: supported values: "OnFailure", "Never"'
        )
    else:
        problems += _pod_spec_problems(pod, "spec.template.spec", restart_policies=("OnFailure", "Never"))
    if "restartPolicy" not in pod:
        problems += _pod_spec_problems({**pod, "restartPolicy": "Never"}, "spec.template.spec")
    for field in (
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ):
        value = spec.get(field)
        if isinstance(value, int) and value < 0:
            problems.append(f"spec.{field}: Invalid value: {value}: must be greater than or equal to 0")
    if spec.get("completionMode", "NonIndexed") not in ("NonIndexed", "Indexed"):
        problems.append(f"spec.completionMode: Unsupported value: {spec.get('completionMode')!r}")
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        problems.append("spec.completions: Required value: when completion mode is Indexed")
    return problems


def _replicated_problems(spec: dict[str, Any], kind: str) -> list[str]:
    """A StatefulSet's or Deployment's template, selector and replicas."""
    problems: list[str] = []
    template = _dict(spec.get("template"))
    if not template:
        return ["spec.template: Required value"]
    problems += _metadata_problems(template, name_rule="dns1123", path="spec.template.metadata")
    labels = _dict(_dict(template.get("metadata")).get("labels"))
    selector = _dict(spec.get("selector"))
    match = _dict(selector.get("matchLabels"))
    if not match and not selector.get("matchExpressions"):
        problems.append(f"spec.selector: Invalid value: empty selector is invalid for {kind}")
    problems += _label_problems(match, "spec.selector.matchLabels")
    if any(labels.get(k) != v for k, v in match.items()):
        problems.append(
            "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`"
        )
    problems += _pod_spec_problems(template.get("spec"), "spec.template.spec", restart_policies=("Always",))
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        problems.append(f"spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0")
    return problems


def _statefulset_problems(spec: dict[str, Any]) -> list[str]:
    if not _dict(spec.get("template")):
        return ["spec.template: Required value"]
    problems = _replicated_problems(spec, "statefulset")
    policy = spec.get("podManagementPolicy", "OrderedReady")
    if policy not in ("OrderedReady", "Parallel"):
        problems.append(f"spec.podManagementPolicy: Unsupported value: {policy!r}")
    service = spec.get("serviceName")
    if isinstance(service, str) and service and not DNS1123_LABEL.match(service):
        problems.append(f"spec.serviceName: Invalid value: {service!r}: must be a DNS-1123 label")
    return problems


def _deployment_problems(spec: dict[str, Any]) -> list[str]:
    return _replicated_problems(spec, "deployment")


def _secret_problems(obj: dict[str, Any]) -> list[str]:
    import base64
    import binascii

    problems: list[str] = []
    size = 0
    for key, value in _dict(obj.get("data")).items():
        if not re.match(r"^[-._a-zA-Z0-9]+$", key) or len(key) > 253:
            problems.append(
                f"data[{key}]: Invalid value: a valid config key must consist of alphanumerics, '-', '_' or '.'"
            )
            continue
        try:
            size += len(base64.b64decode(str(value), validate=True))
        except (binascii.Error, ValueError):
            problems.append(f"data[{key}]: Invalid value: not base64-encoded data")
    for key, value in _dict(obj.get("stringData")).items():
        if not re.match(r"^[-._a-zA-Z0-9]+$", key) or len(key) > 253:
            problems.append(
                f"stringData[{key}]: Invalid value: a valid config key must consist of alphanumerics, '-', '_' or '.'"
            )
        size += len(str(value).encode())
    if size > 1024 * 1024:
        problems.append("data: Too long: may not be more than 1048576 bytes")
    return problems


def _claim_problems(spec: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    modes = spec.get("accessModes")
    allowed = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
    if not isinstance(modes, list) or not modes:
        problems.append("spec.accessModes: Required value: at least 1 access mode is required")
    for mode in modes or []:
        if mode not in allowed:
            problems.append(f"spec.accessModes: Unsupported value: {mode!r}")
    storage = _dict(_dict(spec.get("resources")).get("requests")).get("storage")
    if storage is None:
        problems.append("spec.resources[storage]: Required value")
    else:
        number = parse_quantity(storage)
        if number is None or number <= 0:
            problems.append(f"spec.resources[storage]: Invalid value: {storage!r}: must be greater than zero")
    problems += _resource_problems(_dict(spec.get("resources")), "spec.resources")
    name = spec.get("storageClassName")
    if isinstance(name, str) and name and not DNS1123_SUBDOMAIN.match(name):
        problems.append(f"spec.storageClassName: Invalid value: {name!r}: must be a DNS-1123 subdomain")
    return problems


def _service_problems(spec: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    ports = spec.get("ports") or []
    headless = spec.get("clusterIP") == "None"
    stype = spec.get("type", "ClusterIP")
    if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        problems.append(f"spec.type: Unsupported value: {stype!r}")
    if not ports and not headless and stype != "ExternalName":
        problems.append("spec.ports: Required value")
    seen: set[Any] = set()
    for i, port in enumerate(ports):
        port = _dict(port)
        number = port.get("port")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            problems.append(f"spec.ports[{i}].port: Invalid value: {number!r}: must be between 1 and 65535")
        pname = port.get("name")
        if len(ports) > 1 and not pname:
            problems.append(f"spec.ports[{i}].name: Required value")
        if pname in seen and pname:
            problems.append(f"spec.ports[{i}].name: Duplicate value: {pname!r}")
        seen.add(pname)
        if port.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
            problems.append(f"spec.ports[{i}].protocol: Unsupported value: {port.get('protocol')!r}")
        if "targetPort" in port and not _port_ok(port["targetPort"]):
            problems.append(f"spec.ports[{i}].targetPort: Invalid value: {port['targetPort']!r}")
    problems += _label_problems(spec.get("selector"), "spec.selector")
    return problems


def _kubeflow_pod_problems(kind: str, obj: dict[str, Any]) -> list[str]:
    field = KUBEFLOW[kind][1]
    problems: list[str] = []
    for role, rspec in _dict(_dict(obj.get("spec")).get(field)).items():
        template = _dict(_dict(rspec).get("template"))
        path = f"spec.{field}.{role}.template"
        problems += _metadata_problems(template, name_rule="dns1123", path=f"{path}.metadata")
        pod = _dict(template.get("spec"))
        if pod.get("containers"):
            found = _pod_spec_problems(pod, f"{path}.spec")
            # image / container-list messages are already the webhook's; keep the rest
            problems += [p for p in found if not p.endswith(".image: Required value")]
        policy = _dict(rspec).get("restartPolicy")
        if policy is not None and policy not in ("Always", "OnFailure", "Never", "ExitCode"):
            problems.append(
                f"spec.{field}.{role}.restartPolicy: Unsupported value: {policy!r}: "
                'supported values: "Always", "OnFailure", "Never", "ExitCode"'
            )
    return problems


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_dict(obj: Any) -> Any:
    if hasattr(obj, "to_dict") and not isinstance(obj, dict):
        from kubernetes.client import ApiClient

        return ApiClient().sanitize_for_serialization(obj)
    return obj
