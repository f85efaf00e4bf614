"""Would a policy edit lock everyone out of the policy?

The policy is edited through the API by users it allows ``edit`` on ``policy`` in the global
namespace ``*``. An edit that takes that right from every user who had it leaves nobody able to
undo it, so the store refuses it; this module answers the question and names the lines to blame.

"To blame" is the smallest explanation that is easy to act on: starting from the policy before the
edit, the edit's changes are applied one at a time (in a stable order) and each is kept only while
someone can still edit the policy. The changes that could not be kept are the culprits: the edit
without them would leave an editor. Only changes that can touch the request matter (a ``p`` line
for ``edit`` or ``*`` on an object matching ``policy`` in a namespace matching ``*``, or a ``g``
line whose domain matches ``*``), so the search rebuilds the policy a handful of times at most.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from policies.authorizer import Authorizer
from policies.lines import PolicyLine

#: The request the policy API authorises an edit with: (namespace, object, action).
EDIT_NAMESPACE = "*"
EDIT_OBJECT = "policy"
EDIT_ACTION = "edit"
#: How many of the users who may edit now a refusal names.
MAX_NAMED = 5


@dataclass(frozen=True)
class Change:
    """One line the edit adds or removes."""

    line: PolicyLine
    added: bool

    def describe(self) -> str:
        return f"{'adding' if self.added else 'removing'} '{self.line.csv()}'"


@dataclass(frozen=True)
class Lockout:
    """An edit that leaves no user able to edit the policy: who could before, and which changes do it."""

    editors_before: tuple[str, ...]
    culprits: tuple[Change, ...]

    def message(self, users: str = "user") -> str:
        """Why the edit is refused; ``users`` says who counted (``user with an API token``)."""
        blamed = "; ".join(change.describe() for change in self.culprits)
        shown = ", ".join(self.editors_before[:MAX_NAMED])
        if len(self.editors_before) > MAX_NAMED:
            shown += f" and {len(self.editors_before) - MAX_NAMED} more"
        return (
            f"refused: this edit would leave no {users} able to edit the policy ({EDIT_ACTION} on "
            f"{EDIT_OBJECT} in namespace {EDIT_NAMESPACE}; now: {shown}). The lines that do it: {blamed}. "
            "The policy was not changed; keep them, or first give another user the right "
            "(for example 'g, <user>, admin, *')"
        )


def _key_match(value: str, pattern: str) -> bool:
    """Casbin's keyMatch as the model uses it: a ``*`` matches the rest of the value."""
    star = pattern.find("*")
    return value == pattern if star < 0 else value.startswith(pattern[:star])


def can_touch_edit(line: PolicyLine) -> bool:
    """Could this line change anyone's answer to (user, ``*``, ``policy``, ``edit``)?"""
    if line.ptype == "p":
        _sub, dom, obj, act, _eft = line.values
        return _key_match(EDIT_NAMESPACE, dom) and _key_match(EDIT_OBJECT, obj) and act in (EDIT_ACTION, "*")
    if line.ptype == "g":
        return _key_match(EDIT_NAMESPACE, line.values[2])
    return False  # p2: placement weights


def editors(authorizer: Authorizer, users: Iterable[str]) -> list[str]:
    """The ``users`` that ``authorizer`` lets edit the policy, in the order given."""
    return [u for u in users if authorizer.enforce(u, EDIT_NAMESPACE, EDIT_OBJECT, EDIT_ACTION)]


def _anyone(lines: Iterable[PolicyLine], users: Sequence[str]) -> bool:
    authorizer = Authorizer(lines)
    return any(authorizer.enforce(u, EDIT_NAMESPACE, EDIT_OBJECT, EDIT_ACTION) for u in users)


def find_lockout(
    before: Sequence[PolicyLine], after: Sequence[PolicyLine], users: Iterable[str]
) -> Lockout | None:
    """The lockout the edit from ``before`` to ``after`` would cause for ``users``, or None.

    An edit is only refused when it makes things worse: if no user could edit the policy before
    (a policy repaired step by step by the built-in admin of ``auth: none``), it is let through.
    """
    old, new = set(before), set(after)
    changes = [Change(line, False) for line in before if line not in new and can_touch_edit(line)]
    changes += [Change(line, True) for line in after if line not in old and can_touch_edit(line)]
    if not changes:  # most edits: team memberships, placement rules and weights
        return None
    changes.sort(key=lambda c: (c.line.csv(), c.added))
    known = sorted(set(users))
    had = editors(Authorizer(before), known)
    if not had or _anyone(after, known):
        return None
    state = dict.fromkeys(before)
    culprits: list[Change] = []
    for change in changes:
        trial = dict(state)
        if change.added:
            trial[change.line] = None
        else:
            trial.pop(change.line, None)
        if _anyone(trial, known):
            state = trial
        else:
            culprits.append(change)
    return Lockout(tuple(had), tuple(culprits or changes))
