"""May they? The caller and the policy in force, as the services and the API handlers ask it.

Who the caller is comes from the web layer (:func:`broker.api.access.guard_of` builds a guard
for a request); what a guard answers is the policy's alone. An object the caller may not read is
reported as not found.
"""

from __future__ import annotations

from typing import Any

from broker.errors import ApiError, NotFound
from broker.policy_store import BUILTIN_ADMIN
from policies.authorizer import ObjectScope

GLOBAL = "*"  # the domain of objects that belong to no team (policy, users)


class Forbidden(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(403, message)


class Guard:
    """The caller plus the policy in force: answers and enforces "may they?".

    ``unrestricted`` is the built-in admin of ``auth: none``: it may do everything whatever the
    policy says, so restarting a broker with ``auth: none`` (loopback only) is always a way back
    from a policy that locks everyone out. Where its work may be placed is still the policy's.
    """

    def __init__(self, user: str, authorizer: Any, *, unrestricted: bool = False) -> None:
        self.user = user
        self.authorizer = authorizer
        self.unrestricted = unrestricted

    @classmethod
    def for_caller(cls, user: str, authorizer: Any, *, auth: str) -> Guard:
        """The guard of an authenticated ``user`` on a broker whose ``auth`` mode is given."""
        return cls(user, authorizer, unrestricted=auth == "none" and user == BUILTIN_ADMIN)

    def may(self, namespace: str, obj: str, action: str) -> bool:
        return self.unrestricted or self.authorizer.enforce(self.user, namespace, obj, action)

    def scope(self, namespace: str, kind: str, action: str = "read") -> ObjectScope:
        """Which ``<kind>/<id>`` objects of ``namespace`` the caller may ``action``: what
        :meth:`may` answers for each, for all ids at once (a list asks its database with it)."""
        if self.unrestricted:
            return ObjectScope(allow_all=True)
        return self.authorizer.scope(self.user, namespace, action, f"{kind}/")

    def require(self, namespace: str, obj: str, action: str, *, hidden: bool = False, what: str = "") -> None:
        """Refuse unless allowed: 404 (``hidden``) when the caller may not even see the object, else 403."""
        if self.may(namespace, obj, action):
            return
        if hidden:
            raise NotFound(what or f"Not found: {obj}")
        raise Forbidden(f"{self.user} may not {action} {obj} in namespace {namespace}")

    def require_explained(self, namespace: str, obj: str, action: str) -> None:
        """403 unless allowed; when a deny line decided, the message names it (and the policy
        revision), so a user told "no" knows which rule to ask about."""
        if self.may(namespace, obj, action):
            return
        message = f"{self.user} may not {action} {obj} in namespace {namespace}"
        explain = getattr(self.authorizer, "explain", None)
        if explain is not None:
            found = explain(self.user, namespace, obj, action)
            if found.denied_by_line:
                revision = f" (policy revision {found.revision})" if found.revision is not None else ""
                message += f": denied by policy line '{found.matched[0].csv()}'{revision}"
            else:
                message += ": no policy line allows it"
        raise Forbidden(message)
