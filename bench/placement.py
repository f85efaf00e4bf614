"""Placement speed under a large policy: the compiled Authorizer against Casbin's plain enforcer.

Builds, from a fixed seed, 100 clusters (GPU and CPU kinds, sites, tiers, varied capacity, a few
not ready) and a 10,000-line policy over 200 namespaces: the default policy, team memberships
(``g``), a role chain (``gpu-user`` -> ``member``), per-namespace allow/deny ``place`` lines with
cluster patterns, per-user denies, experiment grants and ``p2`` placement weights. Then, in one
run:

* warm: ``default_engine().place(request, clusters, authorizer)`` for 400 different requests
  (users, namespaces, sizes, selectors) after one pass that fills the caches; median and p99 of
  one decision over several passes;
* uncached: the first decision of each of 200 further (user, namespace) pairs on the same warm
  Authorizer (nothing about them cached yet; printed for information);
* cold: the first decision after a policy edit: the new revision's lines parsed (unchanged lines
  come from the parse cache, as on a running broker), a new ``Authorizer`` built from them, and its
  first ``place``; the median of a few such edits;
* naive: a plain ``casbin.Enforcer`` over the same lines, one ``enforce`` per cluster for one
  request (permission only); a few repetitions, and its answers must equal the Authorizer's.

The last line is::

    RESULT median_ms=<n> p99_ms=<n> cold_ms=<n> naive_ms=<n> ratio=<naive_ms / median_ms>

Run from the repository root: ``python bench/placement.py [--passes N --naive-reps N]``.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time

from policies.authorizer import Authorizer
from policies.enforcer import build_enforcer
from policies.lines import PolicyLine, parse_lines
from policies.placement import ClusterView, PlacementRequest, default_engine
from runtimes.plan import Resources

GI = 2**30
NAMESPACES = [f"ns-{i:03d}" for i in range(200)]
SITES = ["east", "west", "north", "south"]
TARGET_LINES = 10_000

DEFAULT_POLICY = [
    "p, admin, *, *, *, allow",
    "g, admin, admin, *",
    *(
        f"p, member, *, {kind}/*, {act}, allow"
        for kind in ("experiment", "notebook")
        for act in ("submit", "read", "logs", "kill", "delete")
    ),
    "p, *, *, cluster/*, read, allow",
    "p, *, *, cluster/*, place, allow",
    "g, gpu-user, member, *",
]


def make_clusters(rng: random.Random) -> list[ClusterView]:
    clusters = []
    for i in range(100):
        gpu = i % 3 == 0
        site = SITES[i % 4]
        cpu = rng.choice([16, 32, 64, 128])
        gpus = rng.choice([2, 4, 8]) if gpu else 0
        mem = cpu * 4 * GI
        busy = rng.random()
        clusters.append(
            ClusterView(
                name=f"{'gpu' if gpu else 'cpu'}-{site}-{i:02d}",
                kind="kubernetes" if i % 2 else "ray",
                labels={"site": site, "tier": rng.choice(["gold", "silver"])},
                weight=rng.choice([0.5, 1.0, 2.0]),
                ready=i % 17 != 5,
                state="Ready" if i % 17 != 5 else "Unreachable",
                capabilities=frozenset({"gpu"} if gpu else set()) | {"multi_node"},
                total=Resources(cpu=cpu, memory=mem, gpu=gpus),
                free=Resources(cpu=round(cpu * busy, 1), memory=int(mem * busy), gpu=int(gpus * busy)),
                running=rng.randint(0, 30),
            )
        )
    return clusters


def make_policy(rng: random.Random, clusters: list[ClusterView]) -> tuple[list[str], list[tuple[str, str]]]:
    """10,000 policy lines and the (user, namespace) memberships they grant."""
    names = [c.name for c in clusters]
    lines = list(DEFAULT_POLICY)
    members: list[tuple[str, str]] = []
    for u in range(1500):
        user = f"u-{u:04d}"
        for ns in rng.sample(NAMESPACES, rng.choice([1, 1, 2])):
            members.append((user, ns))
            lines.append(f"g, {user}, {'gpu-user' if rng.random() < 0.2 else 'member'}, {ns}")
    for i, ns in enumerate(NAMESPACES):
        site = SITES[i % 4]
        gpu_cluster = rng.choice([n for n in names if n.startswith("gpu-")])
        cpu_cluster = rng.choice([n for n in names if n.startswith("cpu-")])
        lines += [
            f"p, member, {ns}, cluster/gpu-*, place, deny"
            if i % 5 == 0
            else f"p, member, {ns}, cluster/{gpu_cluster}/notebook, place, deny",
            f"p, gpu-user, {ns}, cluster/gpu-*, place, allow",
            f"p, *, {ns}, cluster/cpu-{SITES[(i + 1) % 4]}-*, place, deny"
            if i % 7 == 0
            else f"p, *, {ns}, cluster/{cpu_cluster}/*, place, allow",
            f"p2, {ns}, cluster/{rng.choice(names)}, {rng.choice([0, 0.5, 2, 5])}",
            f"p2, {ns}, cluster/gpu-{site}-*, 3",
        ]
        for _ in range(6):
            lines.append(f"p2, {ns}, cluster/{rng.choice(names)}, {rng.randint(0, 9)}")
        for _ in range(8):
            user = f"u-{rng.randrange(1500):04d}"
            lines.append(f"p, {user}, {ns}, cluster/{rng.choice(names)}/experiment, place, deny")
    lines += [f"p2, ns-{d}*, cluster/cpu-*, 1.5" for d in range(10)]
    n = 0
    while len(lines) < TARGET_LINES:  # the bulk of a real policy: grants on single experiments
        user, ns = members[n % len(members)]
        act = ("read", "logs", "kill")[n % 3]
        lines.append(f"p, {user}, {ns}, experiment/exp-{n:05d}, {act}, allow")
        n += 1
    return lines[:TARGET_LINES], members


def make_requests(rng: random.Random, pairs: list[tuple[str, str]]) -> list[PlacementRequest]:
    requests = []
    for user, ns in pairs:
        replicas = rng.choice([1, 2, 4])
        one = Resources(
            cpu=rng.choice([1, 2, 4]), memory=rng.choice([1, 4, 8]) * GI, gpu=rng.choice([0, 0, 1])
        )
        selector = {"site": rng.choice(SITES)} if rng.random() < 0.3 else {}
        requests.append(
            PlacementRequest(
                workload_kind=rng.choice(["experiment", "experiment", "notebook"]),
                namespace=ns,
                user=user,
                total=one.scaled(replicas),
                largest_replica=one,
                replicas=replicas,
                selector=selector,
            )
        )
    return requests


def ms(seconds: float) -> float:
    return seconds * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=5, help="timed passes over the warm requests")
    parser.add_argument("--naive-reps", type=int, default=3, help="repetitions of the naive loop")
    parser.add_argument("--cold-reps", type=int, default=5, help="policy edits timed for the cold figure")
    args = parser.parse_args()

    rng = random.Random(20240503)
    clusters = make_clusters(rng)
    texts, members = make_policy(rng, clusters)
    started = time.perf_counter()
    lines: list[PolicyLine] = parse_lines(texts)
    parse_ms = ms(time.perf_counter() - started)
    kinds = {t: sum(1 for line in lines if line.ptype == t) for t in ("p", "p2", "g")}
    print(
        f"policy: {len(lines)} lines ({kinds['p']} p, {kinds['p2']} p2, {kinds['g']} g) over "
        f"{len(NAMESPACES)} namespaces; {len(clusters)} clusters; parsing took {parse_ms:.1f} ms"
    )

    engine = default_engine()
    pairs = rng.sample(members, 600)
    warm_requests = make_requests(rng, pairs[:400])
    fresh_requests = make_requests(rng, pairs[400:])

    # Cold: the first decision after an edit, as a broker replica lives it: read the stored lines
    # of the new revision (one line added; unchanged lines come from the parse cache), build a
    # new Authorizer for the revision, and place one workload.
    cold, parts = [], []
    for revision in range(1, args.cold_reps + 1):
        edited = [*texts, f"p, u-{revision:04d}, ns-000, cluster/gpu-east-00/*, place, deny"]
        gc.collect()
        started = time.perf_counter()
        new_lines = parse_lines(edited)
        parsed = time.perf_counter()
        authorizer = Authorizer(new_lines, revision)
        built = time.perf_counter()
        engine.place(warm_requests[revision], clusters, authorizer)
        done = time.perf_counter()
        cold.append(ms(done - started))
        parts.append((ms(parsed - started), ms(built - parsed), ms(done - built)))
    cold_ms = statistics.median(cold)
    parse_part, build_part, first_part = (statistics.median(p) for p in zip(*parts, strict=True))
    print(
        f"cold (policy edit -> first decision): median {cold_ms:.2f} ms of "
        f"{', '.join(f'{c:.1f}' for c in cold)}; median parts: re-read lines {parse_part:.1f} ms, "
        f"build Authorizer {build_part:.1f} ms, first decision {first_part:.1f} ms"
    )

    authorizer = Authorizer(lines, 100)
    placed = sum(engine.place(r, clusters, authorizer).chosen is not None for r in warm_requests)
    gc.collect()
    samples = []
    for _ in range(args.passes):
        for request in warm_requests:
            started = time.perf_counter()
            engine.place(request, clusters, authorizer)
            samples.append(ms(time.perf_counter() - started))
    samples.sort()
    median_ms = statistics.median(samples)
    p99_ms = samples[int(len(samples) * 0.99) - 1]
    print(
        f"warm: {len(samples)} decisions over {len(warm_requests)} requests ({placed} placed): "
        f"median {median_ms:.3f} ms, p99 {p99_ms:.3f} ms, max {samples[-1]:.3f} ms"
    )

    uncached = []
    for request in fresh_requests:
        started = time.perf_counter()
        engine.place(request, clusters, authorizer)
        uncached.append(ms(time.perf_counter() - started))
    print(
        f"uncached (first decision for a new user/namespace, warm Authorizer): median "
        f"{statistics.median(uncached):.3f} ms, max {max(uncached):.3f} ms"
    )

    enforcer = build_enforcer(lines)
    # A request the policy answers both ways for, so the comparison checks allows and denies.
    request = max(
        warm_requests[:50],
        key=lambda r: min(
            sum(authorizer.may_place(r.user, r.namespace, c.name, r.workload_kind).allowed for c in clusters),
            sum(
                not authorizer.may_place(r.user, r.namespace, c.name, r.workload_kind).allowed
                for c in clusters
            ),
        ),
    )
    objects = [f"cluster/{c.name}/{request.workload_kind}" for c in clusters]
    naive = []
    for _ in range(args.naive_reps):
        started = time.perf_counter()
        answers = [enforcer.enforce(request.user, request.namespace, obj, "place") for obj in objects]
        naive.append(ms(time.perf_counter() - started))
    naive_ms = statistics.median(naive)
    fast = [authorizer.enforce(request.user, request.namespace, obj, "place") for obj in objects]
    if answers != fast:
        raise SystemExit("the Authorizer and Casbin disagree on the naive request")
    print(
        f"naive (one casbin enforce per cluster, {len(objects)} clusters): median {naive_ms:.0f} ms of "
        f"{', '.join(f'{n:.0f}' for n in naive)}; {sum(answers)} allowed, {len(answers) - sum(answers)} denied, same answers as the Authorizer"
    )

    print(
        f"RESULT median_ms={median_ms:.3f} p99_ms={p99_ms:.3f} cold_ms={cold_ms:.2f} "
        f"naive_ms={naive_ms:.1f} ratio={naive_ms / median_ms:.0f}"
    )


if __name__ == "__main__":
    main()
