"""The launch plan: what to start, where each replica listens, and when the whole run has succeeded.

A plan is plain data (pydantic, JSON-able) so an adapter can keep it, a test can compare it, and
the broker can store it beside the attempt without knowing what any cluster will build from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from runtimes.environment import EnvironmentPlan
from runtimes.images import RegistryAuth

#: What a replica gets when its spec names no resources.
DEFAULT_CPU = 1.0
DEFAULT_MEMORY = 1024 * 2**20


class Resources(BaseModel):
    """Resources of one replica: CPU cores, memory in bytes, whole GPUs."""

    model_config = ConfigDict(frozen=True)

    cpu: float = DEFAULT_CPU
    memory: int = DEFAULT_MEMORY
    gpu: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            cpu=self.cpu + other.cpu, memory=self.memory + other.memory, gpu=self.gpu + other.gpu
        )

    def minus(self, used: Resources) -> Resources:
        """What is left of these resources once ``used`` is taken, never below zero."""
        return Resources(
            cpu=max(0.0, self.cpu - used.cpu),
            memory=max(0, self.memory - used.memory),
            gpu=max(0, self.gpu - used.gpu),
        )

    def scaled(self, factor: int) -> Resources:
        """These resources ``factor`` times over."""
        return Resources(cpu=self.cpu * factor, memory=self.memory * factor, gpu=self.gpu * factor)

    def fits_in(self, free: Resources) -> bool:
        """True when this request fits in ``free`` (a small epsilon forgives float sums)."""
        return self.cpu <= free.cpu + 1e-9 and self.memory <= free.memory and self.gpu <= free.gpu


ZERO = Resources(cpu=0, memory=0, gpu=0)


class ReplicaPlan(BaseModel):
    """One process (container, task, actor) to start."""

    role: str = Field(description="Submarine role key: Ps, Worker, Chief, Master, Evaluator")
    index: int = Field(ge=0)
    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    host: str = Field(description="Address the other replicas reach this one at")
    port: int | None = Field(default=None, description="Port reserved for this replica, if it serves one")

    @property
    def name(self) -> str:
        """``worker-0``: the replica's name in logs and on clusters (Kubeflow's pod suffix)."""
        return f"{self.role.lower()}-{self.index}"


class ModelPlan(BaseModel):
    """The registered version a serve plan runs: what the model server downloads and loads
    (see :mod:`runtimes.serving` for the model-server contract)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The registered model's name")
    version: int = Field(ge=1)
    model_key: str = Field(description="The model's storage key (``registry/<key>/<version>``)")
    alias: str | None = Field(default=None, description="The alias followed to this version, if any")
    files_url: str = Field(description="The broker's artifact-API URL of the version's folder")
    flavor: str = Field(default="python_function", description="The MLmodel flavour loaded")


