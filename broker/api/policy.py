"""``/api/v1/policy``: read, edit, test and revert the Casbin policy (admins only by default)."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from broker.api.access import guard_of
from broker.api.body import read_document
from broker.api.envelope import EnvelopeResponse, ok
from broker.errors import BadRequest
from broker.guard import GLOBAL
from broker.policy_store import PolicyEdit, PolicyStore
from broker.workloads.views import fmt_time

_REVISION = re.compile(r"^[0-9]{1,18}$")


def _store(request: Request) -> PolicyStore:
    return request.app.state.broker.policy_store


async def _edited(request: Request, edit: PolicyEdit, unchanged: str) -> EnvelopeResponse:
    """The edit's result; when it changed nothing, ``changed: false`` and a message starting "no change"."""
    if not edit.changed:
        revision = edit.snapshot.revision
        return ok(edit.to_json(), message=f"no change: {unchanged}; the policy stays at revision {revision}")
    await request.app.state.broker.policy.refresh()  # enforce our own edit at once
    return ok(edit.to_json())


async def _lines_body(request: Request) -> tuple[list[str], str]:
    body = await read_document(request, request.app.state.broker.config.max_body_bytes)
    unknown = sorted(set(body) - {"lines", "message"})
    if unknown:
        raise BadRequest(
            f"{unknown[0]}: unknown field (expected lines and an optional message)", field=unknown[0]
        )
    if "lines" not in body:
        raise BadRequest("lines: is required", field="lines")
    message = body.get("message", "")
    if not isinstance(message, str):
        raise BadRequest("message: must be a string", field="message")
    return body["lines"], message


async def get_policy(request: Request) -> EnvelopeResponse:
    guard_of(request).require(GLOBAL, "policy", "read")
    return ok((await _store(request).get()).to_json())


async def add_lines(request: Request) -> EnvelopeResponse:
    """Add policy lines (all or none). 409 when the result would leave nobody able to edit the policy."""
    guard = guard_of(request)
    guard.require(GLOBAL, "policy", "edit")
    lines, message = await _lines_body(request)
    edit = await _store(request).add(guard.user, lines, message)
    return await _edited(request, edit, "every line is in the policy already")


async def remove_lines(request: Request) -> EnvelopeResponse:
    """Remove policy lines. 409 when that would leave nobody able to edit the policy."""
    guard = guard_of(request)
    guard.require(GLOBAL, "policy", "edit")
    lines, message = await _lines_body(request)
    edit = await _store(request).remove(guard.user, lines, message)
    return await _edited(request, edit, "none of these lines is in the policy")


async def replace_lines(request: Request) -> EnvelopeResponse:
    """Make these lines the whole policy. 409 when that would leave nobody able to edit the policy."""
    guard = guard_of(request)
    guard.require(GLOBAL, "policy", "edit")
    lines, message = await _lines_body(request)
    edit = await _store(request).replace(guard.user, lines, message)
    return await _edited(request, edit, "the policy is exactly these lines already")


async def revisions(request: Request) -> EnvelopeResponse:
    guard_of(request).require(GLOBAL, "policy", "read")
    found = await _store(request).revisions()
    return ok(
        [
            {
                "revision": r.revision,
                "author": r.author,
                "at": fmt_time(r.at),
                "added": r.added,
                "removed": r.removed,
                "message": r.message,
            }
            for r in found
        ]
    )


async def revert(request: Request) -> EnvelopeResponse:
    """Restore the policy as it was right after a revision (a new revision; 409 on a lockout)."""
    guard = guard_of(request)
    guard.require(GLOBAL, "policy", "edit")
    raw = request.path_params["revision"]
    if not _REVISION.match(raw):  # ASCII digits only ("²" is a digit to str.isdigit, not to int())
        shown = raw if len(raw) <= 20 else raw[:20] + "…"
        raise BadRequest(f"revision: '{shown}' is not a revision number", field="revision")
    edit = await _store(request).revert(guard.user, int(raw))
    return await _edited(request, edit, f"the policy is as it was after revision {raw} already")


async def test(request: Request) -> EnvelopeResponse:
    """Answer a request tuple with allow/deny and the deciding line(s), under the policy in force."""
    guard = guard_of(request)
    guard.require(GLOBAL, "policy", "read")
    body = await read_document(request, request.app.state.broker.config.max_body_bytes)
    fields: dict[str, Any] = {}
    for key in ("user", "namespace", "object", "action"):
        value = body.get(key)
        if not isinstance(value, str) or not value:
            raise BadRequest(f"{key}: is required and must be a non-empty string", field=key)
        fields[key] = value
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown field", field=unknown[0])
    explanation = request.app.state.broker.policy.authorizer.explain(
        fields["user"], fields["namespace"], fields["object"], fields["action"]
    )
    return ok(
        {
            **fields,
            "allowed": explanation.allowed,
            "matched": [line.csv() for line in explanation.matched],
            "revision": explanation.revision,
        }
    )


routes = [
    Route("/api/v1/policy", get_policy, methods=["GET"]),
    Route("/api/v1/policy", add_lines, methods=["POST"]),
    Route("/api/v1/policy", remove_lines, methods=["DELETE"]),
    Route("/api/v1/policy", replace_lines, methods=["PUT"]),
    Route("/api/v1/policy/revisions", revisions, methods=["GET"]),
    Route("/api/v1/policy/revert/{revision}", revert, methods=["POST"]),
    Route("/api/v1/policy/test", test, methods=["POST"]),
]
