"""The fast path: the policy of one revision compiled into indexes, with its decisions cached.

Casbin's enforcer scans every policy line for every request (about 6 µs a line), so a placement
that asks about 100 clusters under 10,000 lines would take seconds. An :class:`Authorizer` gives
the same answers as the enforcer of :mod:`policies.enforcer` (the tests compare them on random
policies) but only looks at lines that could match:

* p lines are grouped by (subject, action); a group is split by namespace (exact names in a dict,
  ``*`` patterns by their prefix) the first time it is asked for;
* a user's roles in a namespace are resolved once (role chains and ``g`` domain patterns, up to
  Casbin's nine hops) and remembered;
* the lines that can apply to (user, namespace, action) are gathered once, split by object (exact
  objects in a dict, patterns by prefix) and remembered, so each object costs a lookup or two;
* finished decisions sit in an LRU cache.

An Authorizer is immutable: a new policy revision means a new Authorizer, so no cache can outlive
the policy it was computed from.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache, partial

from policies.lines import PolicyLine

#: Casbin's role manager follows at most this many g links from the user (max_hierarchy_level 10).
MAX_ROLE_HOPS = 9
DECISION_CACHE_SIZE = 1 << 16
MEMO_SIZE = 1 << 14


@dataclass(frozen=True)
class Explanation:
    """A decision and the lines that made it.

    ``matched`` holds, in policy order, the deny lines that matched when a deny decided, else the
    allow lines that matched; it is empty when no line matched (denied: nothing allows it).
    """

    allowed: bool
    matched: tuple[PolicyLine, ...]
    revision: int | None

    @property
    def denied_by_line(self) -> bool:
        """True when a deny line (rather than the absence of an allow line) refused the request."""
        return not self.allowed and bool(self.matched)


@dataclass(frozen=True)
class ObjectScope:
    """Which objects named ``<prefix><rest>`` one (user, namespace, action) is allowed, as the
    keyMatch patterns of the lines that can decide, with ``<prefix>`` taken off: ``rest`` is
    allowed when an allow pattern matches it and no deny pattern does. ``*_all`` is a pattern
    matching every ``rest``; ``*_exact`` are exact values; ``*_prefixes`` match what starts with
    them (never empty: that is ``*_all``). A database turns this into a ``WHERE`` clause.
    """

    allow_all: bool = False
    allow_exact: frozenset[str] = frozenset()
    allow_prefixes: frozenset[str] = frozenset()
    deny_all: bool = False
    deny_exact: frozenset[str] = frozenset()
    deny_prefixes: frozenset[str] = frozenset()

    @property
    def nothing(self) -> bool:
        """True when no ``rest`` can be allowed."""
        return self.deny_all or not (self.allow_all or self.allow_exact or self.allow_prefixes)

    @property
    def everything(self) -> bool:
        """True when every ``rest`` is allowed."""
        return self.allow_all and not (self.deny_all or self.deny_exact or self.deny_prefixes)

    def allows(self, rest: str) -> bool:
        """The decision for the object ``<prefix><rest>`` (what :meth:`Authorizer.enforce` says)."""

        def hit(every: bool, exact: frozenset[str], prefixes: frozenset[str]) -> bool:
            return every or rest in exact or any(rest.startswith(p) for p in prefixes)

        return hit(self.allow_all, self.allow_exact, self.allow_prefixes) and not hit(
            self.deny_all, self.deny_exact, self.deny_prefixes
        )


def _split(pattern: str) -> tuple[bool, str]:
    """keyMatch as (exact, text): an exact value, or the prefix before the first ``*``."""
    star = pattern.find("*")
    return (True, pattern) if star < 0 else (False, pattern[:star])


class _Rule:
    """One compiled p or p2 line."""

    __slots__ = ("position", "line", "dom_exact", "dom", "obj_exact", "obj", "deny", "weight")

    def __init__(self, position: int, line: PolicyLine, dom: str, obj: str) -> None:
        self.position = position
        self.line = line
        self.dom_exact, self.dom = _split(dom)
        self.obj_exact, self.obj = _split(obj)
        self.deny = line.ptype == "p" and line.values[4] == "deny"
        self.weight = float(line.values[2]) if line.ptype == "p2" else 0.0


class _Keyed:
    """Rules keyed by one keyMatch pattern field: exact values in a dict, patterns by prefix."""

    __slots__ = ("exact", "prefixes")

    def __init__(self, rules: Iterable[_Rule], field: str) -> None:
        self.exact: dict[str, list[_Rule]] = {}
        self.prefixes: dict[str, list[_Rule]] = {}
        for rule in rules:
            into = self.exact if getattr(rule, field + "_exact") else self.prefixes
            into.setdefault(getattr(rule, field), []).append(rule)

    def match(self, value: str) -> list[_Rule]:
        """Every rule whose pattern keyMatches ``value``."""
        found = list(self.exact.get(value, ()))
        if not self.prefixes:
            return found
        if len(self.prefixes) <= len(value) + 1:
            for prefix, rules in self.prefixes.items():
                if value.startswith(prefix):
                    found.extend(rules)
        else:  # many patterns: look up each prefix of the value instead
            get = self.prefixes.get
            for end in range(len(value) + 1):
                if more := get(value[:end]):
                    found.extend(more)
        return found


class Authorizer:
    """Answers ``(user, namespace, object, action)`` like Casbin would, for one policy revision."""

    def __init__(self, lines: Iterable[PolicyLine], revision: int | None = None) -> None:
        self.revision = revision
        self.lines: list[PolicyLine] = list(dict.fromkeys(lines))
        self._by_sub_act: dict[tuple[str, str], list[_Rule]] = {}
        self._roles_of: dict[str, list[tuple[str, bool, str]]] = {}
        weights: list[_Rule] = []
        has_p = False
        for position, line in enumerate(self.lines):
            values = line.values
            if line.ptype == "p":
                has_p = True
                rule = _Rule(position, line, values[1], values[2])
                self._by_sub_act.setdefault((values[0], values[3]), []).append(rule)
            elif line.ptype == "g":
                self._roles_of.setdefault(values[0], []).append((values[1], *_split(values[2])))
            elif line.ptype == "p2":
                weights.append(_Rule(position, line, values[0], values[1]))
        self._has_p = has_p
        self._weights = _Keyed(weights, "dom")
        self._by_namespace: dict[tuple[str, str], _Keyed] = {}
        # Per-instance caches: they die with the instance, i.e. with the revision. They reach the
        # instance through a weak proxy, so no reference cycle keeps an old revision alive.
        me = weakref.proxy(self)
        cls = type(self)
        self._decisions = lru_cache(maxsize=DECISION_CACHE_SIZE)(partial(cls._explain, me))
        self._role_sets = lru_cache(maxsize=MEMO_SIZE)(partial(cls._roles, me))
        self._candidates = lru_cache(maxsize=MEMO_SIZE)(partial(cls._candidates_uncached, me))
        self._weights_in = lru_cache(maxsize=MEMO_SIZE)(partial(cls._weights_in_uncached, me))
        self._weight_cache = lru_cache(maxsize=DECISION_CACHE_SIZE)(partial(cls._weight, me))

    # -- the public questions ------------------------------------------------------------------

    def enforce(self, sub: str, dom: str, obj: str, act: str) -> bool:
        """True when ``sub`` may do ``act`` to ``obj`` in namespace ``dom``."""
        return self.explain(sub, dom, obj, act).allowed

    def explain(self, sub: str, dom: str, obj: str, act: str) -> Explanation:
        """The decision with the lines that made it (cached)."""
        return self._decisions(sub, dom, obj, act)

    def may_place(self, user: str, namespace: str, cluster: str, kind: str) -> Explanation:
        """May ``user`` place ``kind`` work (experiment, notebook) for ``namespace`` on ``cluster``?"""
        return self.explain(user, namespace, f"cluster/{cluster}/{kind}", "place")

    def scope(self, sub: str, dom: str, act: str, prefix: str) -> ObjectScope:
        """Which objects ``<prefix><rest>`` (``experiment/<id>``) ``sub`` may ``act`` in ``dom``:
        the same decisions as :meth:`enforce`, for every ``rest`` at once (see :class:`ObjectScope`),
        so a list can ask its database for the allowed rows instead of checking each row."""
        if not self._has_p:
            return ObjectScope()  # only an all-empty request would be allowed; no object is empty
        found: dict[bool, tuple[list[bool], set[str], set[str]]] = {
            deny: ([False], set(), set()) for deny in (False, True)
        }
        candidates = self._candidates(sub, dom, act)
        for rules in (*candidates.exact.values(), *candidates.prefixes.values()):
            for rule in rules:
                every, exact, prefixes = found[rule.deny]
                if rule.obj_exact:
                    if rule.obj.startswith(prefix) and len(rule.obj) > len(prefix):
                        exact.add(rule.obj[len(prefix) :])
                elif prefix.startswith(rule.obj):
                    every[0] = True  # the pattern's text ends within the prefix: every object
                elif rule.obj.startswith(prefix):
                    prefixes.add(rule.obj[len(prefix) :])
        (allow_all,), allow_exact, allow_prefixes = found[False]
        (deny_all,), deny_exact, deny_prefixes = found[True]
        return ObjectScope(
            allow_all,
            frozenset(allow_exact),
            frozenset(allow_prefixes),
            deny_all,
            frozenset(deny_exact),
            frozenset(deny_prefixes),
        )

    def weight(self, dom: str, cluster: str) -> float | None:
        """The placement weight of ``cluster`` for namespace ``dom`` from p2 lines, or None.

        Of the p2 lines matching ``(dom, cluster/<cluster>)`` the most specific object pattern wins
        (an exact name over a pattern, then the longer text before the ``*``), then the most
        specific namespace pattern, then the first line in policy order.
        """
        return self._weight_cache(dom, cluster)

    def roles(self, user: str, dom: str) -> frozenset[str]:
        """``user`` and every role it has in ``dom``, through role chains (cached)."""
        return self._role_sets(user, dom)

    def cache_info(self) -> object:
        """Hits and misses of the decision cache."""
        return self._decisions.cache_info()

    # -- the machinery -------------------------------------------------------------------------

    def _roles(self, user: str, dom: str) -> frozenset[str]:
        seen = {user}
        frontier = [user]
        for _ in range(MAX_ROLE_HOPS):
            reached = []
            for name in frontier:
                for role, exact, text in self._roles_of.get(name, ()):
                    if role not in seen and (dom == text if exact else dom.startswith(text)):
                        seen.add(role)
                        reached.append(role)
            if not reached:
                break
            frontier = reached
        return frozenset(seen)

    def _namespace_index(self, sub: str, act: str) -> _Keyed | None:
        key = (sub, act)
        index = self._by_namespace.get(key)
        if index is None:
            rules = self._by_sub_act.get(key)
            if rules is None:
                return None
            index = self._by_namespace[key] = _Keyed(rules, "dom")
        return index

    def _candidates_uncached(self, sub: str, dom: str, act: str) -> _Keyed:
        """The p lines that can match (sub, dom, *, act), keyed by object pattern."""
        actions = (act,) if act == "*" else (act, "*")
        rules: list[_Rule] = []
        for subject in self.roles(sub, dom) | {"*"}:
            for action in actions:
                index = self._namespace_index(subject, action)
                if index is not None:
                    rules.extend(index.match(dom))
        return _Keyed(rules, "obj")

    def _explain(self, sub: str, dom: str, obj: str, act: str) -> Explanation:
        if not self._has_p:
            # Casbin evaluates the matcher once against an all-empty p line when there is none.
            allowed = dom == obj == act == "" and "" in self.roles(sub, dom)
            return Explanation(allowed, (), self.revision)
        matched = self._candidates(sub, dom, act).match(obj)
        if not matched:
            return Explanation(False, (), self.revision)
        denies = [rule for rule in matched if rule.deny]
        deciding = sorted(denies or matched, key=lambda rule: rule.position)
        return Explanation(not denies, tuple(rule.line for rule in deciding), self.revision)

    def _weights_in_uncached(self, dom: str) -> _Keyed:
        return _Keyed(self._weights.match(dom), "obj")

    def _weight(self, dom: str, cluster: str) -> float | None:
        matched = self._weights_in(dom).match(f"cluster/{cluster}")
        if not matched:
            return None
        best = min(
            matched,
            key=lambda r: (not r.obj_exact, -len(r.obj), not r.dom_exact, -len(r.dom), r.position),
        )
        return best.weight
