"""An attempt's environment and registry credentials on Kubernetes: pure functions, plain dicts.

Image: the plan's image, else its environment's ``dockerImage``, else the cluster's ``image``.

pip dependencies (``allow_installs: true``, the default) are installed by an init container
``sb-env`` that runs the pod's own image: ``<environment_python> -c <script> <dir> <requirements>``
installs them with ``pip install --target`` into a temporary folder of a ``hostPath`` volume,
``<environment_cache>/<short hash>`` on the node (``DirectoryOrCreate``), and renames it to
``site`` when done. The rename is the marker: a pod on a node where ``site`` exists installs
nothing (the per-node cache, keyed by the environment's hash), and two pods installing at once
each install into their own folder and the first rename wins (the other's folder is removed), so
no lock outlives a killed pod. Every container of the pod mounts the volume read-only at
:data:`MOUNT` and gets ``PYTHONPATH=<MOUNT>/site`` (before any ``PYTHONPATH`` of the plan). A
failed install fails the init container, so the pod never starts (``Init:Error``). conda
dependencies are refused (:func:`problem`), as are pip dependencies with ``allow_installs: false``
(clusters whose policy forbids ``hostPath`` volumes, or installs at run time).

Registries: each configured registry a plan's image comes from, with credentials, becomes one
``kubernetes.io/dockerconfigjson`` Secret ``sb-registry-<registry name>`` in the namespace
(:func:`pull_secret`), shared by every attempt (it carries the origin label, and no uid label,
so the orphan sweep leaves it alone), created at submit or replaced when its content differs
from the credentials the broker has now (kept current), and named in every pod's
``imagePullSecrets``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

from clusters.kubernetes import manifests as m
from clusters.kubernetes.config import KubernetesClusterConfig
from runtimes.environment import EnvironmentPlan
from runtimes.images import RegistryAuth, docker_config_json
from runtimes.plan import LaunchPlan

INIT_CONTAINER = "sb-env"
VOLUME = "sb-env"
#: Where the environment's folder is mounted in every container of the pod.
MOUNT = "/opt/submarine-broker/env"
SITE = "site"
LABEL_REGISTRY = "submarine-broker/registry"
DOCKER_CONFIG_TYPE = "kubernetes.io/dockerconfigjson"
DOCKER_CONFIG_KEY = ".dockerconfigjson"

#: The init container's program (``python -c``): install into a private folder, rename it into place.
INSTALL_SCRIPT = """\
import os, shutil, socket, subprocess, sys
root, requirements = sys.argv[1], sys.argv[2:]
site = os.path.join(root, "site")
if os.path.isdir(site):
    print("submarine-broker: environment already installed on this node", flush=True)
    sys.exit(0)
os.makedirs(root, exist_ok=True)
work = os.path.join(root, ".tmp-%s-%d" % (socket.gethostname(), os.getpid()))
shutil.rmtree(work, ignore_errors=True)
done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir",
                       "--disable-pip-version-check", "--target", work, *requirements])
if done.returncode:
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(done.returncode)
try:
    os.rename(work, site)
except OSError:
    shutil.rmtree(work, ignore_errors=True)  # another pod finished first: its folder serves
"""


def problem(env: EnvironmentPlan, config: KubernetesClusterConfig) -> str | None:
    """Why this cluster cannot apply ``env`` as configured, or None."""
    if env.conda:
        return (
            f"cluster '{config.name}' (kubernetes) cannot install conda dependencies; "
            "put them in the image (dockerImage) or use pip dependencies"
        )
    if env.pip and not config.allow_installs:
        return (
            f"cluster '{config.name}' does not install pip dependencies (allow_installs: false); "
            "use an image that has them"
        )
    return None


def image(plan: LaunchPlan, default: str | None) -> str | None:
    """The pods' image: the plan's, its environment's, else the cluster's default."""
    return plan.run_image or default


# -- registry credentials ----------------------------------------------------------------------


def pull_secret_name(registry: str) -> str:
    """``sb-registry-<name>``: the pull Secret of one configured registry."""
    return f"sb-registry-{m.dns_part(registry)}"[:253].rstrip("-")


def pull_secret(auth: RegistryAuth, *, origin: str, namespace: str) -> dict[str, Any]:
    """The ``kubernetes.io/dockerconfigjson`` Secret of one registry's credentials."""
    content = docker_config_json({auth.registry: auth})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": pull_secret_name(auth.registry),
            "namespace": namespace,
            "labels": {m.LABEL_ORIGIN: m.label_value(origin), LABEL_REGISTRY: m.label_value(auth.registry)},
        },
        "type": DOCKER_CONFIG_TYPE,
        "data": {DOCKER_CONFIG_KEY: base64.b64encode(content.encode()).decode()},
    }


