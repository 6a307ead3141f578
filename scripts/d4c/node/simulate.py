"""A discrete-time simulator of volunteer nodes: the issue's table at a smaller scale.

One world per capacity (node storage as a multiple of the corpus), the same world for each
policy: lognormal artifact sizes (median 1.5 GB) and node budgets, each node downloading
at most a seventh of its budget a day, 10% of nodes offline on any day, 1 in 180 leaving
for good each day, every artifact on 2 mirrors until day 30, when 10% lose both and are
at risk. Nodes see yesterday's check-ins (counts one day stale), weighted as the policy
says. Copies at the end = mirrors + nodes still in the network holding it.

Scenarios (`Scenario`, `SCENARIOS`) change that world: a whole provider (a fifth of the
nodes) leaving on one day; 30% of nodes lying (they hold nothing and claim a random set
as large as their budget; ours checks the challenge, so a liar is found as soon as an
honest node holds one of the files it claims and is no longer counted; the baselines have
no challenge and count every claim); a flash crowd (a national release, 10% more files
on 2 mirrors, appearing on one day at every node at once); one 10 TB file.

Policies: `smartnode` (smartnode-transmission's rule: walk the list in file order, add any
artifact under 100 GB while free space is over twice its size, never evict), `random`
(IA.BAK-style: random among artifacts under 4 copies, then random among the rest while
space lasts), `rendezvous` (`d4c.node.policy`, the daemon's code).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from d4c.node import policy

GB = 10**9
LOSS_DAY, LOSS_SHARE, MIRRORS = 30, 0.10, 2
OFFLINE, LEAVE = 0.10, 1 / 180
POLICIES = ("smartnode", "random", "rendezvous")


@dataclass(frozen=True)
class Scenario:
    name: str = "base"
    provider_day: int | None = None  # the day a fifth of the nodes (one provider) leaves
    liars: float = 0.0  # share of nodes that claim files they do not hold
    flash_day: int | None = None  # the day a release of 10% more files appears
    big: int = 0  # bytes of one extra file (the 10 TB artifact)


SCENARIOS = (Scenario("provider gone", provider_day=45), Scenario("30% liars", liars=0.3),
             Scenario("flash crowd", flash_day=60), Scenario("10 TB file", big=10 * 10**12))


@dataclass
class World:
    sizes: list[int]
    budgets: list[int]
    deprecated: list[bool]
    lost: set[int]  # artifacts whose mirrors go on LOSS_DAY
    order: list[list[int]]  # per artifact: node indices by rendezvous score
    pos: list[list[int]]  # per artifact: node index -> its place in `order`
    ids: list[str]
    shas: list[str]
    appear: list[int] = field(default_factory=list)  # the day each artifact appears
    claims: dict[int, frozenset[int]] = field(default_factory=dict)  # liar -> what it claims
    scenario: Scenario = Scenario()

    def present(self, a: int, day: int) -> bool:
        return self.appear[a] <= day


@dataclass
class Node:
    budget: int
    held: set[int] = field(default_factory=set)
    used: int = 0
    alive: bool = True
    cursor: int = 0  # smartnode's place in the list
    checkin: tuple[int, frozenset[int]] = (-1, frozenset())


def make_world(n_nodes: int, n_art: int, capacity: float, seed: int,
               scenario: Scenario = Scenario()) -> World:
    rng = random.Random(seed)
    sizes = [max(10**7, min(int(rng.lognormvariate(21.1, 1.2)), 500 * GB)) for _ in range(n_art)]
    raw = [rng.lognormvariate(0, 1.0) for _ in range(n_nodes)]
    scale = capacity * sum(sizes) / sum(raw)  # capacity of the base corpus, as in the issue
    budgets = [int(r * scale) for r in raw]
    appear = [0] * n_art
    if scenario.flash_day is not None:  # the release: same size law, on 2 mirrors, all at once
        extra = max(1, n_art // 10)
        sizes += [max(10**7, min(int(rng.lognormvariate(21.1, 1.2)), 500 * GB)) for _ in range(extra)]
        appear += [scenario.flash_day] * extra
    if scenario.big:
        sizes.append(scenario.big)
        appear.append(0)
    ids = [f"{rng.getrandbits(128):032x}" for _ in range(n_nodes)]
    shas = [f"{rng.getrandbits(256):064x}" for _ in sizes]
    order, pos = [], []
    for sha in shas:
        o = sorted(range(n_nodes), key=lambda i: policy.score(ids[i], sha))
        p = [0] * n_nodes
        for k, i in enumerate(o):
            p[i] = k
        order.append(o)
        pos.append(p)
    lost = set(rng.sample(range(n_art), int(n_art * LOSS_SHARE)))
    deprecated = [rng.random() < 0.2 for _ in sizes]
    claims = {i: _claim(rng, sizes, budgets[i]) for i in range(n_nodes) if rng.random() < scenario.liars}
    return World(sizes, budgets, deprecated, lost, order, pos, ids, shas, appear, claims, scenario)


def _claim(rng: random.Random, sizes: list[int], budget: int) -> frozenset[int]:
    """What a liar claims: random files, as many as its budget would hold."""
    out, used = set(), 0
    for a in rng.sample(range(len(sizes)), len(sizes)):
        if used + sizes[a] <= budget:
            out.add(a)
            used += sizes[a]
    return frozenset(out)


def _observed(nodes: list[Node], n_art: int, day: int, ignored: set[int]) -> list[float]:
    """Node copies per artifact as yesterday's check-ins say (but those of `ignored` nodes)."""
    obs = [0.0] * n_art
    for i, n in enumerate(nodes):
        if i in ignored:
            continue
        w = policy.checkin_weight(day - 1 - n.checkin[0])
        for a in n.checkin[1]:
            obs[a] += w
    return obs


