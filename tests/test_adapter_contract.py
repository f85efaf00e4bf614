"""The adapter contract, for every registered kind, and its enforcement when a kind's class is defined.

Every kind in the kind registry: its class implements the required verbs, names a config model of
its kind, declares exactly the optional verbs it overrides (``ENDPOINTS`` ⇔ ``endpoint``, ...), and
answers a poll of nothing and of handles it does not know (NOT_FOUND) without error. Each kind is
driven against what is cheap: the local host, the protocol doubles of Kubernetes and YARN, a fake
Ray job client, a scripted slurmrestd.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from clusters.base import (
    OPTIONAL_VERBS,
    Capability,
    ClusterAdapter,
    Handle,
    Health,
    Observation,
    Phase,
    ReplicaLog,
    contract_problems,
    overrides,
)
from clusters.batch.base import BatchAdapter
from clusters.config import ClusterConfig
from clusters.kinds import adapter_class, known_kinds
from runtimes.plan import LaunchPlan, ReplicaPlan, StaticAddressing

#: What a kind needs of a world to be polled: a config and, once the adapter exists, its doubles.
_NOT_YET = "no cheap world for kind '{kind}': add one to tests/test_adapter_contract.py"


@contextlib.contextmanager
def world(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ClusterAdapter]:
    """An adapter of ``kind`` against something that answers like its cluster, closed afterwards."""
    with contextlib.ExitStack() as stack:
        adapter = _adapter(kind, tmp_path, stack, request)
        try:
            yield adapter
        finally:
            asyncio.run(adapter.close())


def _adapter(
    kind: str, tmp_path: Path, stack: contextlib.ExitStack, request: pytest.FixtureRequest
) -> ClusterAdapter:
    cls = adapter_class(kind)
    data_dir = str(tmp_path / "data")
    if kind == "local":
        return cls(cls.config_model(name="c1", kind=kind), data_dir=data_dir)
    if kind == "kubernetes":
        from tests.doubles.kube_api import KubeApiDouble
        from tests.support import serve_in_thread

        double = KubeApiDouble(token="contract-token")
        url = stack.enter_context(serve_in_thread(double.app))
        kubeconfig = double.kubeconfig(tmp_path / "kubeconfig", url, "team-a")
        config = cls.config_model(name="c1", kind=kind, kubeconfig=str(kubeconfig), namespace="team-a")
        return cls(config, data_dir=data_dir)
    if kind == "yarn":
        from tests.doubles.yarn_rm import YarnRMDouble
        from tests.support import serve_in_thread

        request.getfixturevalue("yarn_schema_dir")  # the double checks every request against it
        url = stack.enter_context(serve_in_thread(YarnRMDouble(users={"alice"}).app))
        config = cls.config_model(name="c1", kind=kind, rm_url=url, user="alice", request_timeout=5)
        return cls(config, data_dir=data_dir)
    if kind == "ray":
        from tests.doubles.ray_sdk import FakeSDK

        adapter = cls(cls.config_model(name="c1", kind=kind, address="http://127.0.0.1:9"), data_dir=data_dir)
        adapter._client = FakeSDK()  # type: ignore[attr-defined]
        return adapter
    if kind == "slurm":
        config = cls.config_model(
            name="c1", kind=kind, mode="rest", rest_url="http://127.0.0.1:9", user="u", token="t"
        )
        adapter = cls(config, data_dir=data_dir)
        # slurmrestd with no jobs at all (v0.0.38's answer shape).
        answer = httpx.MockTransport(lambda request: httpx.Response(200, json={"jobs": [], "errors": []}))
        adapter.backend.transport = answer  # type: ignore[attr-defined]
        return adapter
    pytest.fail(_NOT_YET.format(kind=kind))


def _plan(uid: str) -> LaunchPlan:
    replica = ReplicaPlan(role="Worker", index=0, argv=["true"], host="127.0.0.1")
    return LaunchPlan(
        uid=uid,
        workload_id="experiment-1",
        name="t",
        namespace="default",
        framework="python",
        replicas=[replica],
        success_roles=["Worker"],
    )


@pytest.mark.parametrize("kind", known_kinds())
def test_a_kind_implements_the_required_verbs_with_its_config_model(kind: str) -> None:
    cls = adapter_class(kind)
    assert cls.kind == kind
    assert not inspect.isabstract(cls)
    assert issubclass(cls.config_model, ClusterConfig)
    assert cls.config_model.model_fields["kind"].default == kind
    assert contract_problems(cls) == []


@pytest.mark.parametrize("kind", known_kinds())
def test_a_kinds_capabilities_declare_exactly_the_optional_verbs_it_overrides(kind: str) -> None:
    cls = adapter_class(kind)
    for verb, flag in OPTIONAL_VERBS.items():
        assert overrides(cls, verb) == (flag in cls.capabilities), (kind, verb, flag)


@pytest.mark.parametrize("kind", known_kinds())
def test_a_kind_answers_a_poll_of_nothing_and_of_handles_it_does_not_know(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    unknown = [
        Handle("contract-none-1"),  # no state at all
        Handle.for_plan(_plan("contract-none-2")),  # what every kind's handle holds, nothing of the kind's
        Handle.for_plan(_plan("contract-none-3"), job_id="424242"),  # a job the scheduler never had
    ]

    async def body(adapter: ClusterAdapter) -> dict[str, Observation]:
        assert await adapter.poll([]) == {}
        seen = await adapter.poll(unknown)
        for handle in unknown:
            await adapter.cancel(handle)  # cancelling what is not there is fine
        return seen

    with world(kind, tmp_path, request) as adapter:
        seen = asyncio.run(body(adapter))
    assert {uid: o.phase for uid, o in seen.items()} == {h.uid: Phase.NOT_FOUND for h in unknown}
    assert all(o.uid == uid for uid, o in seen.items())


# -- the contract at class definition ------------------------------------------------------------


class _Config(ClusterConfig):
    kind: Literal["contract"] = "contract"


class _Complete:
    """The required verbs, for test kinds to take or leave."""

    kind = "contract"
    config_model = _Config

    async def health(self) -> Health:
        return Health(reachable=True)

    def addressing(self, uid: str) -> StaticAddressing:
        return StaticAddressing(lambda _role, _index: "127.0.0.1", lambda: 1)

    async def submit(self, plan: LaunchPlan) -> Handle:
        return Handle(plan.uid)

    async def poll(self, handles: Sequence[Handle]) -> dict[str, Observation]:
        return {}

    async def cancel(self, handle: Handle) -> None:
        return None

    async def logs(
        self, handle: Handle, replica: str | None = None, tail: int | None = None
    ) -> list[ReplicaLog]:
        return []


def test_a_kind_missing_a_required_verb_is_refused_when_its_class_is_defined() -> None:
    class Complete(_Complete, ClusterAdapter):
        pass

    assert contract_problems(Complete) == []
    with pytest.raises(TypeError, match=r"cluster adapter NoLogs lacks logs$"):

        class NoLogs(ClusterAdapter):
            kind = "contract"
            config_model = _Config
            health = _Complete.health
            addressing = _Complete.addressing
            submit = _Complete.submit
            poll = _Complete.poll
            cancel = _Complete.cancel

    with pytest.raises(TypeError, match="lacks kind, config_model"):

        class Nameless(ClusterAdapter):
            health = _Complete.health
            addressing = _Complete.addressing
            submit = _Complete.submit
            poll = _Complete.poll
            cancel = _Complete.cancel
            logs = _Complete.logs


def test_capabilities_and_optional_verbs_must_agree_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="has Capability.ENDPOINTS but does not override endpoint"):

        class Serving(_Complete, ClusterAdapter):
            capabilities = Capability.ENDPOINTS

    with pytest.raises(TypeError, match="overrides owned without Capability.LISTS_WORK"):

        class Listing(_Complete, ClusterAdapter):
            async def owned(self) -> list[Handle]:
                return []

    class Declared(_Complete, ClusterAdapter):
        capabilities = Capability.LISTS_WORK

        async def owned(self) -> list[Handle]:
            return []

    assert contract_problems(Declared) == []


def test_a_base_of_other_kinds_declares_itself_and_its_kinds_are_checked() -> None:
    class Queue(ClusterAdapter, abstract=True):  # a family base: no kind, verbs left to its kinds
        pass

    assert inspect.isabstract(Queue)
    with pytest.raises(TypeError, match="lacks read_logs"):

        class HalfBatch(BatchAdapter):
            kind = "contract"
            config_model = _Config
            health = _Complete.health
            addressing = _Complete.addressing

            async def find_job(self, plan: LaunchPlan) -> str | None:
                return None

            async def submit_job(self, plan: LaunchPlan) -> str:
                return "1"

            async def query_jobs(self, job_ids: Sequence[str]) -> dict[str, Any]:
                return {}

            def parse_job(self, handle: Handle, record: Any) -> Observation:
                return Observation(handle.uid, Phase.UNKNOWN)

            async def cancel_job(self, handle: Handle) -> None:
                return None
