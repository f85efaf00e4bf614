"""CSRF tokens of the workbench's forms: an HMAC of the signed-in credential, under a key derived
from the broker's secret key.

A form that changes something carries ``csrf`` (a hidden field, or the ``X-CSRF-Token`` header of
a script's request); :func:`require` refuses (403) a state-changing request without the token of
the same browser's credential. The token is bound to the cookie's API token (with ``auth: none``,
to the user), so a token read from one browser's page is worth nothing in another's. This is on top
of the middleware's refusal of cross-site requests (``Origin``): either alone stops a forged form.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from broker.api.access import TOKEN_COOKIE
from broker.guard import Forbidden
from broker.secret_key import SecretBox

FIELD = "csrf"
HEADER = "x-csrf-token"


class CsrfTokens:
    """Issues and checks the workbench's CSRF tokens."""

    def __init__(self, box: SecretBox) -> None:
        self._key = box.derive("workbench csrf")

    def _binding(self, request: Request, user: str) -> str:
        cookie = request.cookies.get(TOKEN_COOKIE) or ""
        return f"{user}\0{hashlib.sha256(cookie.encode()).hexdigest()}"

    def issue(self, request: Request, user: str) -> str:
        """The token ``request``'s browser puts in its forms."""
        return hmac.new(self._key, self._binding(request, user).encode(), hashlib.sha256).hexdigest()

    def require(self, request: Request, user: str, sent: str | None) -> None:
        """403 unless ``sent`` is this browser's token."""
        if not sent or not hmac.compare_digest(sent, self.issue(request, user)):
            raise Forbidden("CSRF token missing or wrong: reload the page and submit the form again")
