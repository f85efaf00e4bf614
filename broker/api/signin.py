"""``/login`` and ``/logout``: where a browser trades an API token for the broker's cookie.

A browser opening a notebook cannot send ``Authorization`` (nor can its WebSockets), so the sign-in
form takes the token once and sets it as the ``submarine_broker_token`` cookie: ``HttpOnly`` (no
script reads it), ``SameSite=Strict`` (no other site's page makes the browser send it), ``Secure``
over HTTPS, and one per path of :data:`~broker.api.access.COOKIE_PATHS`, the only paths where it
is a credential. The form answers without a caller; a sign-in or sign-out posted by another site's
page is refused.
"""

from __future__ import annotations

import html
import json
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from broker.api.access import (
    COOKIE_PATHS,
    SIGN_IN_PATH,
    TOKEN_COOKIE,
    caller,
    cross_site,
    public,
    user_of,
)
from broker.api.body import read_body
from broker.api.envelope import error, ok
from broker.errors import ApiError

SIGN_OUT_PATH = "/logout"
#: Where a one-time sign-in link leads (:mod:`broker.signin_codes`).
ONCE_PATH = "/login/once"
_MAX_FORM_BYTES = 4096
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
    # Not no-referrer: with it, a browser sends "Origin: null" on the page's own form posts.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


def safe_next(value: str | None) -> str | None:
    """``value`` when it is a path of this broker where the cookie counts, else None (no open redirect)."""
    if not value or not value.startswith(COOKIE_PATHS):
        return None
    if "\\" in value or "//" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return None
    return value


def _page(message: str, next_path: str | None, *, status: int = 200, form: bool = True) -> HTMLResponse:
    hidden = f'<input type="hidden" name="next" value="{html.escape(next_path)}">' if next_path else ""
    body = (
        '<form method="post" action="/login">'
        f"{hidden}"
        '<label>API token <input name="token" type="password" autocomplete="off" required autofocus>'
        "</label> <button>Sign in</button></form>"
        "<p>An admin creates a token with <code>submarine-broker token create NAME</code>.</p>"
        if form
        else ""
    )
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>Submarine Broker: sign in</title></head><body><h1>Submarine Broker</h1>"
        f"<p>{html.escape(message)}</p>{body}</body></html>"
    )
    return HTMLResponse(page, status_code=status, headers=_HEADERS)


@public
async def sign_in_form(request: Request) -> Response:
    """The sign-in form (HTML); ``?next=`` is where to go afterwards (a notebook's path)."""
    next_path = safe_next(request.query_params.get("next"))
    if request.app.state.broker.config.auth == "none":
        if next_path:
            return RedirectResponse(next_path, status_code=303)
        return _page(
            "This broker has no authentication (auth: none): nothing to sign in to.", None, form=False
        )
    return _page("Sign in with your API token to use the workbench and open notebooks here.", next_path)


async def _form(request: Request, keys: tuple[str, ...] = ("token", "next")) -> dict[str, str]:
    """``keys`` (``token`` and ``next``) from a form post (what the page sends) or a JSON object."""
    raw = await read_body(request, _MAX_FORM_BYTES)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        fields = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in fields.items() if k in keys}
    if kind == "application/json":
        try:
            data = json.loads(raw)
        except ValueError:
            raise ApiError(400, "the body is not JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object with 'token'")
        return {k: v for k, v in data.items() if k in keys and isinstance(v, str)}
    raise ApiError(415, "send the form (application/x-www-form-urlencoded) or JSON with 'token'")


@public
async def sign_in(request: Request) -> Response:
    """Check the token and set it as the broker's cookie, then go to ``next`` (303)."""
    if (why := cross_site(request.scope)) is not None:
        return error(403, why)
    try:
        fields = await _form(request)
    except ApiError as exc:
        return error(exc.code, exc.message)
    next_path = safe_next(fields.get("next"))
    broker = request.app.state.broker
    token = fields.get("token", "").strip()
    if broker.config.auth == "none":
        return RedirectResponse(next_path or SIGN_IN_PATH, status_code=303)
    user = await user_of(broker.db, token) if token else None
    if user is None:
        return _page("Unknown or revoked API token: try again.", next_path, status=401)
    answer: Response = (
        RedirectResponse(next_path, status_code=303)
        if next_path
        else _page(f"Signed in as {user}: open the workbench at /ui/, or a notebook's URL.", None, form=False)
    )
    return _with_cookie(answer, token, request)


