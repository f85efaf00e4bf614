"""Randomised: the Authorizer decides exactly like the Casbin enforcer, and explains faithfully.

Many small random policies (users, roles, role chains and cycles, namespace patterns in p and g
lines, object patterns, action wildcards, denies) and many random requests per policy; every
answer must equal Casbin's. The explanation is checked too: a deny decision names Casbin's own
deciding line first, and the matched lines are exactly those Casbin's matcher accepts.
"""

from __future__ import annotations

import random

import pytest
from casbin.util import key_match

from policies.authorizer import Authorizer
from policies.enforcer import build_enforcer
from policies.lines import ACTIONS, PolicyLine

USERS = ["alice", "bob", "carol"]
ROLES = ["admin", "member", "lead", "ops"]
DOMAIN_PATTERNS = ["vision", "nlp", "vis*", "v*", "*", "n*", "vision-*"]
OBJECT_PATTERNS = [
    "*",
    "experiment/*",
    "experiment/e1",
    "experiment/e*",
    "notebook/*",
    "cluster/*",
    "cluster/gpu-*",
    "cluster/g*",
    "cluster/gpu-east",
    "cluster/gpu-east/*",
    "cluster/gpu-east/experiment",
    "cluster/cpu/notebook",
    "policy",
    "user",
]
REQUEST_SUBJECTS = [*USERS, *ROLES, "*", "nobody", ""]
REQUEST_DOMAINS = ["vision", "nlp", "vis", "v", "vision-2", "speech", "*", ""]
REQUEST_OBJECTS = [
    "experiment/e1",
    "experiment/e2",
    "experiment",
    "notebook/n1",
    "cluster/",
    "cluster/gpu-east",
    "cluster/gpu-east/experiment",
    "cluster/gpu-west/notebook",
    "cluster/cpu/notebook",
    "cluster/cpu/experiment",
    "policy",
    "user",
    "*",
    "",
]
REQUEST_ACTIONS = [*sorted(ACTIONS), "*", ""]
POLICIES = 250
REQUESTS = 60


def random_policy(rng: random.Random) -> list[PolicyLine]:
    texts = []
    for _ in range(rng.randint(0, 24)):
        sub = rng.choice([*USERS, *ROLES, "*"])
        act = rng.choice([*sorted(ACTIONS), "*"])
        eft = rng.choice(["allow", "allow", "deny"])
        texts.append(f"p, {sub}, {rng.choice(DOMAIN_PATTERNS)}, {rng.choice(OBJECT_PATTERNS)}, {act}, {eft}")
    for _ in range(rng.randint(0, 12)):  # users and roles may get roles: chains and cycles
        texts.append(f"g, {rng.choice(USERS + ROLES)}, {rng.choice(ROLES)}, {rng.choice(DOMAIN_PATTERNS)}")
    for _ in range(rng.randint(0, 3)):
        texts.append(f"p2, {rng.choice(DOMAIN_PATTERNS)}, cluster/{rng.choice(['*', 'gpu-*', 'cpu'])}, 2")
    rng.shuffle(texts)
    # Built directly, not parsed: the Authorizer must agree with Casbin on any lines, including
    # place lines that validation would refuse because they can never match a placement.
    return [PolicyLine(ptype, tuple(values)) for ptype, *values in (text.split(",") for text in texts)]


def expand(rng: random.Random, pattern: str, tails: list[str]) -> str:
    """A value the pattern may match: the text before the * plus a random tail."""
    star = pattern.find("*")
    return pattern if star < 0 else pattern[:star] + rng.choice(tails)


def random_request(rng: random.Random, lines: list[PolicyLine]) -> tuple[str, str, str, str]:
    """Half the time anything; otherwise aimed at a random p line, so matches are frequent."""
    p_lines = [line for line in lines if line.ptype == "p"]
    if not p_lines or rng.random() < 0.5:
        return (
            rng.choice(REQUEST_SUBJECTS),
            rng.choice(REQUEST_DOMAINS),
            rng.choice(REQUEST_OBJECTS),
            rng.choice(REQUEST_ACTIONS),
        )
    sub, dom, obj, act, _ = rng.choice(p_lines).values
    return (
        rng.choice([*USERS, sub]) if sub != "*" else rng.choice(REQUEST_SUBJECTS),
        expand(rng, dom, ["", "ion", "lp", "-2", "x"]),
        expand(rng, obj, ["", "e1", "east", "east/experiment", "x/notebook"]),
        act if act != "*" and rng.random() < 0.8 else rng.choice(REQUEST_ACTIONS),
    )