class LaunchPlan(BaseModel):
    """Everything a cluster adapter needs to start one attempt of one workload."""

    uid: str = Field(description="The attempt's unique id; adapters name what they create after it")
    workload_id: str = Field(description="The experiment or notebook id (JOB_ID)")
    workload_kind: str = "experiment"
    name: str
    namespace: str
    framework: str
    image: str | None = None
    replicas: list[ReplicaPlan] = Field(min_length=1)
    success_roles: list[str] = Field(
        description="The run has succeeded once every replica of these roles exited 0; "
        "the others (parameter servers, evaluators) are then stopped."
    )
    labels: dict[str, str] = Field(default_factory=dict)
    pip_packages: list[str] = Field(
        default_factory=list, description="The environment's pip requirements (kernelSpec.pipDependencies)"
    )
    conda_packages: list[str] = Field(
        default_factory=list, description="The environment's conda packages (kernelSpec.condaDependencies)"
    )
    environment: EnvironmentPlan | None = Field(
        default=None,
        description="What the replicas need installed (a registered environment's revision or the "
        "spec's inline kernelSpec), with its identity hash; None when nothing is asked",
    )
    registry_auth: dict[str, RegistryAuth] = Field(
        default_factory=dict,
        exclude=True,
        repr=False,
        description="Credentials of the configured registries the plan's images come from, by "
        "registry name (filled by the broker at dispatch). Never serialised: a plan's JSON (a Ray "
        "entrypoint, a log line) carries no secret",
    )
    workdir: str | None = Field(
        default=None,
        description="Key of a working directory that outlives attempts (a notebook's files): "
        "adapters run the replicas in storage kept under this key, where the cluster allows",
    )
    model: ModelPlan | None = Field(
        default=None, description="The registered model version a ``serve`` plan runs; None otherwise"
    )

    @property
    def total_resources(self) -> Resources:
        """The gang's whole request: every replica at once."""
        total = ZERO
        for replica in self.replicas:
            total = total + replica.resources
        return total

    @property
    def run_image(self) -> str | None:
        """The image the replicas run in: the plan's own, else its environment's (``dockerImage``)."""
        return self.image or (self.environment.image if self.environment is not None else None)

    @property
    def primary(self) -> ReplicaPlan:
        """The replica listed first in logs: chief, then master, then the first success replica."""
        return self.replicas[0]

    def replica(self, name: str) -> ReplicaPlan | None:
        """The replica called ``name`` (``worker-1``), or None."""
        return next((r for r in self.replicas if r.name == name), None)

    def deciders(self) -> list[str]:
        """The replicas (by name, plan order) whose exit decides the run: see :func:`decider_names`."""
        return decider_names([r.name for r in self.replicas], self.success_roles)


def decider_names(names: Sequence[str], success_roles: Iterable[str]) -> list[str]:
    """Of the replicas ``names`` (``worker-0``), those whose exit decides success: every replica of
    the success roles (TensorFlow's chief or master alone, see
    :func:`runtimes.frameworks.success_roles`), or every replica when no name is of those roles.

    The one rule of every place that judges a run from its replicas' exits: the adapters'
    :func:`clusters.base.summarise` (from a stored handle), the Ray launcher and the Slurm tasks.
    """
    roles = {role.lower() for role in success_roles}
    found = [name for name in names if name.rsplit("-", 1)[0] in roles]
    return found or list(names)


def replicas_by_role(plan: LaunchPlan) -> dict[str, list[ReplicaPlan]]:
    """Replicas per role (plan order), each role checked to hold indexes 0..n-1 with one command
    and one size: what clusters that run a role as one templated unit (a Kubeflow replica spec,
    an Indexed Job, a YARN component) need. A plan that breaks this raises ``ValueError``."""
    roles: dict[str, list[ReplicaPlan]] = {}
    for replica in plan.replicas:
        roles.setdefault(replica.role, []).append(replica)
    for role, group in roles.items():
        group.sort(key=lambda r: r.index)
        if [r.index for r in group] != list(range(len(group))):
            raise ValueError(f"role {role}: replica indexes are not 0..{len(group) - 1}")
        first = group[0]
        for other in group[1:]:
            if other.argv != first.argv or other.resources != first.resources:
                raise ValueError(f"role {role}: replicas differ in command or resources")
    return roles


class Addressing(Protocol):
    """How replicas of one attempt find each other on the chosen cluster.

    The adapter supplies it, because only the cluster knows whether replicas share a host
    (local), get stable DNS names (Kubernetes headless services) or learn addresses at start (Ray).
    """

    def host(self, role: str, index: int) -> str:
        """The address other replicas use to reach replica ``role``/``index``."""
        ...

    def port(self, role: str, index: int) -> int:
        """A port reserved for that replica."""
        ...


class StaticAddressing:
    """Addressing from a host function and a port allocator; the common case for adapters."""

    def __init__(self, host: Callable[[str, int], str], allocate_port: Callable[[], int]) -> None:
        self._host = host
        self._allocate = allocate_port
        self._ports: dict[tuple[str, int], int] = {}

    def host(self, role: str, index: int) -> str:
        return self._host(role, index)

    def port(self, role: str, index: int) -> int:
        key = (role, index)
        if key not in self._ports:
            self._ports[key] = self._allocate()
        return self._ports[key]
