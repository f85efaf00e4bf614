"""``/api/v1/placement/explain``: where a spec would go, and why, without submitting it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from broker.api.access import guard_of
from broker.api.body import read_document
from broker.api.envelope import EnvelopeResponse, ok
from broker.errors import BadRequest
from broker.workloads.kind import Kind
from broker.workloads.views import pinned_environment_json


async def explain(request: Request) -> EnvelopeResponse:
    """A dry run, authorised like a submit: every cluster's verdict per filter, scores, the winner,
    and the environment the work would pin (``{name, revision, hash}``, null when none).

    The body is an ExperimentSpec, or a NotebookSpec with ``?kind=notebook``."""
    broker = request.app.state.broker
    document = await read_document(request, broker.config.max_body_bytes)
    kind = request.query_params.get("kind", Kind.EXPERIMENT.value)
    if kind not in tuple(Kind):
        raise BadRequest(f"kind: '{kind}' is not {' or '.join(Kind)}", field="kind")
    service = broker.notebooks if kind == Kind.NOTEBOOK else broker.experiments
    _spec, namespace, decision, environment = await service.check_pinned(document, guard_of(request))
    pinned = pinned_environment_json(environment.model_dump(mode="json")) if environment else None
    return ok({"namespace": namespace, "environment": pinned, **decision.to_json()})


routes = [Route("/api/v1/placement/explain", explain, methods=["POST"])]
