"""Launch plans per framework: who talks to whom, through which environment variables.

The variables follow what the Kubeflow operators set, so training code written for Kubeflow (or
for Submarine on Kubernetes) runs unchanged on any cluster the broker picks:
- TensorFlow: ``TF_CONFIG`` with the cluster spec and this replica's task (Chief, Master,
  Worker, Ps; an Evaluator gets its task but is not part of the cluster spec).
- PyTorch: ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK`` (Master is rank 0).
- XGBoost: the same four plus ``WORKER_ADDRS``/``WORKER_PORT`` and the rabit tracker's
  ``DMLC_TRACKER_URI``, ``DMLC_TRACKER_PORT``, ``DMLC_NUM_WORKER``, ``DMLC_TASK_ID``.
- python: the command as it is, once per replica.
Every replica also gets ``JOB_ID`` (the Submarine SDK's tracking key), ``SUBMARINE_ROLE`` and
``SUBMARINE_REPLICA_INDEX``.

The builders read only the replicas' roles and indexes and where each listens, never the spec,
so the clusters that learn addresses at launch re-run them then (:func:`framework_env`, through
:func:`runtimes.rendezvous.render_env`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Protocol

from runtimes.environment import EnvironmentPlan
from runtimes.environment_spec import inline_plan
from runtimes.plan import Addressing, LaunchPlan, ReplicaPlan
from runtimes.resources import parse_resources
from runtimes.spec import ExperimentSpec, split_command

#: A replica slot: its role and its index in the role.
Slot = tuple[str, int]


class Endpoints(Protocol):
    """Where each replica listens, as the builders read it: an :class:`~runtimes.plan.Addressing`,
    or endpoints known at launch whose ports may still be placeholders (see :mod:`runtimes.rendezvous`)."""

    def host(self, role: str, index: int) -> str: ...

    def port(self, role: str, index: int) -> int | str: ...


#: A framework's environment builder: the slots of every replica (roles in framework order, primary
#: first) and their endpoints → each slot's framework variables.
EnvBuilder = Callable[[Sequence[Slot], Endpoints], dict[Slot, dict[str, str]]]


def _slots(spec: ExperimentSpec) -> list[Slot]:
    return [(role, i) for role, task in spec.ordered_roles() for i in range(task.replicas)]


def _tensorflow_env(slots: Sequence[Slot], addr: Endpoints) -> dict[Slot, dict[str, str]]:
    cluster: dict[str, list[str]] = {}
    for role, index in slots:
        if role == "Evaluator":
            continue
        cluster.setdefault(role.lower(), []).append(f"{addr.host(role, index)}:{addr.port(role, index)}")
    envs = {}
    for role, index in slots:
        tf_config = {
            "cluster": cluster,
            "task": {"type": role.lower(), "index": index},
            "environment": "cloud",
        }
        envs[(role, index)] = {"TF_CONFIG": json.dumps(tf_config, separators=(",", ":"))}
    return envs


def _ranks(slots: Sequence[Slot]) -> dict[Slot, int]:
    has_master = any(role == "Master" for role, _ in slots)
    ranks = {}
    for role, index in slots:
        ranks[(role, index)] = 0 if role == "Master" else index + (1 if has_master else 0)
    return ranks


def _rank_zero(slots: Sequence[Slot]) -> Slot:
    return ("Master", 0) if any(role == "Master" for role, _ in slots) else ("Worker", 0)


def _pytorch_env(slots: Sequence[Slot], addr: Endpoints) -> dict[Slot, dict[str, str]]:
    head = _rank_zero(slots)
    master_addr, master_port = addr.host(*head), str(addr.port(*head))
    ranks = _ranks(slots)
    return {
        slot: {
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": master_port,
            "WORLD_SIZE": str(len(slots)),
            "RANK": str(ranks[slot]),
            "PYTHONUNBUFFERED": "1",
        }
        for slot in slots
    }


def _xgboost_env(slots: Sequence[Slot], addr: Endpoints) -> dict[Slot, dict[str, str]]:
    envs = _pytorch_env(slots, addr)
    workers = [slot for slot in slots if slot[0] == "Worker"]
    worker_addrs = ",".join(addr.host(*slot) for slot in workers)
    worker_port = str(addr.port(*workers[0])) if workers else ""
    for env in envs.values():
        env.update(
            {
                "WORKER_ADDRS": worker_addrs,
                "WORKER_PORT": worker_port,
                "DMLC_TRACKER_URI": env["MASTER_ADDR"],
                "DMLC_TRACKER_PORT": env["MASTER_PORT"],
                "DMLC_NUM_WORKER": str(len(slots)),
                "DMLC_TASK_ID": env["RANK"],
            }
        )
    return envs


def _python_env(slots: Sequence[Slot], addr: Endpoints) -> dict[Slot, dict[str, str]]:
    return {slot: {"PYTHONUNBUFFERED": "1"} for slot in slots}


_ENV_BUILDERS: dict[str, EnvBuilder] = {
    "tensorflow": _tensorflow_env,
    "pytorch": _pytorch_env,
    "xgboost": _xgboost_env,
    "python": _python_env,
}


def framework_env(framework: str, slots: Sequence[Slot], endpoints: Endpoints) -> dict[Slot, dict[str, str]]:
    """The framework's variables of every slot (TF_CONFIG, MASTER_ADDR, ...); none for a framework
    without a builder (a notebook). ``slots`` name every replica of the run, in plan order."""
    builder = _ENV_BUILDERS.get(framework)
    return builder(slots, endpoints) if builder is not None else {}


def success_roles(spec: ExperimentSpec) -> list[str]:
    """Roles whose replicas must all exit 0 for the run to succeed.

    TensorFlow follows the Kubeflow TFJob policy: a Chief (or Master) decides alone when there
    is one, because in parameter-server training the workers and parameter servers never exit on
    their own; otherwise every Worker must finish. Parameter servers and evaluators never decide:
    they are stopped once the run has succeeded. Every other framework waits for every replica,
    so no worker is cut off while it is still writing its results.
    """
    roles = [role for role, _ in spec.ordered_roles()]
    if spec.meta.framework != "tensorflow":
        return roles
    for role in ("Chief", "Master"):
        if role in spec.spec:
            return [role]
    if "Worker" in spec.spec:
        return ["Worker"]
    return roles


def build_plan(
    spec: ExperimentSpec,
    *,
    workload_id: str,
    uid: str,
    namespace: str,
    addressing: Addressing,
    extra_env: dict[str, str] | None = None,
    environment: EnvironmentPlan | None = None,
) -> LaunchPlan:
    """Build the launch plan for one attempt of an experiment.

    ``extra_env`` (for example the broker's address) is set under the spec's own variables, so a
    user can still override it. Task ``envVars`` replace ``meta.envVars`` as in Submarine.
    ``environment`` is the registered environment's revision the workload pinned at submission;
    without it, the spec's own ``environment`` fields (image, kernelSpec) make the plan's, named
    ``inline``. Its image is the replicas' where the spec names none.
    """
    slots = _slots(spec)
    framework_vars = framework_env(spec.meta.framework, slots, addressing)
    replicas = []
    for role, index in slots:
        task = spec.spec[role]
        env: dict[str, str] = dict(extra_env or {})
        env.update(task.envVars if task.envVars is not None else spec.meta.envVars)
        env.update(framework_vars[(role, index)])
        env.update(
            {
                "JOB_ID": workload_id,
                "SUBMARINE_EXPERIMENT_ID": workload_id,
                "SUBMARINE_ROLE": role,
                "SUBMARINE_REPLICA_INDEX": str(index),
            }
        )
        argv = split_command(task.cmd if task.cmd is not None else spec.meta.cmd or "")
        needs_port = spec.meta.framework != "python"
        replicas.append(
            ReplicaPlan(
                role=role,
                index=index,
                argv=argv,
                env=env,
                resources=parse_resources(task.resources),
                host=addressing.host(role, index),
                port=addressing.port(role, index) if needs_port else None,
            )
        )
    kernel = spec.environment.kernelSpec or {}
    images = {image for role, _ in spec.ordered_roles() if (image := spec.image(role)) is not None}
    if not images and environment is not None and environment.image:
        images = {environment.image}
    if environment is None:
        environment = inline_plan(spec.environment)
        pip = [str(p) for p in kernel.get("pipDependencies") or []]
        conda = [str(p) for p in kernel.get("condaDependencies") or []]
    else:
        pip, conda = list(environment.pip), list(environment.conda)
    return LaunchPlan(
        uid=uid,
        workload_id=workload_id,
        name=spec.meta.name,
        namespace=namespace,
        framework=spec.meta.framework,
        image=sorted(images)[0] if images else None,
        replicas=replicas,
        success_roles=success_roles(spec),
        pip_packages=pip,
        conda_packages=conda,
        environment=environment,
    )
