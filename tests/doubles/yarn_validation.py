"""Validate YARN Service bodies against the Services API's own swagger file, the way the server reads them.

``validate_service(body) -> list[str]`` (a POST body) and ``validate_service(body, partial=True)``
(a PUT body: a partial Service, like the API doc's ``{"state": "STOPPED"}``); an empty list means
YARN would take it. Each message is ``<path>: <what is wrong>``, the path dotted from the body.

The schema is ``definitions.Service`` of ``YARN-Simplified-V1-API-Layer-For-Services.yaml`` (swagger
2.0; ``#/definitions/...`` references resolved in one draft-4 document), read as Hadoop's Java
records deserialize it:

* The state holders (``ServiceState``, ``ComponentState``, ``ContainerState``, ``PlacementType``,
  ``PlacementScope``) are Java enums on the wire: ``"state": "STOPPED"``, not an object. Each
  becomes ``{"type": "string", "enum": [...]}`` with the swagger file's values.
* Strict: every definition with ``properties`` refuses other keys (``additionalProperties: false``
  unless it declares a map), so a misspelt field is an error here instead of silently ignored.
* ``Component.restartPolicy`` is read under the JSON name ``restart_policy``: Hadoop's record says
  ``@JsonProperty("restart_policy")``, and a body with ``restartPolicy`` would leave the default
  ``ALWAYS`` in force (batch work would never end).

Rules of ``ServiceApiUtil.validateAndResolveService`` no schema encodes are added: service and
component names (``[a-z][a-z0-9-]*``, at most 63 with registry DNS), unique component names, no
``containers`` in a POST, a ``launch_command`` unless the artifact is DOCKER, whole positive
``cpus``, ``memory`` as a positive integer string (MiB), an artifact ``id``.

The folder is ``configure(dir)``, else ``$YARN_SCHEMA_DIR``, else ``<repo>/../shared/schemas/yarn``.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_FILE = "YARN-Simplified-V1-API-Layer-For-Services.yaml"
_REPO = Path(__file__).resolve().parents[2]
_DEFAULT_DIR = _REPO.parent / "shared" / "schemas" / "yarn"
_dir: Path | None = None

NAME_RULE = re.compile(r"^[a-z][a-z0-9-]*$")
MAX_NAME = 63
#: JSON names Hadoop's records use where the swagger file spells a property otherwise.
JSON_NAMES = {("Component", "restartPolicy"): "restart_policy"}


def configure(schema_dir: str | os.PathLike[str] | None) -> None:
    """Read the swagger file from ``schema_dir``."""
    global _dir
    _dir = Path(schema_dir) if schema_dir is not None else None


def schema_path() -> Path:
    folder = _dir or Path(os.environ.get("YARN_SCHEMA_DIR") or _DEFAULT_DIR)
    return folder / SCHEMA_FILE


@functools.lru_cache(maxsize=4)
def _swagger(path: str) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def swagger() -> dict[str, Any]:
    """The swagger document as written."""
    return _swagger(str(schema_path()))


def _enum_holder(definition: dict[str, Any]) -> list[str] | None:
    """The values of a definition that is one enum property (a Java enum on the wire), else None."""
    props = definition.get("properties") or {}
    if len(props) != 1 or "type" in definition:
        return None
    (only,) = props.values()
    values = only.get("enum") if isinstance(only, dict) else None
    return list(values) if values else None


def enums() -> dict[str, list[str]]:
    """Every enum-holder definition's values: ``{"ServiceState": [...], "ComponentState": [...], ...}``."""
    out = {}
    for name, definition in (swagger().get("definitions") or {}).items():
        values = _enum_holder(definition)
        if values:
            out[name] = values
    return out


def _strict(definitions: dict[str, Any]) -> dict[str, Any]:
    defs = copy.deepcopy(definitions)
    for name, definition in defs.items():
        values = _enum_holder(definition)
        if values:
            defs[name] = {"type": "string", "enum": values, "description": definition.get("description", "")}
            continue
        props = definition.get("properties")
        for (owner, spelled), json_name in JSON_NAMES.items():
            if owner == name and props and spelled in props:
                props[json_name] = props.pop(spelled)
        if props and "additionalProperties" not in definition:
            definition["additionalProperties"] = False
            definition.setdefault("type", "object")
    return defs


