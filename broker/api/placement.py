"""``/api/v1/placement/explain``: where a spec would go, and why, without submitting it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from broker.api.access import Guard
from broker.api.body import read_document
from broker.api.envelope import EnvelopeResponse, ok


async def explain(request: Request) -> EnvelopeResponse:
    """A dry run, authorised like a submit: every cluster's verdict per filter, scores, the winner."""
    broker = request.app.state.broker
    document = await read_document(request, broker.config.max_body_bytes)
    _spec, namespace, decision = broker.experiments.check_submission(document, Guard.of(request))
    return ok({"namespace": namespace, **decision.to_json()})


routes = [Route("/api/v1/placement/explain", explain, methods=["POST"])]