def _with_cookie(answer: Response, token: str, request: Request) -> Response:
    """``answer`` setting ``token`` as the broker's cookie on each of :data:`COOKIE_PATHS`."""
    for path in COOKIE_PATHS:
        answer.set_cookie(
            TOKEN_COOKIE,
            token,
            path=path,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return answer


async def issue_once(request: Request) -> Response:
    """``POST /api/v1/login/once`` ``{"next": path}``: a one-time sign-in link for the caller's
    browser (:mod:`broker.signin_codes`), signing it in with the API token of this request."""
    broker = request.app.state.broker
    if broker.config.auth == "none" or broker.signin_codes is None:
        return error(400, "this broker has no authentication (auth: none): open the page's URL itself")
    token = _bearer_of(request)
    if token is None:
        return error(400, "send the API token as 'Authorization: Bearer <token>' to get a sign-in link")
    try:
        fields = await _form(request, ("next",)) if request.headers.get("content-type") else {}
    except ApiError as exc:
        return error(exc.code, exc.message)
    wanted = fields.get("next") or "/ui/"
    next_path = safe_next(wanted)
    if next_path is None:
        return error(400, f"next: must be a path under {', '.join(COOKIE_PATHS)}")
    issued = await broker.signin_codes.issue(caller(request).user, token)
    url = f"{ONCE_PATH}?{urlencode({'code': issued.code, 'next': next_path})}"
    return ok(
        {
            "url": url,
            "expiresAt": issued.expires_at.isoformat(),
            "expiresInSeconds": int(broker.signin_codes.lifetime.total_seconds()),
        },
        message="A one-time sign-in link",
    )


def _bearer_of(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@public
async def sign_in_once(request: Request) -> Response:
    """``GET /login/once?code=...&next=...``: sign this browser in with the code's token (once), then
    go to ``next``. The page goes on by itself (a refresh from this site's own page: with a plain
    redirect, a link clicked on another site's page would not carry the SameSite=Strict cookie on)."""
    broker = request.app.state.broker
    next_path = safe_next(request.query_params.get("next")) or "/ui/"
    code = request.query_params.get("code", "")
    if broker.config.auth == "none":
        return RedirectResponse(next_path, status_code=303)
    token = await broker.signin_codes.redeem(code) if broker.signin_codes is not None and code else None
    user = await user_of(broker.db, token) if token else None
    if token is None or user is None:
        return _page(
            "This sign-in link has expired or was already used: sign in with your API token, "
            "or ask for a new link (submarine-broker notebook open --sign-in-link).",
            next_path,
            status=400,
        )
    target = html.escape(next_path)
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0;url={target}">'
        "<title>Submarine Broker: signed in</title></head><body><h1>Submarine Broker</h1>"
        f'<p>Signed in as {html.escape(user)}. <a href="{target}">Continue</a></p></body></html>'
    )
    return _with_cookie(HTMLResponse(page, headers=_HEADERS), token, request)


@public
async def sign_out(request: Request) -> Response:
    """Forget the broker's cookie in this browser (the token itself stays valid: revoke it for that)."""
    if (why := cross_site(request.scope)) is not None:
        return error(403, why)
    answer = _page("Signed out.", None, form=False)
    for path in COOKIE_PATHS:
        answer.delete_cookie(
            TOKEN_COOKIE, path=path, httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
    return answer


routes = [
    Route(SIGN_IN_PATH, sign_in_form, methods=["GET"]),
    Route(ONCE_PATH, sign_in_once, methods=["GET"]),
    Route("/api/v1/login/once", issue_once, methods=["POST"]),
    Route(SIGN_IN_PATH, sign_in, methods=["POST"]),
    Route(SIGN_OUT_PATH, sign_out, methods=["POST"]),
]
