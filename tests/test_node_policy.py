"""The node policy alone (d4c.node.policy is pure): order, budget, gate, eviction rules."""
from __future__ import annotations

import hashlib

from d4c.node import policy
from d4c.node.policy import Candidate, plan


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def test_targets_and_weights() -> None:
    assert policy.targets(Candidate(sha(1), 1, mirrors=3)) == (3, 5)
    assert policy.targets(Candidate(sha(1), 1, mirrors=3, at_risk=True)) == (5, 7)
    assert policy.targets(Candidate(sha(1), 1, mirrors=1)) == (5, 7)  # one mirror left
    assert [policy.checkin_weight(d) for d in (0, 14, 15, 30, 31)] == [1, 1, 0.5, 0.5, 0]


def test_most_urgent_first_within_budget_and_ties_to_smaller_files() -> None:
    cands = [
        Candidate(sha(1), 40, mirrors=2),  # deficit 1
        Candidate(sha(2), 40, mirrors=0),  # no mirror left: first
        Candidate(sha(3), 30, mirrors=2, at_risk=True),  # deficit 3
        Candidate(sha(4), 10, mirrors=2),  # deficit 1, smaller than sha(1)
        Candidate(sha(5), 10, mirrors=4),  # at the goal: not sought
        Candidate(sha(6), 10, mirrors=2, deprecated=True),  # deprecated: last
    ]
    got = plan(cands, budget=90)
    assert [c.sha256 for c, _ in got.fetch] == [sha(2), sha(3), sha(4), sha(6)]
    assert got.fetch_bytes <= 90 and not got.evict
    assert [c.sha256 for c, _ in plan(cands, budget=90, max_fetch=75).fetch] == [sha(2), sha(3)]


def test_eviction_only_for_more_urgent_and_never_below_the_minimum_elsewhere() -> None:
    spare = Candidate(sha(1), 50, mirrors=2, others=2, held=True, holder_rank=2)  # 4 elsewhere
    needed = Candidate(sha(2), 50, mirrors=2, others=0, held=True)  # only 2 elsewhere: kept
    urgent = Candidate(sha(3), 50, mirrors=0)
    got = plan([spare, needed, urgent], budget=100)
    assert [(c.sha256, why) for c, why in got.evict] == [(sha(1), f"room for {sha(3)}")]
    assert [c.sha256 for c, _ in got.fetch] == [sha(3)]
    # a spare copy wanted by no more than the goal never displaces another copy
    calm = Candidate(sha(4), 50, mirrors=3)
    assert not plan([spare, needed, calm], budget=100).evict
    # the same spare copy, but this node ranks first among its holders: it keeps it
    first = Candidate(sha(1), 50, mirrors=2, others=2, held=True, holder_rank=0)
    assert not plan([first, needed, urgent], budget=100).fetch


def test_above_the_maximum_only_the_lowest_ranked_holders_let_go() -> None:
    # 2 mirrors + 4 other nodes = 6 elsewhere > max 5; nodes needed for the max: 3
    held = [Candidate(sha(1), 10, mirrors=2, others=4, held=True, holder_rank=r) for r in range(5)]
    evicting = [r for r, c in enumerate(held) if plan([c], budget=100).evict]
    assert evicting == [3, 4]


def test_budget_shrunk_evicts_least_urgent_first() -> None:
    a = Candidate(sha(1), 60, mirrors=0, held=True)
    b = Candidate(sha(2), 60, mirrors=3, others=1, held=True)
    assert [c.sha256 for c, _ in plan([a, b], budget=70).evict] == [sha(2)]


def test_two_node_keys_pick_mostly_different_rare_items() -> None:
    nodes = [f"{n:032x}" for n in range(20)]
    rare = [Candidate(sha(i), 1, mirrors=2, others=0) for i in range(400)]  # 2 copies missing

    def picks(node: str) -> set[str]:
        cands = [Candidate(**{**vars(c), "rank": policy.rank_among(node, c.sha256, nodes)}) for c in rare]
        return {c.sha256 for c, _ in plan(cands, budget=10**6).fetch}

    a, b = picks(nodes[0]), picks(nodes[1])
    # each node is in the gate (width 2 of 20) of about a tenth of the items
    assert 20 <= len(a) <= 70 and 20 <= len(b) <= 70
    assert len(a & b) <= 0.25 * min(len(a), len(b))
    union = set().union(*(picks(n) for n in nodes))
    assert len(union) == len(rare)  # and together the nodes cover every item


def test_a_lowered_budget_evicts_first_what_stays_at_its_minimum_elsewhere() -> None:
    # the deprecated copy is the lowest priority but has no other copy than its 2 mirrors;
    # the two spares sit at 3 copies elsewhere: they go first, though more urgent
    alone = Candidate(sha(1), 30, mirrors=2, deprecated=True, latest=False, held=True)
    spares = [Candidate(sha(n), 30, mirrors=2, others=1, held=True, holder_rank=1) for n in (2, 3)]
    got = plan([alone, *spares], budget=60)
    assert [why for _, why in got.evict] == ["over budget"]
    assert got.evict[0][0].sha256 in {sha(2), sha(3)}
    # when only copies below the minimum elsewhere are left, the volunteer's disk still wins
    got = plan([alone, *spares], budget=20)
    assert {c.sha256 for c, _ in got.evict} == {sha(1), sha(2), sha(3)}
