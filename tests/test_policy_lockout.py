"""policies.lockout: which edits leave nobody able to edit the policy, and which lines are to blame."""

from __future__ import annotations

from pathlib import Path

from policies.lines import PolicyLine, parse_csv, parse_lines
from policies.lockout import can_touch_edit, find_lockout

DEFAULT = parse_csv((Path(__file__).resolve().parent.parent / "config" / "policy.csv").read_text())
ROOT_ADMIN = "g, root, admin, *"
ADMIN_ALLOW = "p, admin, *, *, *, allow"
BUILTIN_ROLE = "g, admin, admin, *"


def policy(*extra: str, without: tuple[str, ...] = ()) -> list[PolicyLine]:
    lines = [line for line in DEFAULT if line.csv() not in without]
    return lines + parse_lines(extra)


def blamed(found) -> list[str]:
    return [f"{'+' if c.added else '-'} {c.line.csv()}" for c in found.culprits]


def test_the_issue_edit_is_refused_naming_the_removed_allow() -> None:
    before = policy(ROOT_ADMIN, "g, alice, member, vision")
    after = [line for line in before if line.csv() not in (ROOT_ADMIN, ADMIN_ALLOW)]
    found = find_lockout(before, after, ["admin", "alice", "root"])
    assert found is not None
    assert found.editors_before == ("admin", "root")
    # Without the allow line nobody has the right; dropping root's role alone would leave admin.
    assert blamed(found) == [f"- {ADMIN_ALLOW}"]
    message = found.message()
    assert message.startswith("refused: this edit would leave no user able to edit the policy")
    assert f"removing '{ADMIN_ALLOW}'" in message and "now: admin, root" in message
    assert "The policy was not changed" in message


def test_when_only_root_can_call_both_removed_lines_are_named() -> None:
    """Under auth: token the built-in admin without a token does not count: root is the last editor."""
    before = policy(ROOT_ADMIN)
    after = [line for line in before if line.csv() not in (ROOT_ADMIN, ADMIN_ALLOW)]
    found = find_lockout(before, after, ["root", "alice"])
    assert found is not None and blamed(found) == [f"- {ROOT_ADMIN}", f"- {ADMIN_ALLOW}"]
    assert "no user with an API token able" in found.message("user with an API token")

    alone = [line for line in before if line.csv() != ROOT_ADMIN]
    found = find_lockout(before, alone, ["root", "alice"])
    assert found is not None and blamed(found) == [f"- {ROOT_ADMIN}"]
    # The same edit is fine while the built-in admin can still call the broker.
    assert find_lockout(before, alone, ["admin", "root", "alice"]) is None


def test_an_added_deny_is_named() -> None:
    deny = "p, *, *, policy, *, deny"
    before = policy(ROOT_ADMIN)
    found = find_lockout(
        before, before + parse_lines([deny, "p, alice, vision, experiment/*, read, allow"]), ["root"]
    )
    assert found is not None and blamed(found) == [f"+ {deny}"]
    # A deny on something else, or for one of two editors, is no lockout.
    assert find_lockout(before, before + parse_lines(["p, *, *, policy, read, deny"]), ["root"]) is None
    assert (
        find_lockout(before, before + parse_lines(["p, root, *, policy, edit, deny"]), ["admin", "root"])
        is None
    )


def test_a_role_chain_is_followed() -> None:
    before = policy("g, root, ops, *", "g, ops, admin, *", without=(BUILTIN_ROLE,))
    after = [line for line in before if line.csv() != "g, ops, admin, *"]
    found = find_lockout(before, after, ["root"])
    assert found is not None and blamed(found) == ["- g, ops, admin, *"]
    # The user named admin matches the role's own p line, with or without its g line.
    assert find_lockout(before, after, ["admin", "root"]) is None
    # Handing the right to someone else in the same edit is fine...
    handed = after + parse_lines(["p, carol, *, policy, edit, allow"])
    assert find_lockout(before, handed, ["root", "carol"]) is None
    # ... but not to someone who cannot call the broker.
    assert find_lockout(before, handed, ["root"]) is not None


def test_an_edit_is_not_refused_when_nobody_could_edit_before() -> None:
    """The built-in admin of auth: none repairs a broken policy step by step."""
    broken = policy(without=(ADMIN_ALLOW,))
    assert (
        find_lockout(broken, broken + parse_lines(["p, member, *, notebook/*, read, deny"]), ["admin"])
        is None
    )


def test_lines_that_cannot_touch_the_edit_right() -> None:
    touching = [
        "p, admin, *, *, *, allow",
        "p, *, *, policy, edit, deny",
        "g, root, admin, *",
        "p, x, *, policy, *, allow",
    ]
    other = [
        "p, admin, vision, *, *, allow",  # a team namespace, not *
        "p, admin, *, experiment/*, *, allow",
        "p, admin, *, policy, read, allow",
        "g, alice, admin, vision",
        "p2, *, cluster/*, 3",
    ]
    assert [can_touch_edit(line) for line in parse_lines(touching)] == [True] * len(touching)
    assert [can_touch_edit(line) for line in parse_lines(other)] == [False] * len(other)


def test_many_editors_are_summarised() -> None:
    users = [f"u{i}" for i in range(8)]
    before = policy(*(f"g, {u}, admin, *" for u in users), without=(BUILTIN_ROLE,))
    after = [line for line in before if line.csv() != ADMIN_ALLOW]
    found = find_lockout(before, after, users)
    assert found is not None and "now: u0, u1, u2, u3, u4 and 3 more" in found.message()