@functools.lru_cache(maxsize=8)
def _validator(path: str, partial: bool) -> jsonschema.Draft4Validator:
    defs = _strict(_swagger(path)["definitions"])
    if partial:
        defs["Service"] = {k: v for k, v in defs["Service"].items() if k != "required"}
    schema = {"definitions": defs, "$ref": "#/definitions/Service"}
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def _where(error: jsonschema.ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<body>"


def validate_service(body: Any, *, partial: bool = False) -> list[str]:
    """Every reason the Services API would refuse ``body`` (a POST Service, or a PUT's partial one)."""
    if not isinstance(body, dict):
        return [f"<body>: a Service must be a JSON object, not {type(body).__name__}"]
    validator = _validator(str(schema_path()), partial)
    problems = [f"{_where(e)}: {e.message}" for e in sorted(validator.iter_errors(body), key=str)]
    if problems:
        return problems
    return problems + _rules(body, partial)


def _name_problems(value: Any, where: str, what: str) -> list[str]:
    if not isinstance(value, str) or not value:
        return [f"{where}: {what} name can not be empty"]
    if "_" in value:
        return [f"{where}: Invalid format: {value}, can not use '_', as DNS hostname does not allow '_'"]
    if not NAME_RULE.match(value):
        return [
            f"{where}: Invalid {what} name {value!r}: it must start with a letter and hold only "
            "lower-case letters, digits and '-'"
        ]
    if len(value) > MAX_NAME:
        return [f"{where}: Invalid format {value}, must be no more than {MAX_NAME} characters"]
    return []


def _rules(body: dict[str, Any], partial: bool) -> list[str]:
    problems: list[str] = []
    if not partial or "name" in body:
        problems += _name_problems(body.get("name"), "name", "service")
    service_artifact = body.get("artifact") or {}
    names: set[str] = set()
    for i, component in enumerate(body.get("components") or []):
        where = f"components[{i}]"
        name = component.get("name")
        problems += _name_problems(name, f"{where}.name", "component")
        if name in names:
            problems.append(f"{where}.name: Component name {name} must be unique")
        names.add(name)
        count = component.get("number_of_containers")
        if partial:
            continue
        if component.get("containers"):
            problems.append(f"{where}.containers: may not be given when a service is created")
        if isinstance(count, int) and count < 0:
            problems.append(f"{where}.number_of_containers: Invalid number of containers {count}")
        if isinstance(name, str) and isinstance(count, int) and len(f"{name}-{max(count - 1, 0)}") > MAX_NAME:
            problems.append(f"{where}.name: component instance names would exceed {MAX_NAME} characters")
        artifact = component.get("artifact") or service_artifact
        if str(artifact.get("type", "DOCKER")) != "DOCKER" and not component.get("launch_command"):
            problems.append(f"{where}.launch_command: required for a component whose artifact is not DOCKER")
        if artifact and not artifact.get("id"):
            problems.append(f"{where}.artifact.id: Artifact id can not be empty")
        resource = component.get("resource") or body.get("resource")
        if not resource:
            problems.append(f"{where}.resource: Resource of component {name} is not specified")
            continue
        if "profile" in resource and ("cpus" in resource or "memory" in resource):
            problems.append(f"{where}.resource: give a profile or cpus and memory, not both")
        cpus = resource.get("cpus")
        if "profile" not in resource and (not isinstance(cpus, int) or cpus <= 0):
            problems.append(f"{where}.resource.cpus: Invalid no of cpus {cpus!r}: a whole number above 0")
        memory = resource.get("memory")
        if "profile" not in resource and (
            not isinstance(memory, str) or not re.fullmatch(r"[1-9]\d*", memory)
        ):
            problems.append(
                f"{where}.resource.memory: Invalid memory {memory!r}: a whole number of MiB as a string"
            )
    return problems
