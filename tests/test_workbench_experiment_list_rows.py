"""The experiments list page against the REST API, in process: the same rows for every caller
under a policy mixing team lines, single-experiment grants, id patterns and denies; filters and
paging that walk the same list; row actions that need the form's CSRF token and the same
permissions; ``auth: none`` shows everything to the built-in admin."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest

from broker.accounts import add_user, create_token
from broker.guard import Guard
from broker.state import Status
from broker.web.pages import experiment_list
from broker.workloads.listing import Filters
from tests.conftest import throwaway_pg_database
from tests.inprocess import InProcessBroker, scripted_clusters
from tests.support import python_spec

PEOPLE = {"alice": (["vision"], False), "bob": (["nlp"], False), "carol": ([], False), "root": ([], True)}


class Site:
    """An in-process broker (auth: token), its users' tokens and the experiments submitted."""

    def __init__(self, broker: InProcessBroker, tokens: dict[str, str]) -> None:
        self.broker = broker
        self.tokens = tokens
        self.ids: dict[str, list[str]] = {}

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}", "Accept": "text/html"}

    def api_ids(self, user: str, **query: str) -> list[str]:
        found = self.broker.result("GET", "/experiment", params=query, headers=self.headers(user))
        return [e["experimentId"] for e in found]

    def page(self, user: str, query: str = "") -> str:
        answer = self.broker.run(
            self.broker.client.get(f"http://broker/ui/experiments{query}", headers=self.headers(user))
        )
        assert answer.status_code == 200, answer.text
        return answer.text

    def page_ids(self, user: str, query: str = "") -> list[str]:
        return re.findall(r'<tr data-id="([^"]+)"', self.page(user, query))

    def guard(self, user: str) -> Guard:
        return Guard(user, self.broker.context.policy.authorizer)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The same site on SQLite and on PostgreSQL (the list's SQL must mean the same on both)."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(throwaway_pg_database()) if request.param == "postgresql" else None
        yield from _site(tmp_path_factory.mktemp("explist"), url)


def _site(root: Path, database_url: str | None) -> Iterator[Site]:
    broker = InProcessBroker(
        root, database_url=database_url, auth="token", **scripted_clusters("east", "west")
    )
    db = broker.context.db
    tokens = {}
    for name, (teams, admin) in PEOPLE.items():
        db.call(lambda s, n=name, t=teams, a=admin: add_user(s, n, teams=t, admin=a, author="test"))
        tokens[name] = db.call(lambda s, n=name: create_token(s, n)).token
    broker.run(broker.context.policy.refresh())
    found = Site(broker, tokens)
    # Root submits in three namespaces; alice and bob in their teams'.
    for user, namespace, count in (
        ("root", "vision", 5),
        ("root", "nlp", 4),
        ("root", "speech", 4),
        ("alice", None, 3),
        ("bob", None, 2),
    ):
        for i in range(count):
            meta = {"namespace": namespace} if namespace else {}
            spec = python_spec("print(1)", name=f"{user}-{namespace or 'home'}-{i}", **meta)
            created = broker.result("POST", "/experiment", json=spec, headers=found.headers(user))
            found.ids.setdefault(namespace or user, []).append(created["experimentId"])
    yield found
    broker.close()


def test_the_page_shows_what_the_api_lists_under_a_mixed_policy(site: Site) -> None:
    vision, nlp, speech = site.ids["vision"], site.ids["nlp"], site.ids["speech"]
    # ids share a stamp: a prefix of the first nlp id up to its counter's last digit selects it and
    # its neighbours of the same tens.
    prefix = nlp[0][:-1]
    lines = [
        f"p, carol, vision, experiment/{vision[1]}, read, allow",  # one experiment
        f"p, carol, nlp, experiment/{prefix}*, read, allow",  # an id pattern
        "p, carol, speech, experiment/*, read, allow",  # a whole namespace...
        f"p, carol, speech, experiment/{speech[2]}, read, deny",  # ...but one
        f"p, alice, vision, experiment/{vision[0]}, *, deny",  # a team member denied one of the team's
        "p, bob, speech, *, read, allow",  # a pattern ending before the kind
        f"p, bob, speech, experiment/{speech[0][:-1].upper()}*, read, deny",  # case matters: matches nothing
        "p, bob, nlp, experiment/_*, read, deny",  # a plain character here, not LIKE's wildcard
    ]
    site.broker.result("POST", "/policy", json={"lines": lines}, headers=site.headers("root"))
    seen = {}
    for user in PEOPLE:
        api = site.api_ids(user)
        assert site.page_ids(user) == api, user
        seen[user] = set(api)
    assert seen["root"] == {i for ids in site.ids.values() for i in ids}
    assert seen["carol"] == {vision[1], *(i for i in nlp if i.startswith(prefix)), *speech} - {speech[2]}
    assert vision[0] not in seen["alice"] and set(vision[1:]) | set(site.ids["alice"]) <= seen["alice"]
    assert set(speech) <= seen["bob"] and not seen["bob"] & {*vision, *site.ids["alice"]}
    # Another team's experiments never appear: not alice's for bob, not bob's for alice.
    assert not seen["alice"] & set(site.ids["bob"]) and not seen["bob"] & set(site.ids["alice"])
    assert "alice-home-0" not in site.page("bob") and "bob-home-0" in site.page("bob")


def test_filters_and_paging_walk_the_api_list(site: Site) -> None:
    everything = site.api_ids("root")
    assert site.page_ids("root", "?namespace=nlp") == site.api_ids("root", namespace="nlp")
    assert site.page_ids("root", "?status=accepted") == site.api_ids("root", status="Accepted")
    assert site.page_ids("root", "?status=Running") == [] and "No experiment matches" in site.page(
        "root", "?status=Running"
    )
    assert site.page_ids("root", "?owner=alice") == site.ids["alice"][::-1]
    assert site.page_ids("root", "?q=BOB-HOME") == site.ids["bob"][::-1]  # any case, part of the name
    some = site.ids["speech"][1]
    assert site.page_ids("root", f"?q={some[-6:]}") == [i for i in everything if some[-6:] in i]
    assert site.page_ids("root", "?cluster=east") == []  # nothing was dispatched yet
    # Paging three at a time, older then newer again, gives the API's order without gaps or repeats.
    service = site.broker.context.experiments
    walked, before, pages = [], None, []
    while True:
        page = site.broker.run(service.browse(site.guard("root"), Filters(), size=3, before=before))
        walked += [r.id for r in page.rows]
        pages.append(page)
        if page.older is None:
            break
        before = page.older
    assert walked == everything
    back = site.broker.run(
        service.browse(site.guard("root"), Filters(), size=3, after=pages[-2].rows[0].cursor)
    )
    assert [r.id for r in back.rows] == [r.id for r in pages[-3].rows]


def _let_bob_read_speech(site: Site) -> None:
    """The line of the mixed-policy test that gives bob a second namespace, whichever test runs first
    on this site (pytest-xdist spreads them over workers, each with its own site)."""
    line = "p, bob, speech, *, read, allow"
    current = site.broker.result("GET", "/policy", headers=site.headers("root"))
    if line not in str(current):
        site.broker.result("POST", "/policy", json={"lines": [line]}, headers=site.headers("root"))


def test_the_pages_links_walk_the_list(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(experiment_list, "PAGE_SIZE", 4)
    _let_bob_read_speech(site)
    # root reads everything (one walk); bob reads two namespaces (two walks merged).
    for user, first in (("root", "?status=Accepted"), ("bob", "?q=-")):
        everything = site.api_ids(user, status="Accepted")
        assert len(everything) > 8, user  # three pages at least
        pages, query = [], first
        while True:
            html = site.page(user, query)
            pages.append((query, re.findall(r'<tr data-id="([^"]+)"', html)))
            older = re.search(r'<a href="/ui/experiments(\?[^"]+)" rel="next">', html)
            if older is None:
                break
            query = unescape(older.group(1))
            assert first[1:] in query  # the filters stay
        assert [i for _, ids in pages for i in ids] == everything, user
        html = site.page(user, pages[-1][0])
        newer = re.search(r'<a href="/ui/experiments(\?[^"]+)" rel="prev">', html)
        assert newer is not None and "Newest" in html
        assert re.findall(r'<tr data-id="([^"]+)"', site.page(user, unescape(newer.group(1)))) == pages[-2][1]
        assert 'rel="prev"' not in site.page(user, first) and "Newest" not in site.page(user, first)


def test_bad_filters_are_400_pages_naming_the_field(site: Site) -> None:
    for query, field in (
        ("?status=sleeping", "status"),
        ("?before=yesterday", "before"),
        (f"?q={'x' * 200}", "q"),
    ):
        answer = site.broker.run(
            site.broker.client.get(f"http://broker/ui/experiments{query}", headers=site.headers("root"))
        )
        assert answer.status_code == 400 and f"{field}:" in unescape(answer.text), query
        assert "<html" in answer.text


def _csrf(html: str) -> str:
    found = re.search(r'data-csrf="([0-9a-f]+)"', html)
    assert found is not None
    return found.group(1)


def _post(site: Site, user: str, form: dict[str, str]) -> tuple[int, str, str]:
    answer = site.broker.run(
        site.broker.client.post(
            "http://broker/ui/experiments", data=form, headers=site.headers(user), follow_redirects=False
        )
    )
    return answer.status_code, answer.headers.get("location", ""), answer.text


def test_row_actions_need_the_csrf_token_and_the_permission(site: Site) -> None:
    mine = site.ids["alice"][0]
    token = _csrf(site.page("alice"))
    # Without the form's token, or with another user's: refused, nothing changes.
    for form in (
        {"id": mine, "action": "stop"},
        {"id": mine, "action": "delete", "csrf": _csrf(site.page("bob"))},
    ):
        code, _, text = _post(site, "alice", form)
        assert code == 403 and "CSRF token missing or wrong" in text
    assert (
        site.broker.result("GET", f"/experiment/{mine}", headers=site.headers("alice"))["status"]
        == "Accepted"
    )
    # Bob cannot act on alice's experiment: it is not found for him.
    code, _, text = _post(site, "bob", {"id": mine, "action": "stop", "csrf": _csrf(site.page("bob"))})
    assert code == 404 and f"Not found experiment: {mine}" in text
    # Alice stops it, then deletes it, and comes back to the list she was on.
    back = "/ui/experiments?owner=alice"
    code, where, _ = _post(site, "alice", {"id": mine, "action": "stop", "csrf": token, "back": back})
    assert code == 303 and where == back
    stopped = site.broker.result("GET", f"/experiment/{mine}", headers=site.headers("alice"))
    assert stopped["status"] == "Failed" and stopped["failureCategory"] == "killed"
    code, where, _ = _post(
        site, "alice", {"id": mine, "action": "delete", "csrf": token, "back": "https://evil/"}
    )
    assert code == 303 and where == "/ui/experiments"
    assert mine not in site.page_ids("alice") and mine in site.page_ids("alice", "?status=Deleted")
    code, _, text = _post(site, "alice", {"id": mine, "action": "stop", "csrf": token})
    assert code == 404


def test_auth_none_shows_everything_to_the_built_in_admin(tmp_path: Path) -> None:
    broker = InProcessBroker(tmp_path, **scripted_clusters("east"))
    try:
        made = []
        for namespace in ("vision", "nlp"):
            spec = python_spec("print(1)", name=f"open-{namespace}", namespace=namespace)
            made.append(broker.result("POST", "/experiment", json=spec)["experimentId"])
        answer = broker.run(
            broker.client.get("http://broker/ui/experiments", headers={"Accept": "text/html"})
        )
        assert answer.status_code == 200
        assert re.findall(r'<tr data-id="([^"]+)"', answer.text) == made[::-1]
        assert "Sign out" not in answer.text
        guard = Guard.for_caller("admin", broker.context.policy.authorizer, auth="none")
        assert broker.run(
            broker.context.experiments.browse(guard, Filters(status=Status.ACCEPTED), size=5)
        ).rows
    finally:
        broker.close()
