"""The submit form's fields and an ExperimentSpec document, both ways: :func:`document_of` turns
what the form posted into the document the experiment service validates (the service alone says
what is wrong, naming the spec field); :func:`values_of` fills the form from a spec (a clone).

Field names of the form: ``name``, ``namespace``, ``framework``, ``cmd``, ``env`` (``KEY=VALUE``
lines), ``tags`` (comma-separated), ``environment`` (a registered environment's name), ``image``,
``cluster``, ``selector`` (``key=value`` comma-separated), ``preferred`` (comma-separated), and
per role ``<Role>.replicas`` / ``<Role>.resources`` (a role with no replicas is left out).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtimes.spec import FRAMEWORK_ROLES

#: Every role any framework takes, in Submarine's order.
ROLES: tuple[str, ...] = tuple(dict.fromkeys(r for roles in FRAMEWORK_ROLES.values() for r in roles))
FRAMEWORKS: tuple[str, ...] = tuple(FRAMEWORK_ROLES)
#: Which form field shows a problem with a spec field (the rest show at the top only).
FIELD_OF = {
    "meta.name": "name",
    "meta.namespace": "namespace",
    "meta.framework": "framework",
    "meta.cmd": "cmd",
    "meta.envVars": "env",
    "meta.tags": "tags",
    "environment.name": "environment",
    "environment.image": "image",
    "meta.placement.cluster": "cluster",
    "meta.placement.clusterSelector": "selector",
    "meta.placement.preferredClusters": "preferred",
    "spec": "roles",
}


def _split(text: str, sep: str = ",") -> list[str]:
    return [part.strip() for part in text.split(sep) if part.strip()]


def _pairs(text: str, sep: str) -> dict[str, str]:
    """``a=1,b=2`` (or one per line) as a mapping; an entry without ``=`` keeps an empty value, so
    the service names it rather than the form dropping it."""
    found: dict[str, str] = {}
    for part in _split(text, sep):
        key, _, value = part.partition("=")
        found[key.strip()] = value.strip()
    return found


def _replicas(raw: str) -> int | str:
    text = raw.strip()
    return int(text) if text.isdigit() else text


def document_of(form: Mapping[str, str]) -> dict[str, Any]:
    """The ExperimentSpec document of a posted form (not validated: the service does that)."""
    meta: dict[str, Any] = {"name": form.get("name", ""), "framework": form.get("framework", "")}
    if form.get("namespace", "").strip():
        meta["namespace"] = form["namespace"].strip()
    if form.get("cmd", "").strip():
        meta["cmd"] = form["cmd"].strip()
    if form.get("env", "").strip():
        meta["envVars"] = _pairs(form["env"], "\n")
    if form.get("tags", "").strip():
        meta["tags"] = _split(form["tags"])
    placement: dict[str, Any] = {}
    if form.get("cluster", "").strip():
        placement["cluster"] = form["cluster"].strip()
    if form.get("selector", "").strip():
        placement["clusterSelector"] = _pairs(form["selector"], ",")
    if form.get("preferred", "").strip():
        placement["preferredClusters"] = _split(form["preferred"])
    if placement:
        meta["placement"] = placement
    environment: dict[str, Any] = {}
    if form.get("environment", "").strip():
        environment["name"] = form["environment"].strip()
    if form.get("image", "").strip():
        environment["image"] = form["image"].strip()
    roles: dict[str, Any] = {}
    for role in ROLES:
        replicas = form.get(f"{role}.replicas", "").strip()
        if replicas in ("", "0"):
            continue
        task: dict[str, Any] = {"replicas": _replicas(replicas)}
        if form.get(f"{role}.resources", "").strip():
            task["resources"] = form[f"{role}.resources"].strip()
        roles[role] = task
    document: dict[str, Any] = {"meta": meta, "spec": roles}
    if environment:
        document["environment"] = environment
    return document


def _resources(task: Mapping[str, Any]) -> str:
    if task.get("resources"):
        return str(task["resources"])
    shown = task.get("resourceMap") or {}
    return ",".join(f"{k}={v}" for k, v in shown.items())


def values_of(spec: Mapping[str, Any]) -> dict[str, str]:
    """The form's values for a (stored or submitted) spec, to submit it again or edit it."""
    meta = spec.get("meta") or {}
    placement = meta.get("placement") or {}
    environment = spec.get("environment") or {}
    values = {
        "name": str(meta.get("name") or ""),
        "namespace": str(meta.get("namespace") or ""),
        "framework": str(meta.get("framework") or ""),
        "cmd": str(meta.get("cmd") or ""),
        "env": "\n".join(f"{k}={v}" for k, v in (meta.get("envVars") or {}).items()),
        "tags": ", ".join(meta.get("tags") or []),
        "environment": str(environment.get("name") or ""),
        "image": str(environment.get("image") or environment.get("dockerImage") or ""),
        "cluster": str(placement.get("cluster") or ""),
        "selector": ",".join(f"{k}={v}" for k, v in (placement.get("clusterSelector") or {}).items()),
        "preferred": ", ".join(placement.get("preferredClusters") or []),
    }
    for role, task in (spec.get("spec") or {}).items():
        values[f"{role}.replicas"] = str(task.get("replicas", 1))
        values[f"{role}.resources"] = _resources(task)
    return values


def field_errors(problems: list[Any]) -> dict[str, str]:
    """The form field each problem belongs to (``spec.Worker.replicas`` -> ``Worker.replicas``)."""
    found: dict[str, str] = {}
    for problem in problems:
        path = str(problem.field)
        name = FIELD_OF.get(path)
        if name is None and path.startswith("spec."):
            role, _, rest = path.removeprefix("spec.").partition(".")
            name = f"{role}.{rest.split('.')[0] or 'replicas'}" if role in ROLES else "roles"
        if name is None and path.startswith("params."):
            name = path
        if name is not None:
            found.setdefault(name, str(problem.problem))
    return found
