"""What dispatch gives a serve's attempt: its launch plan, with the version's files URL on the
broker's advertised address, a fetch token scoped to that version and the server token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.serving.fetch_tokens import FetchTokens
from broker.serving.views import MODEL_KEY
from runtimes.environment import EnvironmentPlan
from runtimes.plan import Addressing, LaunchPlan, ModelPlan
from runtimes.serving import ServeSpec, build_serve_plan, files_url


def spec_of(stored: dict[str, Any]) -> ServeSpec:
    """The ServeSpec of a stored serve row (its spec without the resolved ``model``)."""
    return ServeSpec.model_validate({k: v for k, v in stored.items() if k != MODEL_KEY})


def model_of(stored: dict[str, Any], broker_url: str) -> ModelPlan:
    """The resolved version a stored serve runs, its files on the broker at ``broker_url``."""
    model = stored[MODEL_KEY]
    key = str(model["modelKey"])
    return ModelPlan(
        name=model["name"],
        version=int(model["version"]),
        model_key=key,
        alias=model.get("alias"),
        files_url=files_url(broker_url, key, int(model["version"])),
        flavor=model.get("flavor") or "python_function",
    )


@dataclass(frozen=True)
class ServeHandout:
    """Builds serve plans for the dispatcher."""

    fetch_tokens: FetchTokens
    #: The broker's address as replicas reach it (the one experiments get as MLFLOW_TRACKING_URI).
    broker_url: str

    def plan(
        self,
        stored: dict[str, Any],
        *,
        workload_id: str,
        uid: str,
        namespace: str,
        addressing: Addressing,
        python: str,
        server_token: str,
        extra_env: dict[str, str],
        environment: EnvironmentPlan | None,
    ) -> LaunchPlan:
        """The launch plan of attempt ``uid`` of the serve stored as ``stored``; ``python`` is the
        interpreter with the broker's ``runtimes`` package (and MLflow) on the chosen cluster."""
        model = model_of(stored, self.broker_url)
        return build_serve_plan(
            spec_of(stored),
            model,
            workload_id=workload_id,
            uid=uid,
            namespace=namespace,
            addressing=addressing,
            python=python,
            server_token=server_token,
            fetch_token=self.fetch_tokens.issue(workload_id, uid, int(model.model_key), model.version),
            extra_env=extra_env,
            environment=environment,
        )
