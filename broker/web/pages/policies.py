"""``/ui/policies``: the live policy lines, an editor that validates as you type, a decision test,
and the revisions with their diffs and a revert.

Who may do what is the REST API's (:mod:`broker.api.policy`): the page, the test and the revisions
need ``read`` on ``policy``, saving, removing a line and reverting need ``edit``; anyone else gets
a 403 page. Edits go through the same :class:`~broker.policy_store.PolicyStore` calls as the API,
so a draft with a bad line is refused whole and an edit that would leave nobody able to edit the
policy is refused (409) with the store's message, shown above the kept draft. The editor's draft
is the whole policy (``replace``, one revision), saved only when the page's revision is still the
live one, so an edit made meanwhile by someone else is never dropped unseen.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from broker.api.access import guard_of
from broker.errors import ApiError, BadRequest, Conflict
from broker.guard import GLOBAL, Guard
from broker.policy_store import PolicyStore
from broker.web.pages.form_body import checked_form
from broker.web.render import HEADERS, page
from broker.web.routes import PREFIX, html_page
from policies.lines import PolicyLineError, parse_line

#: Revisions shown unless the page asks for all of them.
RECENT_REVISIONS = 20
_TEST_FIELDS = ("user", "namespace", "object", "action")


def _store(request: Request) -> PolicyStore:
    return request.app.state.broker.policy_store


def check_draft(text: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The draft's lines (blank ones skipped) and each invalid one's problem, numbered as the
    editor shows the draft (1-based, blank lines counted): the validation the store runs on save."""
    lines, problems = [], []
    for number, row in enumerate(text.splitlines(), 1):
        if not row.strip():
            continue
        lines.append(row.strip())
        try:
            parse_line(row)
        except PolicyLineError as exc:
            problems.append({"line": number, "text": row.strip(), "reason": exc.reason})
    return lines, problems


def _decision(request: Request) -> tuple[dict[str, Any] | None, str | None]:
    """The test form's answer (``?user=&namespace=&object=&action=``), or why it cannot be asked."""
    asked = {key: request.query_params.get(key, "").strip() for key in _TEST_FIELDS}
    if not any(asked.values()):
        return None, None
    missing = [key for key, value in asked.items() if not value]
    if missing:
        return {**asked}, f"{missing[0]}: is required"
    explanation = request.app.state.broker.policy.authorizer.explain(
        asked["user"], asked["namespace"], asked["object"], asked["action"]
    )
    return {
        **asked,
        "allowed": explanation.allowed,
        "matched": [line.csv() for line in explanation.matched],
        "denied_by_line": explanation.denied_by_line,
        "revision": explanation.revision,
    }, None


async def _render(
    request: Request,
    guard: Guard,
    *,
    status: int = 200,
    draft: str | None = None,
    message: str = "",
    save_error: str | None = None,
) -> Response:
    snapshot = await _store(request).get()
    history = list(reversed(await _store(request).revisions()))
    every = request.query_params.get("revisions") == "all"
    texts = [line.csv() for line in snapshot.lines]
    decision, decision_error = _decision(request)
    saved = request.query_params.get("saved", "")
    return page(
        request,
        "policies/page.html",
        status=status,
        snapshot=snapshot,
        lines=texts,
        may_edit=guard.may(GLOBAL, "policy", "edit"),
        draft="\n".join(texts) if draft is None else draft,
        problems=check_draft(draft)[1] if draft is not None else [],
        message=message,
        save_error=save_error,
        decision=decision,
        decision_error=decision_error,
        revisions=history if every else history[:RECENT_REVISIONS],
        hidden_revisions=0 if every else max(0, len(history) - RECENT_REVISIONS),
        saved=saved if saved.isascii() and saved.isdigit() else None,
        unchanged=request.query_params.get("unchanged") == "1",
    )


@html_page
async def policies_page(request: Request) -> Response:
    guard = guard_of(request)
    guard.require(GLOBAL, "policy", "read")
    return await _render(request, guard)


def _done(changed: bool, revision: int) -> RedirectResponse:
    where = f"saved={revision}" if changed else "unchanged=1"
    return RedirectResponse(f"{PREFIX}/policies?{where}", status_code=303)


async def _enforce(request: Request, changed: bool) -> None:
    if changed:
        await request.app.state.broker.policy.refresh()  # enforce our own edit at once, as the API does


@html_page
async def save(request: Request) -> Response:
    """The editor's draft as the whole policy (one revision); the page again with the draft and
    the refusal when the store refuses it (a bad line, a lockout) or the policy moved on meanwhile."""
    fields, guard = await checked_form(request)
    guard.require(GLOBAL, "policy", "edit")
    draft, message = fields.get("lines", ""), fields.get("message", "").strip()
    lines, problems = check_draft(draft)
    try:
        if problems:
            raise BadRequest(
                f"{len(problems)} line{'s' if len(problems) > 1 else ''} to fix; the policy was not changed"
            )
        live = (await _store(request).get()).revision
        if fields.get("revision") != str(live):
            raise Conflict(
                f"the policy changed since this page was opened (it is at revision {live} now): "
                "your draft is kept below; compare it with the current lines and save again"
            )
        edit = await _store(request).replace(guard.user, lines, message)
    except ApiError as exc:
        return await _render(
            request, guard, status=exc.code, draft=draft, message=message, save_error=exc.message
        )
    await _enforce(request, edit.changed)
    return _done(edit.changed, edit.snapshot.revision)


@html_page
async def remove(request: Request) -> Response:
    """Remove one line (the table's Remove button), as ``DELETE /api/v1/policy`` does."""
    fields, guard = await checked_form(request)
    guard.require(GLOBAL, "policy", "edit")
    try:
        edit = await _store(request).remove(guard.user, [fields.get("line", "")], fields.get("message", ""))
    except ApiError as exc:
        return await _render(request, guard, status=exc.code, save_error=exc.message)
    await _enforce(request, edit.changed)
    return _done(edit.changed, edit.snapshot.revision)


@html_page
async def revert(request: Request) -> Response:
    """Make the policy what it was right after a revision (a new revision), as the API's revert."""
    _fields, guard = await checked_form(request)
    guard.require(GLOBAL, "policy", "edit")
    raw = request.path_params["revision"]
    try:
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
            raise BadRequest(f"revision: '{raw[:20]}' is not a revision number", field="revision")
        edit = await _store(request).revert(guard.user, int(raw))
    except ApiError as exc:
        if exc.code == 404:
            raise
        return await _render(request, guard, status=exc.code, save_error=exc.message)
    await _enforce(request, edit.changed)
    return _done(edit.changed, edit.snapshot.revision)


async def validate(request: Request) -> Response:
    """The editor script's check of a draft (field ``lines``): ``{valid, lines, problems: [{line,
    text, reason}]}``, as the store would judge each line on save. Changes nothing."""
    try:
        fields, guard = await checked_form(request)
        guard.require(GLOBAL, "policy", "edit")
    except ApiError as exc:
        return JSONResponse({"message": exc.message}, status_code=exc.code, headers=HEADERS)
    lines, problems = check_draft(fields.get("lines", ""))
    return JSONResponse({"valid": not problems, "lines": len(lines), "problems": problems}, headers=HEADERS)


routes = [
    Route(f"{PREFIX}/policies", policies_page, methods=["GET"]),
    Route(f"{PREFIX}/policies/validate", validate, methods=["POST"]),
    Route(f"{PREFIX}/policies/save", save, methods=["POST"]),
    Route(f"{PREFIX}/policies/remove", remove, methods=["POST"]),
    Route(f"{PREFIX}/policies/revert/{{revision}}", revert, methods=["POST"]),
]
