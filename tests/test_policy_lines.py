"""Policy lines: parsing, canonical text, and validation that names the line and the field."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from policies.lines import FIELDS, PolicyLine, PolicyLineError, parse_csv, parse_line, parse_lines

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "text",
    [
        "p, alice, vision, cluster/gpu-*, place, allow",
        "p, *, *, *, *, deny",
        "p, member, vis*, experiment/*, submit, allow",
        "p, admin, *, policy, edit, allow",
        "p, ops, *, user, admin, allow",
        "p, bob, nlp, notebook/nb-1, logs, allow",
        "p, bob, nlp, cluster/cpu-east/notebook, place, deny",
        "p, bob, nlp, cluster/gpu-*, place, allow",
        "p, bob, nlp, cluster/gpu-east/*, place, deny",
        "p, bob, nlp, *, place, deny",
        "p, bob, nlp, cluster/gpu-east, read, allow",
        "p, bob.smith@example.com, team_1, experiment/exp-0001, read, allow",
        "p2, vision, cluster/gpu-*, 3",
        "p2, *, *, 0.5",
        "p2, vision, cluster/gpu-east, 0",
        "g, alice, admin, vision",
        "g, alice, member, *",
        "g, gpu-user, member, ns-0*",
    ],
)
def test_valid_lines_round_trip(text: str) -> None:
    line = parse_line(text)
    assert line.csv() == text
    assert str(line) == text
    assert parse_line(line.csv()) == line
    assert line.ptype == text.split(",")[0]
    assert len(line.values) == len(FIELDS[line.ptype])


def test_whitespace_is_normalised() -> None:
    line = parse_line("  p,alice ,  vision,cluster/gpu-*,place,   allow  ")
    assert line == parse_line("p, alice, vision, cluster/gpu-*, place, allow")
    assert line.csv() == "p, alice, vision, cluster/gpu-*, place, allow"
    assert line.values == ("alice", "vision", "cluster/gpu-*", "place", "allow")
    assert PolicyLine("g", (" alice", "member ", "vision")) == parse_line("g, alice, member, vision")
    assert hash(PolicyLine(" g", ["alice", "member", "vision"])) == hash(parse_line("g,alice,member,vision"))


def test_fields_by_name() -> None:
    assert parse_line("p, alice, vision, policy, edit, deny").fields == {
        "sub": "alice",
        "dom": "vision",
        "obj": "policy",
        "act": "edit",
        "eft": "deny",
    }
    assert parse_line("p2, vision, cluster/a, 2").fields == {
        "dom": "vision",
        "obj": "cluster/a",
        "weight": "2",
    }
    assert parse_line("g, alice, member, vision").fields == {
        "user": "alice",
        "role": "member",
        "dom": "vision",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the line is empty"),
        ("x, alice, vision", "unknown line type 'x' (known: p, p2, g)"),
        ("P, alice, vision, policy, edit, allow", "unknown line type 'P'"),
        (
            "p, alice, vision, policy, edit",
            "p lines have 5 fields after the type (sub, dom, obj, act, eft); got 4",
        ),
        ("p, a, v, policy, edit, allow, extra", "got 6"),
        ("g, alice, member", "g lines have 3 fields after the type (user, role, dom); got 2"),
        ("p2, vision, cluster/a", "p2 lines have 3 fields after the type (dom, obj, weight); got 2"),
        ("p, alice, , policy, edit, allow", "field 2 (dom) is empty"),
        ("p, alice, vision, policy, edit,", "field 5 (eft) is empty"),
        ("p, alice, vision, policy, reed, allow", "field 4 (act) 'reed': unknown action"),
        ("p, alice, vision, policy, sub*, allow", "field 4 (act) 'sub*': unknown action"),
        (
            "p, alice, vision, experimnt/*, read, allow",
            "field 3 (obj) 'experimnt/*': unknown object kind 'experimnt'",
        ),
        ("p, alice, vision, exp*, read, allow", "unknown object kind 'exp*'"),
        ("p, alice, vision, policy, edit, maybe", "field 5 (eft) 'maybe': the effect must be allow or deny"),
        ("p2, vision, cluster/a, -1", "field 3 (weight) '-1': the weight must be a number >= 0"),
        ("p2, vision, cluster/a, lots", "the weight must be a number >= 0"),
        ("p2, vision, cluster/a, nan", "the weight must be a number >= 0"),
        ("p2, vision, experiment/a, 2", "field 2 (obj) 'experiment/a': a weight applies to clusters"),
        ("p2, vision, cluster/a/experiment, 2", "a weight names a cluster (cluster/<name pattern>)"),
        ("p, al ice, vision, policy, edit, allow", "field 1 (sub) 'al ice' contains a space"),
        ("p, alice, vis\tion, policy, edit, allow", "field 2 (dom) 'vis\\tion' contains a control character"),
        ("p, alice, vision, cluster/a|b, read, allow", "field 3 (obj) 'cluster/a|b' contains '|'"),
        ('p, "alice, bob", vision, policy, edit, allow', "quotes are not allowed"),
        ("p, 'alice', vision, policy, edit, allow", "quotes are not allowed"),
        (
            "p, ali*, vision, policy, edit, allow",
            "field 1 (sub) 'ali*' must be a user, a role or * (everyone)",
        ),
        ("g, *, member, vision", "field 1 (user) '*' must be a user or role name, not a pattern"),
        ("g, alice, mem*, vision", "field 2 (role) 'mem*' must be a user or role name"),
        ("p, alice, vision, cluster/a/, read, allow", "'cluster/a/': empty path segment"),
        ("p, alice, vision, cluster//x, read, allow", "empty path segment"),
        (
            "p, a, v, cluster/a/experimnt, place, allow",
            "unknown workload kind 'experimnt' (known: experiment, notebook, serve)",
        ),
        (
            "p, a, v, cluster/a/experiment/x, place, allow",
            "cluster objects are cluster/<name> or cluster/<name>/<workload kind>",
        ),
        ("p, a, v, experiment/a/b, read, allow", "experiment objects are experiment/<id>"),
        ("p, a, v, user/a/b, read, allow", "user objects are user/<name>"),
        (
            "p, a, v, cluster/gpu-east, place, deny",
            "write cluster/gpu-east/* (any kind) or cluster/gpu-east/experiment",
        ),
        ("p, a, v, cluster, place, allow", "placement asks about cluster/<name>/<workload kind>"),
        ("p, a, v, experiment/*, place, allow", "field 3 (obj) 'experiment/*': place applies to clusters"),
    ],
)
def test_invalid_lines_say_what_and_where(text: str, expected: str) -> None:
    with pytest.raises(PolicyLineError) as caught:
        parse_line(text)
    assert expected in str(caught.value)
    assert caught.value.reason in str(caught.value)
    assert caught.value.text == text
    assert caught.value.index is None


@pytest.mark.parametrize(
    "text",
    [
        "p, a, v, cluster/*/experiment, place, allow",
        "p, a, v, cluster/gpu-*/x, place, allow",
        "p, a, v*x, *, read, allow",
    ],
)
def test_text_after_a_star_is_refused_because_it_would_be_ignored(text: str) -> None:
    # keyMatch ignores what follows the first *: such a line would not mean what it says.
    with pytest.raises(PolicyLineError, match="text after '\\*' would be ignored"):
        parse_line(text)


def test_parse_lines_names_the_position_of_the_first_bad_line() -> None:
    with pytest.raises(PolicyLineError) as caught:
        parse_lines(["g, alice, member, vision", "p, bob, vision, policy, edit, allow", "p, bob, vision"])
    assert caught.value.index == 2
    assert str(caught.value).startswith("line 3 'p, bob, vision': p lines have 5 fields")


def test_parse_lines_refuses_a_non_string() -> None:
    with pytest.raises(PolicyLineError, match="must be a string"):
        parse_lines(["g, alice, member, vision", 42])  # type: ignore[list-item]


def test_parse_lines_keeps_order() -> None:
    texts = ["g, b, member, v", "p, a, v, policy, read, allow", "p2, v, cluster/x, 1"]
    assert [line.csv() for line in parse_lines(texts)] == texts


def test_parse_csv_skips_comments_and_blank_lines() -> None:
    text = "# a comment\n\np, alice, vision, policy, read, allow\n   # indented comment\r\ng, alice, member, vision\n\n"
    assert [line.csv() for line in parse_csv(text)] == [
        "p, alice, vision, policy, read, allow",
        "g, alice, member, vision",
    ]


def test_parse_csv_error_names_the_file_line_number() -> None:
    with pytest.raises(PolicyLineError) as caught:
        parse_csv("# header\n\ng, alice, member, vision\np, alice, vision, policy, fly, allow\n")
    assert caught.value.index == 3
    assert str(caught.value).startswith("line 4 'p, alice, vision, policy, fly, allow': field 4 (act)")


def test_default_policy_file_is_valid() -> None:
    lines = parse_csv((REPO / "broker" / "defaults" / "policy.csv").read_text())
    texts = {line.csv() for line in lines}
    assert "p, admin, *, *, *, allow" in texts
    assert "g, admin, admin, *" in texts
    assert "p, *, *, cluster/*, place, allow" in texts
    assert "p, *, *, cluster/*, read, allow" in texts
    for kind in ("experiment", "notebook"):
        for act in ("submit", "read", "logs", "kill", "delete"):
            assert f"p, member, *, {kind}/*, {act}, allow" in texts
    for act in ("read", "write"):
        assert f"p, member, *, tracking/*, {act}, allow" in texts
    for act in ("read", "edit", "promote", "delete"):
        assert f"p, member, *, model/*, {act}, allow" in texts
    for act in ("read", "edit"):
        assert f"p, *, *, environment/*, {act}, allow" in texts
    for act in ("read", "edit", "delete"):
        assert f"p, member, *, template/*, {act}, allow" in texts
    for act in ("submit", "read", "logs", "kill", "delete", "invoke"):
        assert f"p, member, *, serve/*, {act}, allow" in texts
    assert len(texts) == len(lines) == 31


def test_model_is_package_data() -> None:
    text = resources.files("policies").joinpath("model.conf").read_text()
    assert "p = sub, dom, obj, act, eft" in text
    assert "p2 = dom, obj, weight" in text
    assert "g = _, _, _" in text