def _add(n: Node, a: int, w: World) -> int:
    n.held.add(a)
    n.used += w.sizes[a]
    return w.sizes[a]


def _smartnode(n: Node, w: World, allow: int, day: int) -> int:
    moved = 0
    while n.cursor < len(w.sizes) and w.present(n.cursor, day):  # new files come last
        a, size = n.cursor, w.sizes[n.cursor]
        if size < 100 * GB and n.budget - n.used > 2 * size and a not in n.held:
            if moved + size > allow:
                break  # today's bandwidth; resume here tomorrow
            moved += _add(n, a, w)
        n.cursor += 1
    return moved


def _random(n: Node, w: World, allow: int, under: list[int], every: list[int],
            rng: random.Random) -> int:
    moved = 0
    for pool in (under, every):
        misses = 0
        for a in rng.sample(pool, min(len(pool), 300)):
            size = w.sizes[a]
            if a in n.held or size > n.budget - n.used or moved + size > allow:
                misses += 1
                if misses > 50 and pool is not under:  # full, or the day's bandwidth used
                    break
                continue
            moved += _add(n, a, w)
    return moved


def _gate(w: World, nodes: list[Node], obs: list[float], mirrors: list[int], under_days: list[int],
          day: int, found: set[int]) -> tuple[dict[int, list[int]], list[list[int]]]:
    """Per node: the artifacts whose gate it passes; per artifact: its known holders by rank
    (a liar found out is not a known node)."""
    known = [policy.checkin_weight(day - 1 - n.checkin[0]) > 0 and i not in found
             for i, n in enumerate(nodes)]
    gated: dict[int, list[int]] = {}
    holders: list[list[int]] = [[] for _ in w.sizes]
    for i, n in enumerate(nodes):
        if known[i]:
            for a in n.checkin[1]:
                holders[a].append(i)
    for a, order in enumerate(w.order):
        if not w.present(a, day):
            continue
        c = policy.Candidate(w.shas[a], w.sizes[a], mirrors[a], obs[a], a in w.lost and day >= LOSS_DAY,
                             days_under=under_days[a])
        if policy.elsewhere(c) >= policy.goal(c):
            continue
        width, k, holding = policy.gate_width(c), 0, set(holders[a])
        for i in order:
            if k >= width:
                break
            if i not in holding:
                gated.setdefault(i, []).append(a)
                k += known[i]
        holders[a].sort(key=lambda i: w.pos[a][i])
    return gated, holders