def casbin_matches(enforcer: object, line: PolicyLine, sub: str, dom: str, obj: str, act: str) -> bool:
    """Casbin's matcher for one line, from Casbin's own role manager and keyMatch."""
    psub, pdom, pobj, pact, _ = line.values
    roles = enforcer.get_role_manager()  # type: ignore[attr-defined]
    return (
        (psub == "*" or roles.has_link(sub, psub, dom))
        and key_match(dom, pdom)
        and key_match(obj, pobj)
        and (act == pact or pact == "*")
    )


@pytest.mark.parametrize("block", range(5))
def test_random_policies_decide_like_casbin(block: int) -> None:
    checked = allowed = denied_by_line = 0
    for seed in range(block * POLICIES // 5, (block + 1) * POLICIES // 5):
        rng = random.Random(seed)
        lines = random_policy(rng)
        enforcer = build_enforcer(lines)
        authorizer = Authorizer(lines, seed)
        for _ in range(REQUESTS):
            request = random_request(rng, lines)
            expected, casbin_explain = enforcer.enforce_ex(*request)
            explanation = authorizer.explain(*request)
            assert explanation.allowed is expected, (seed, request, [line.csv() for line in lines])
            assert authorizer.enforce(*request) is expected
            checked += 1
            allowed += expected
            p_lines = [line for line in dict.fromkeys(lines) if line.ptype == "p"]
            matching = [line for line in p_lines if casbin_matches(enforcer, line, *request)]
            denies = [line for line in matching if line.values[4] == "deny"]
            assert list(explanation.matched) == (denies or matching), (seed, request)
            if denies:
                denied_by_line += 1
                assert list(explanation.matched[0].values) == casbin_explain
    # The random policies must exercise both answers and deny lines, or the test proves little.
    assert checked == POLICIES // 5 * REQUESTS
    assert allowed > checked // 10
    assert denied_by_line > checked // 20


SCOPE_IDS = ["e1", "e2", "e", "e1x", "x", "E1", "e%", "e_1", "experiment"]


def test_object_scopes_decide_like_casbin() -> None:
    """A scope (what a list turns into SQL) allows exactly the objects Casbin allows."""
    checked = allowed = partial = 0
    for seed in range(POLICIES // 2):
        rng = random.Random(10_000 + seed)
        lines = random_policy(rng)
        # Specific objects too, so scopes with exact and prefix patterns are common.
        for _ in range(rng.randint(0, 4)):
            obj = rng.choice(["experiment/e1", "experiment/e*", "experiment/e1*", "e*", "experiment", "ex*"])
            eft = rng.choice(["allow", "deny"])
            values = (rng.choice([*USERS, *ROLES, "*"]), rng.choice(DOMAIN_PATTERNS), obj, "read", eft)
            lines.insert(rng.randint(0, len(lines)), PolicyLine("p", values))
        enforcer = build_enforcer(lines)
        authorizer = Authorizer(lines, seed)
        for sub in [*USERS, "nobody"]:
            for dom in ["vision", "nlp", "vision-2", "speech"]:
                for act in ["read", "delete"]:
                    scope = authorizer.scope(sub, dom, act, "experiment/")
                    partial += not (scope.nothing or scope.everything)
                    for rest in SCOPE_IDS:
                        expected = enforcer.enforce(sub, dom, f"experiment/{rest}", act)
                        assert scope.allows(rest) is expected, (seed, sub, dom, act, rest, scope)
                        assert not (scope.nothing and expected) and not (scope.everything and not expected)
                        checked += 1
                        allowed += expected
    assert allowed > checked // 40 and partial > 50, (allowed, checked, partial)
