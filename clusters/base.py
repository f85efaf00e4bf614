"""The cluster adapter protocol: six verbs every cluster kind implements, and optional ones it declares.

An adapter turns a :class:`~runtimes.plan.LaunchPlan` into something running on one cluster and
reports back. It never touches the broker's database: everything it needs to find its work again
after a broker restart lives in the small JSON-able :class:`Handle` state it returns from
``submit``, which the broker stores and hands back to ``poll``, ``cancel``, ``logs`` and
``endpoint``.

Required verbs are abstract methods: ``health``, ``addressing``, ``submit``, ``poll``, ``cancel``
and ``logs``. Optional ones have one idiom: a :class:`Capability` flag declares each
(:data:`OPTIONAL_VERBS`), a kind overrides the verb exactly when it has the flag, and without
the flag the base's verb gives the neutral answer its docstring names (so a caller that does not
ask the flag first still gets a safe answer). Both rules are checked when a kind's class is
defined: a concrete kind that misses a required verb, or whose flags and overrides disagree, is a
``TypeError`` there. A base of other kinds (the batch family) says ``abstract=True`` in its class
statement and is checked through its concrete subclasses instead.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from clusters.config import ClusterConfig
from clusters.errors import EnvironmentBuildFailed
from runtimes.environment import EnvironmentPlan
from runtimes.plan import ZERO, Addressing, LaunchPlan, Resources, decider_names


class Capability(enum.Flag):
    """What a cluster kind can do. Placement filters on the first four (:data:`PLACEMENT`); each
    flag from ``ENDPOINTS`` on declares an optional verb the kind implements (:data:`OPTIONAL_VERBS`)."""

    NONE = 0
    GPU = enum.auto()
    MULTI_NODE = enum.auto()
    #: Serves what a workload listens on (a notebook): ``endpoint``.
    ENDPOINTS = enum.auto()
    IMAGES = enum.auto()
    #: Lists every attempt it holds for this broker (the orphan sweep): ``owned``.
    LISTS_WORK = enum.auto()
    #: Keeps working directories across attempts and can free them: ``release``.
    RELEASES_WORKDIRS = enum.auto()
    #: Runs replicas as processes on the broker's own host: ``host_user_problem``.
    BROKER_HOST = enum.auto()
    #: Keeps built environments in a cache of its own (a venv per hash), builds them ahead of work
    #: and frees them: ``prepare_environment``, ``drop_environment``.
    ENVIRONMENT_CACHE = enum.auto()


#: The capabilities work is placed by (and that the cluster API lists).
PLACEMENT = Capability.GPU | Capability.MULTI_NODE | Capability.ENDPOINTS | Capability.IMAGES

#: Each optional verb of :class:`ClusterAdapter` and the capability that declares it.
OPTIONAL_VERBS: dict[str, Capability] = {
    "endpoint": Capability.ENDPOINTS,
    "owned": Capability.LISTS_WORK,
    "release": Capability.RELEASES_WORKDIRS,
    "host_user_problem": Capability.BROKER_HOST,
    "prepare_environment": Capability.ENVIRONMENT_CACHE,
    "drop_environment": Capability.ENVIRONMENT_CACHE,
}


class Phase(enum.StrEnum):
    """What a cluster says about one workload (or one replica)."""

    PENDING = "pending"  # accepted by the cluster, not running yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the cluster did not say; never a reason to fail anything on its own
    NOT_FOUND = "not_found"  # the cluster has nothing under this handle

    @property
    def is_terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


@dataclass(frozen=True)
class Handle:
    """What the broker keeps to find an attempt again: its uid and the adapter's own state."""

    uid: str
    state: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"uid": self.uid, "state": self.state}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Handle:
        return cls(uid=data["uid"], state=dict(data.get("state") or {}))

    @classmethod
    def for_plan(cls, plan: LaunchPlan, **state: Any) -> Handle:
        """The handle of ``plan``'s attempt: its replica names (plan order, primary first) and
        success roles, which polls and logs read back after a restart, plus the kind's ``state``."""
        common: dict[str, Any] = {
            "replicas": [r.name for r in plan.replicas],
            "success_roles": list(plan.success_roles),
        }
        return cls(plan.uid, {**common, **state})


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica as the cluster sees it."""

    name: str
    phase: Phase
    exit_code: int | None = None
    message: str = ""


@dataclass(frozen=True)
class Observation:
    """One workload as the cluster sees it at one poll."""

    uid: str
    phase: Phase
    message: str = ""
    failure_category: str | None = None  # exit_code, killed, cluster_lost, rejected, timeout
    replicas: tuple[ReplicaStatus, ...] = ()


@dataclass(frozen=True)
class Health:
    """A cluster's answer to a health check.

    ``usable`` False means the cluster answers but must get no new work, ``message`` saying why
    (it cannot run what the broker would send: a Ray cluster whose ``entrypoint_python`` lacks
    Ray). The broker shows it NotReady; the work already there is still watched and never failed
    over for it, unlike an unreachable cluster's.
    """

    reachable: bool
    total: Resources = ZERO
    free: Resources = ZERO
    message: str = ""
    running: int = 0
    usable: bool = True


@dataclass(frozen=True)
class ReplicaLog:
    """The log of one replica, split in lines, oldest first."""

    replica: str
    lines: list[str]


class ClusterAdapter(ABC):
    """Base of every cluster kind.

    Subclasses set ``kind``, ``config_model`` and ``capabilities``, implement the abstract verbs
    and exactly the optional verbs their capabilities declare. A subclass that breaks either rule
    is refused (``TypeError``) when its class is defined, not at first use, unless it declares
    itself a base of other kinds: ``class BatchAdapter(ClusterAdapter, abstract=True)``.
    """

    kind: ClassVar[str]
    config_model: ClassVar[type[ClusterConfig]]
    capabilities: ClassVar[Capability] = Capability.NONE
    #: Whether :meth:`endpoints` names every replica (True), or one endpoint balances them all
    #: (False: a Kubernetes Service, Ray Serve's route), whose readiness the cluster answers for.
    endpoint_per_replica: ClassVar[bool] = False

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        problems = contract_problems(cls)
        if problems:
            raise TypeError(f"cluster adapter {cls.__name__} {'; '.join(problems)}")

    def __init__(self, config: ClusterConfig, *, data_dir: str) -> None:
        self.config = config
        self.data_dir = data_dir

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def runs_on_broker_host(self) -> bool:
        """Replicas run as processes on the broker's own host (``Capability.BROKER_HOST``), so the
        broker can check what their interpreter has installed (Jupyter for notebooks) first."""
        return Capability.BROKER_HOST in self.capabilities

    @abstractmethod
    async def health(self) -> Health:
        """Reachability and capacity. Never raises for an unreachable cluster: it says so."""

    @abstractmethod
    def addressing(self, uid: str) -> Addressing:
        """How replicas of attempt ``uid`` will reach each other on this cluster."""

    @abstractmethod
    async def submit(self, plan: LaunchPlan) -> Handle:
        """Start the plan; idempotent on ``plan.uid``.

        A second call with the same uid (a retry, or a broker restarted between submit and
        saving the handle) returns a handle to what the first call started and starts nothing
        more. Raises :class:`SubmitRejected` when the cluster refuses the plan and
        :class:`ClusterUnreachable` when it cannot be asked.
        """

    @abstractmethod
    async def poll(self, handles: Sequence[Handle]) -> dict[str, Observation]:
        """Observe every handle in one round trip to the cluster, keyed by uid.

        Works after a broker restart with handles from the database. A handle the cluster does
        not know gets ``NOT_FOUND``; if the cluster cannot be asked, raise
        :class:`ClusterUnreachable` (never report FAILED for want of an answer).
        """

    @abstractmethod
    async def cancel(self, handle: Handle) -> None:
        """Stop every replica of the attempt. Idempotent: cancelling what already ended is fine."""

    @abstractmethod
    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        """Logs per replica, primary replica first; ``replica`` narrows to one, ``tail`` to the last lines."""

    @classmethod
    def host_user_problem(cls, config: ClusterConfig, *, multi_user: bool) -> tuple[str, str] | None:
        """``(key, reason)`` when a broker must not run this cluster file's work as configured.

        Optional (``Capability.BROKER_HOST``): only kinds that run work on the broker's own host
        have a say, since running it as the broker's Unix user would let any user read the broker's
        database and secrets. ``multi_user`` is True for a broker that serves several people
        (``auth: token``). None: nothing against it (the answer of every other kind).
        """
        return None

    def refuses_namespace(self, namespace: str) -> str | None:
        """Why this cluster takes no work of ``namespace`` at all, or None (placement shows it)."""
        return None

    async def owned(self) -> list[Handle] | None:
        """Every attempt this cluster holds for this broker (found by the broker's origin label).

        Optional (``Capability.LISTS_WORK``). The broker cancels those it no longer tracks
        (superseded or deleted attempts): the orphan sweep. Without the capability: None, the
        kind's work is swept by handle only.
        """
        return None

    async def endpoint(self, handle: Handle) -> str | None:
        """Where a serving workload (a notebook) listens once it does, else None.

        Optional (``Capability.ENDPOINTS``); without the capability: None.
        """
        return None

    async def endpoints(self, handle: Handle) -> dict[str, str]:
        """Where each replica of a serving workload listens, by replica name (``server-1`` →
        ``http://127.0.0.1:40123``), for those that listen already; the broker's proxy spreads
        requests over them (a served model's replicas).

        Optional (``Capability.ENDPOINTS``). The base answers :meth:`endpoint` as the primary
        replica's (the first name of the handle's ``replicas``): right for one-replica work and
        for kinds that put their own balancer in front (a Kubernetes Service, Ray Serve's route).
        """
        url = await self.endpoint(handle)
        names = handle.state.get("replicas") or ["server-0"]
        return {str(names[0]): url} if url else {}

    async def release(self, workdir: str) -> bool:
        """Free the storage kept under a ``workdir`` key (a deleted notebook's files).

        Optional (``Capability.RELEASES_WORKDIRS``). Returns True when something was freed or
        nothing was left, False when the files stay where the cluster put them (not ours to
        delete; without the capability, always). Raises :class:`ClusterUnreachable` when the
        cluster cannot be asked.
        """
        return False

    def environment_problem(self, env: EnvironmentPlan) -> str | None:
        """Why this cluster cannot apply ``env`` as configured (conda packages where there is no
        conda, pip installs the cluster's config disallows, pip packages on a kind that only runs
        images), or None. Placement shows it and skips the cluster; when no cluster can apply it,
        submission is a 400 with the reasons. The base applies nothing and refuses nothing."""
        return None

    async def prepare_environment(self, env: EnvironmentPlan) -> None:
        """Build ``env`` into the cluster's cache now, so later work starts warm.

        Optional (``Capability.ENVIRONMENT_CACHE``). Idempotent: a build already there is reused
        and a build under way elsewhere is waited for (a lock, never two builds of one hash).
        Raises :class:`EnvironmentBuildFailed` with the installer's own error line, and
        :class:`ClusterUnreachable` when the cluster cannot be asked. Without the capability:
        :class:`EnvironmentBuildFailed` saying the kind keeps no cache.
        """
        raise EnvironmentBuildFailed(f"cluster '{self.name}' ({self.kind}) keeps no environment cache")

    async def drop_environment(self, env_hash: str) -> bool:
        """Remove the cached build of ``env_hash`` (housekeeping; never called while work uses it).

        Optional (``Capability.ENVIRONMENT_CACHE``). True when it was removed or was not there;
        without the capability, False."""
        return False

    async def close(self) -> None:  # noqa: B027 - optional hook, most kinds hold nothing to release
        """Release connections and background resources; the workloads keep running."""


def contract_problems(cls: type[ClusterAdapter]) -> list[str]:
    """What a concrete adapter class lacks or gets wrong: required verbs it leaves abstract, a
    missing ``kind`` or ``config_model``, optional verbs its capabilities do not match."""
    problems = []
    missing = sorted(_abstract_names(cls))
    missing += [attr for attr in ("kind", "config_model") if not hasattr(cls, attr)]
    if missing:
        problems.append(f"lacks {', '.join(missing)}")
    for verb, flag in OPTIONAL_VERBS.items():
        overridden = overrides(cls, verb)
        if overridden != (flag in cls.capabilities):
            name = flag.name or str(flag)
            problems.append(
                f"overrides {verb} without Capability.{name}"
                if overridden
                else f"has Capability.{name} but does not override {verb}"
            )
    return problems


def overrides(cls: type[ClusterAdapter], verb: str) -> bool:
    """Whether ``cls`` (or a base below :class:`ClusterAdapter`) defines ``verb`` itself."""
    owner = next((k for k in cls.__mro__ if verb in vars(k)), ClusterAdapter)
    return owner is not ClusterAdapter


def _abstract_names(cls: type) -> set[str]:
    # Not ``__abstractmethods__``: ABCMeta sets it only once the class is made, after
    # ``__init_subclass__`` has run. This looks for abstract methods the way ABCMeta does.
    return {name for name in dir(cls) if getattr(getattr(cls, name, None), "__isabstractmethod__", False)}


def summarise(uid: str, plan_success_roles: Sequence[str], replicas: Sequence[ReplicaStatus]) -> Observation:
    """Fold per-replica states into one workload observation (gang semantics).

    Any replica failed → FAILED, naming the replica and its exit code. Every replica that decides
    the run (:func:`runtimes.plan.decider_names`: those of the success roles, else all) exited 0 →
    SUCCEEDED (the others are then stopped by the broker). Any replica
    unknown → UNKNOWN. Otherwise RUNNING once every replica runs or has finished, else PENDING.
    """
    failed = [r for r in replicas if r.phase is Phase.FAILED]
    if failed:
        first = failed[0]
        category = "exit_code" if first.exit_code not in (None, -9, -15) else "killed"
        detail = first.message or (
            f"exited with code {first.exit_code}" if first.exit_code is not None else "failed"
        )
        return Observation(uid, Phase.FAILED, f"replica {first.name} {detail}", category, tuple(replicas))
    deciders = set(decider_names([r.name for r in replicas], plan_success_roles))
    if deciders and all(r.phase is Phase.SUCCEEDED for r in replicas if r.name in deciders):
        return Observation(uid, Phase.SUCCEEDED, "all replicas finished", None, tuple(replicas))
    if any(r.phase is Phase.UNKNOWN for r in replicas):
        return Observation(uid, Phase.UNKNOWN, "some replicas are in an unknown state", None, tuple(replicas))
    if any(r.phase is Phase.NOT_FOUND for r in replicas):
        missing = next(r for r in replicas if r.phase is Phase.NOT_FOUND)
        return Observation(
            uid,
            Phase.FAILED,
            f"replica {missing.name} is gone from the cluster",
            "cluster_lost",
            tuple(replicas),
        )
    if all(r.phase in (Phase.RUNNING, Phase.SUCCEEDED) for r in replicas):
        return Observation(uid, Phase.RUNNING, "", None, tuple(replicas))
    return Observation(uid, Phase.PENDING, "", None, tuple(replicas))