def _rendezvous(i: int, n: Node, w: World, ctx: tuple, allow: int) -> int:
    obs, mirrors, under_days, gated, holders, day = ctx
    own_day, own = n.checkin
    own_w = policy.checkin_weight(day - 1 - own_day)
    cands = []
    for a in set(gated.get(i, ())) | n.held:
        held = a in n.held
        hr = sum(1 for j in holders[a] if j != i and w.pos[a][j] < w.pos[a][i]) if held else 0
        cands.append(policy.Candidate(
            w.shas[a], w.sizes[a], mirrors[a], max(0.0, obs[a] - (own_w if a in own else 0.0)),
            a in w.lost and day >= LOSS_DAY, w.deprecated[a], not w.deprecated[a], held=held,
            rank=0, holder_rank=hr, days_under=under_days[a]))
    plan = policy.plan(cands, n.budget, allow)
    index = {w.shas[a]: a for a in set(gated.get(i, ())) | n.held}
    for c, _ in plan.evict:
        n.held.discard(index[c.sha256])
        n.used -= c.size
    return sum(_add(n, index[c.sha256], w) for c, _ in plan.fetch)


def _found(w: World, nodes: list[Node], found: set[int]) -> None:
    """Liars found today: an honest node holds one of the files a liar claims, and checks
    its answer (ours only; the baselines have no challenge)."""
    honest: set[int] = set()
    for i, n in enumerate(nodes):
        if i not in w.claims and n.alive:
            honest |= n.held
    found.update(i for i, claim in w.claims.items()
                 if i not in found and nodes[i].checkin[0] >= 0 and claim & honest)


