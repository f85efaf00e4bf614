"""The YARN Service of one attempt, built from its launch plan: pure functions, plain dicts.

One service per attempt, named ``sb-<uid>`` (YARN's rule: lower-case letters, digits and dashes,
starting with a letter, at most 63 with registry DNS). One component per role (``worker``,
``ps``, ``master``...), ``number_of_containers`` = the role's replicas, so component instance
``worker-1`` is replica ``worker-1`` of the plan, and registry DNS names it
``worker-1.sb-<uid>.<user>.<domain>`` (:func:`replica_host`).

Per-replica environment. A component has one environment for all its containers, but the
plan's differs per replica (``RANK``, ``TF_CONFIG``'s task index, ``SUBMARINE_REPLICA_INDEX``).
YARN substitutes the token ``${COMPONENT_ID}`` with the component instance's index in a
component's ``configuration.env`` values and its ``launch_command`` before the container starts,
so a value that differs only by the index is written once with the token (the Kubernetes
adapter's ``$(JOB_COMPLETION_INDEX)`` in YARN's words). Values that differ otherwise (PyTorch
worker ``i`` has ``RANK`` ``i+1``) are exported by a ``case ${COMPONENT_ID} in ...`` prefix of
the launch command. The templating is :mod:`clusters.per_index`'s, which Kubernetes shares.

Quoting. The NodeManager writes each env entry into the container's launch script as
``export K="V"`` and runs the command as ``exec /bin/bash -c "<launch_command> 1>stdout.txt
2>stderr.txt"`` (Hadoop's ``ContainerLaunch.UnixShellScriptBuilder``), without escaping. So every
literal value and the whole command are escaped for a double-quoted bash string (:func:`dq`):
what the process sees is exactly the plan's text. (A literal ``${SERVICE_NAME}``-style YARN token
in a user's command is still substituted by YARN: that cannot be escaped.)

Batch semantics: components get ``restart_policy: NEVER`` (or ``ON_FAILURE``), so the service
reaches ``SUCCEEDED`` once every container exited 0 and ``FAILED`` when one failed. The JSON key
is ``restart_policy`` as in Hadoop's ``Component`` record (``@JsonProperty("restart_policy")``);
the swagger file spells it ``restartPolicy``, which the server would not read.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from typing import Any

from clusters.per_index import case_arms, index_template, role_values
from clusters.yarn.config import YarnClusterConfig
from runtimes.environment import EnvironmentPlan
from runtimes.plan import LaunchPlan, ReplicaPlan, Resources, replicas_by_role

SERVICE_PREFIX = "sb-"
SERVICE_VERSION = "1"
#: YARN's token for a component instance's index (``ServiceApiConstants.COMPONENT_ID``).
INDEX_TOKEN = "${COMPONENT_ID}"
GPU_RESOURCE = "yarn.io/gpu"
DOCKER_NETWORK_ENV = "YARN_CONTAINER_RUNTIME_DOCKER_CONTAINER_NETWORK"
#: ``ServiceApiUtil``'s name rule; 63 is the DNS label limit with registry DNS on.
NAME_RULE = re.compile(r"^[a-z][a-z0-9-]*$")
MAX_NAME = 63
DESCRIPTION_PREFIX = "submarine-broker origin="


class ServiceSpecError(ValueError):
    """The plan cannot be expressed as a YARN Service (the message says why)."""


# -- names -------------------------------------------------------------------------------------


def _name_part(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def service_name(uid: str) -> str:
    """``sb-<uid>``: the attempt's service (lower-case, at most 63, a valid DNS label)."""
    part = _name_part(uid)
    if not part:
        raise ServiceSpecError(f"attempt uid {uid!r} has no letters or digits to name a service after")
    return f"{SERVICE_PREFIX}{part}"[:MAX_NAME].rstrip("-")


def uid_of(name: str) -> str | None:
    """The uid a service name was made from, when it is one of ours and reads back exactly."""
    if not name.startswith(SERVICE_PREFIX):
        return None
    uid = name[len(SERVICE_PREFIX) :]
    return uid if uid and service_name(uid) == name else None


def component_name(role: str) -> str:
    """The component of a role: ``Worker`` → ``worker``."""
    part = _name_part(role)
    if not part or not part[0].isalpha():
        part = f"r-{part}".strip("-")
    return part[:MAX_NAME].rstrip("-")


def replica_host(uid: str, role: str, index: int, user: str, domain: str | None) -> str:
    """The registry DNS name of a replica: ``<component>-<index>.<service>.<user>.<domain>``."""
    parts = [f"{component_name(role)}-{index}", service_name(uid), _name_part(user) or user.lower()]
    if domain:
        parts.append(domain)
    return ".".join(parts)


def description(origin: str) -> str:
    """The service description; YARN makes it the application tag ``description: <text>``."""
    return f"{DESCRIPTION_PREFIX}{origin}"


# -- quoting and the per-index environment ------------------------------------------------------