def pull_secrets(plan: LaunchPlan, *, origin: str, namespace: str) -> list[dict[str, Any]]:
    """The pull Secrets the plan's images need (one per registry with credentials)."""
    return [
        pull_secret(auth, origin=origin, namespace=namespace)
        for _, auth in sorted(plan.registry_auth.items())
    ]


# -- pods --------------------------------------------------------------------------------------

#: What the install of one pod is doing: running, failed (exit code; ``previous``: its log is the
#: previous run's, the container waiting to restart), or neither.
RUNNING = "running"
FAILED = "failed"


def handle_state(plan: LaunchPlan) -> dict[str, Any]:
    """What a handle keeps of an environment this cluster installs (read back by the polls)."""
    env = plan.environment
    if env is None or not env.pip:
        return {}
    return {"environment": {"name": env.name, "describe": env.describe(), "hash": env.short_hash}}


def install_state(pod: Mapping[str, Any]) -> tuple[str, int | None, bool] | None:
    """``(RUNNING | FAILED, exit code, previous)`` of the pod's install container, or None."""
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if status.get("name") != INIT_CONTAINER:
            continue
        state = status.get("state") or {}
        ended = state.get("terminated")
        if isinstance(ended, Mapping) and ended.get("exitCode") not in (0, None):
            return FAILED, int(ended["exitCode"]), False
        last = (status.get("lastState") or {}).get("terminated")
        waiting = state.get("waiting")
        if (
            isinstance(waiting, Mapping)
            and isinstance(last, Mapping)
            and last.get("exitCode") not in (0, None)
        ):
            return FAILED, int(last["exitCode"]), True
        if isinstance(state.get("running"), Mapping):
            return RUNNING, None, False
    return None


def pod_specs(body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every PodSpec inside one object (a Job's, a StatefulSet's, a Notebook's, a Kubeflow job's)."""
    spec = body.get("spec") or {}
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        yield template["spec"]
    for key, replicas in spec.items():
        if key.endswith("ReplicaSpecs") and isinstance(replicas, dict):
            for replica in replicas.values():
                pod = (replica.get("template") or {}).get("spec")
                if isinstance(pod, dict):
                    yield pod


def apply(body: dict[str, Any], plan: LaunchPlan, config: KubernetesClusterConfig) -> None:
    """Add the environment's init container and volume, and the pull Secrets, to ``body``'s pods."""
    secrets = [{"name": pull_secret_name(name)} for name in sorted(plan.registry_auth)]
    env = plan.environment
    for pod in pod_specs(body):
        if secrets:
            pod["imagePullSecrets"] = [*pod.get("imagePullSecrets", []), *secrets]
        if env is not None and env.pip:
            _install(pod, env, config)


def _install(pod: dict[str, Any], env: EnvironmentPlan, config: KubernetesClusterConfig) -> None:
    containers = pod["containers"]
    path = f"{config.environment_cache}/{env.short_hash}"
    pod.setdefault("volumes", []).append(
        {"name": VOLUME, "hostPath": {"path": path, "type": "DirectoryOrCreate"}}
    )
    pod.setdefault("initContainers", []).append(
        {
            "name": INIT_CONTAINER,
            "image": containers[0]["image"],
            "command": [
                m.escape(arg) for arg in (config.environment_python, "-c", INSTALL_SCRIPT, MOUNT, *env.pip)
            ],
            "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
            "volumeMounts": [{"name": VOLUME, "mountPath": MOUNT}],
        }
    )
    site = f"{MOUNT}/{SITE}"
    for container in containers:
        container.setdefault("volumeMounts", []).append(
            {"name": VOLUME, "mountPath": MOUNT, "readOnly": True}
        )
        variables = container.setdefault("env", [])
        given = next((e for e in variables if e.get("name") == "PYTHONPATH" and "value" in e), None)
        if given is not None:
            given["value"] = f"{site}:{given['value']}" if given["value"] else site
        else:
            variables.append({"name": "PYTHONPATH", "value": site})