def _day(w: World, nodes: list[Node], name: str, day: int, state: dict[str, Any],
         rng: random.Random) -> int:
    mirrors, under_days, found = state["mirrors"], state["under_days"], state["found"]
    if day == LOSS_DAY:
        for a in w.lost:
            mirrors[a] = 0
    if day == w.scenario.provider_day:  # one provider's machines, all at once
        for n in nodes[::5]:
            n.alive, n.held, n.used = False, set(), 0
    if name == "rendezvous":
        _found(w, nodes, found)
    obs = _observed(nodes, len(w.sizes), day, found)
    every = [a for a in range(len(w.sizes)) if w.present(a, day)]
    for a in every:
        goal = policy.goal(policy.Candidate("", 0, mirrors[a], at_risk=a in w.lost and day >= LOSS_DAY))
        under_days[a] = under_days[a] + 1 if mirrors[a] + obs[a] < goal else 0
    under = [a for a in every if mirrors[a] + obs[a] < 4]
    ctx = (obs, mirrors, under_days, *_gate(w, nodes, obs, mirrors, under_days, day, found), day) \
        if name == "rendezvous" else ()
    moved = 0
    for i in rng.sample(range(len(nodes)), len(nodes)):
        n = nodes[i]
        if n.alive and rng.random() < LEAVE:
            n.alive, n.held, n.used = False, set(), 0
        if not n.alive or rng.random() < OFFLINE:
            continue
        allow = max(n.budget // 7, 1)
        if i in w.claims:
            pass  # a liar fetches nothing and claims what it was given
        elif name == "smartnode":
            moved += _smartnode(n, w, allow, day)
        elif name == "random":
            moved += _random(n, w, allow, under, every, rng)
        else:
            moved += _rendezvous(i, n, w, ctx, allow)
        n.checkin = (day, w.claims.get(i, frozenset(n.held)))
    return moved


def run_policy(w: World, name: str, days: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    nodes = [Node(b) for b in w.budgets]
    state: dict[str, Any] = {"mirrors": [MIRRORS] * len(w.sizes), "under_days": [0] * len(w.sizes),
                             "found": set()}
    moved, flash = 0, 0
    for day in range(days):
        today = _day(w, nodes, name, day, state, rng)
        moved += today
        if w.scenario.flash_day is not None and w.scenario.flash_day <= day < w.scenario.flash_day + 3:
            flash += today
    out = _measure(w, nodes, state["mirrors"], moved)
    out.update(_extras(w, nodes, state, flash))
    return out


def _copies(w: World, nodes: list[Node], mirrors: list[int]) -> list[int]:
    copies = list(mirrors)
    for n in nodes:
        for a in n.held:
            copies[a] += 1
    return copies


def _extras(w: World, nodes: list[Node], state: dict[str, Any], flash: int) -> dict[str, float]:
    """The scenario's own figures."""
    copies = _copies(w, nodes, state["mirrors"])
    out: dict[str, float] = {}
    if w.claims:
        claimed = set().union(*w.claims.values())
        out.update(liars=len(w.claims), found=len(state["found"]),
                   claimed_ge3=sum(copies[a] >= 3 for a in claimed) / max(1, len(claimed)))
    if w.scenario.flash_day is not None:
        new = [a for a, d in enumerate(w.appear) if d == w.scenario.flash_day]
        out.update(new_ge3=sum(copies[a] >= 3 for a in new) / len(new),
                   new_gt5=sum(copies[a] > 5 for a in new) / len(new), flash_tb=flash / 1e12)
    if w.scenario.big:
        out.update(big_copies=copies[-1] - state["mirrors"][-1])
    return out


def _measure(w: World, nodes: list[Node], mirrors: list[int], moved: int) -> dict[str, float]:
    copies = _copies(w, nodes, mirrors)
    total = len(copies)
    return {"ge3": sum(c >= 3 for c in copies) / total, "zero": sum(c == 0 for c in copies),
            "lost": sum(copies[a] == 0 for a in w.lost), "at_risk": len(w.lost),
            "gt5": sum(c > 5 for c in copies) / total, "tb": moved / 1e12,
            "corpus_tb": sum(w.sizes) / 1e12}


def compare(n_nodes: int, n_art: int, days: int, seed: int,
            capacities: tuple[float, ...] = (5.0, 1.35)) -> list[tuple[str, float, dict[str, float]]]:
    out = []
    for cap in capacities:
        world = make_world(n_nodes, n_art, cap, seed)
        for name in POLICIES:
            out.append((name, cap, run_policy(world, name, days, seed)))
    return out


def table(rows: list[tuple[str, float, dict[str, float]]]) -> str:
    lines = ["| policy | capacity | >= 3 copies | 0 copies | at-risk lost | > 5 copies | TB moved |",
             "|---|---|---|---|---|---|---|"]
    for name, cap, m in rows:
        lines.append(f"| {name} | {cap:g}x | {m['ge3']:.1%} | {m['zero']:.0f} | "
                     f"{m['lost']:.0f} of {m['at_risk']:.0f} | {m['gt5']:.1%} | {m['tb']:.1f} |")
    corpus = rows[0][2]["corpus_tb"] if rows else 0.0
    return "\n".join(lines) + f"\n\ncorpus {corpus:.1f} TB"


def scenarios(n_nodes: int, n_art: int, days: int, seed: int, capacity: float = 5.0,
              which: tuple[Scenario, ...] = SCENARIOS) -> list[tuple[str, str, dict[str, float]]]:
    """(scenario, policy, figures) for each scenario, the three policies on one world."""
    out = []
    for sc in which:
        world = make_world(n_nodes, n_art, capacity, seed, sc)
        for name in POLICIES:
            out.append((sc.name, name, run_policy(world, name, days, seed)))
    return out


def _extra_text(m: dict[str, float]) -> str:
    if "liars" in m:
        return (f"liars found {m['found']:.0f} of {m['liars']:.0f}; files they claimed with >= 3 "
                f"real copies {m['claimed_ge3']:.1%}")
    if "new_ge3" in m:
        return (f"release: {m['new_ge3']:.1%} >= 3, {m['new_gt5']:.1%} > 5 copies; "
                f"{m['flash_tb']:.1f} TB moved in its first 3 days")
    if "big_copies" in m:
        return f"10 TB file: {m['big_copies']:.0f} node copies"
    return ""


def scenario_table(rows: list[tuple[str, str, dict[str, float]]], capacity: float = 5.0) -> str:
    lines = ["| scenario | policy | >= 3 copies | 0 copies | at-risk lost | > 5 copies | TB moved | scenario's own |",
             "|---|---|---|---|---|---|---|---|"]
    for sc, name, m in rows:
        lines.append(f"| {sc} ({capacity:g}x) | {name} | {m['ge3']:.1%} | {m['zero']:.0f} | "
                     f"{m['lost']:.0f} of {m['at_risk']:.0f} | {m['gt5']:.1%} | {m['tb']:.1f} | "
                     f"{_extra_text(m)} |")
    return "\n".join(lines)