def dq(text: str) -> str:
    """``text`` escaped for a double-quoted bash string (``\\``, ``"``, ``$``, backquote)."""
    return re.sub(r'([\\"$`])', r"\\\1", text)


def component_environment(group: Sequence[ReplicaPlan]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The component's ``configuration.env`` and the values only a shell can select per index."""
    try:
        per_replica = role_values(group)
    except ValueError as exc:
        raise ServiceSpecError(str(exc)) from None
    env: dict[str, str] = {}
    by_index: dict[str, list[str]] = {}
    for name, values in per_replica.items():
        template = index_template(values, INDEX_TOKEN, dq)
        if template is not None:
            env[name] = template
        else:
            by_index[name] = values
    return env, by_index


def launch_command(argv: Sequence[str], by_index: dict[str, list[str]]) -> str:
    """The component's launch command: ``exec argv``, after a ``case`` on the index if needed."""
    run = dq("exec " + shlex.join(argv))
    if not by_index:
        return run
    return "case " + INDEX_TOKEN + dq(f" in {' '.join(case_arms(by_index))} esac; ") + run


# -- resources and artifacts -------------------------------------------------------------------


def resource(res: Resources) -> dict[str, Any]:
    """Whole vcores (rounded up, at least 1), memory in MiB as a string, GPUs as ``yarn.io/gpu``."""
    out: dict[str, Any] = {
        "cpus": max(1, math.ceil(res.cpu - 1e-9)),
        "memory": str(max(1, math.ceil(res.memory / 2**20))),
    }
    if res.gpu:
        out["additional"] = {GPU_RESOURCE: {"value": int(res.gpu), "unit": ""}}
    return out


def artifact(plan: LaunchPlan, config: YarnClusterConfig) -> dict[str, str] | None:
    """A DOCKER image, a TARBALL, or None (the bare command on the NodeManager host)."""
    if config.artifact == "tarball":
        return {"id": str(config.tarball), "type": "TARBALL"}
    if config.artifact == "none":
        return None
    image = plan.run_image or config.image
    if not image:
        raise ServiceSpecError(
            "the experiment names no image (environment.image or a task image) and the cluster has "
            "no default image"
        )
    return {"id": image, "type": "DOCKER"}


# -- the service -------------------------------------------------------------------------------


def by_role(plan: LaunchPlan) -> dict[str, list[ReplicaPlan]]:
    """Replicas per role (plan order, see :func:`replicas_by_role`), each a valid YARN component."""
    try:
        roles = replicas_by_role(plan)
    except ValueError as exc:
        raise ServiceSpecError(str(exc)) from None
    seen: dict[str, str] = {}
    for role, group in roles.items():
        name = component_name(role)
        if name in seen:
            raise ServiceSpecError(f"roles {seen[name]} and {role} would both be component {name}")
        seen[name] = role
        if len(f"{name}-{len(group) - 1}") > MAX_NAME:
            raise ServiceSpecError(f"role {role}: component instance names would exceed {MAX_NAME}")
    return roles


def build_service(plan: LaunchPlan, config: YarnClusterConfig) -> dict[str, Any]:
    """The ``POST /app/v1/services`` body of the plan."""
    if len(plan.replicas) > 1 and any(r.port for r in plan.replicas) and not config.dns_domain:
        raise ServiceSpecError(
            "replicas of this plan must reach each other, but the cluster has no dns_domain "
            "(YARN registry DNS)"
        )
    art = artifact(plan, config)
    components = []
    for role, group in by_role(plan).items():
        env, by_index = component_environment(group)
        if config.docker_network and config.artifact == "docker":
            env[DOCKER_NETWORK_ENV] = dq(config.docker_network)
        component: dict[str, Any] = {
            "name": component_name(role),
            "number_of_containers": len(group),
            "launch_command": launch_command(group[0].argv, by_index),
            "resource": resource(group[0].resources),
            "restart_policy": config.restart_policy,
            "configuration": {"env": env},
        }
        if art is not None:
            component["artifact"] = dict(art)
        components.append(component)
    service: dict[str, Any] = {
        "name": service_name(plan.uid),
        "version": SERVICE_VERSION,
        "description": description(config.origin_mark),
        "queue": config.queue,
        "components": components,
    }
    if config.lifetime:
        service["lifetime"] = config.lifetime
    if art is not None and art["type"] == "DOCKER" and plan.registry_auth and config.docker_client_config:
        service["docker_client_config"] = config.docker_client_config
    return service


def environment_problem(env: EnvironmentPlan, config: YarnClusterConfig) -> str | None:
    """Why ``env`` cannot run here: YARN installs nothing, so dependencies must be in the image."""
    if not env.installs or config.images_have_dependencies:
        return None
    what = " and ".join(k for k, v in (("pip", env.pip), ("conda", env.conda)) if v)
    return (
        f"cluster '{config.name}' (yarn) installs no {what} dependencies; use an image that has "
        "them, and images_have_dependencies: true in the cluster's config"
    )
