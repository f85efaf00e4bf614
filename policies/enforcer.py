"""The reference decision: a plain Casbin enforcer over the package's model and the given lines.

Thin on purpose. The broker answers requests with :class:`policies.authorizer.Authorizer`, which
must agree with this enforcer on every request (the tests check that); this one is what "Casbin
says" means, and the baseline the placement benchmark compares against.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources

import casbin
from casbin.util import key_match

from policies.lines import PolicyLine

MODEL_FILE = "model.conf"


def model_text() -> str:
    """The Casbin model (``policies/model.conf``, shipped as package data)."""
    return resources.files("policies").joinpath(MODEL_FILE).read_text(encoding="utf-8")


def build_enforcer(lines: Iterable[PolicyLine]) -> casbin.Enforcer:
    """A Casbin enforcer holding ``lines`` (duplicates dropped), with keyMatch on g's domains."""
    enforcer = casbin.Enforcer(casbin.Enforcer.new_model(text=model_text()))
    # g lines may name a domain pattern (`*` = every namespace).
    enforcer.add_named_domain_matching_func("g", key_match)
    rules: dict[str, list[list[str]]] = {"p": [], "p2": [], "g": []}
    for line in dict.fromkeys(lines):  # Casbin refuses a whole batch that repeats a stored rule
        rules[line.ptype].append(list(line.values))
    if rules["p"]:
        enforcer.add_named_policies("p", rules["p"])
    if rules["p2"]:
        enforcer.add_named_policies("p2", rules["p2"])
    if rules["g"]:
        enforcer.add_named_grouping_policies("g", rules["g"])
    return enforcer
