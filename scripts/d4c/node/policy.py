"""The node policy: which artifacts a volunteer node fetches, keeps and evicts (docs/nodes.md).

Pure: no I/O, no clock, no randomness. The daemon (`d4c.node.sync`) and the simulator
(`d4c.node.simulate`) both describe what they know as `Candidate`s and call `plan`.

- Copies: healthy mirror copies plus nodes with a verified check-in, weighted by age
  (`checkin_weight`: full for 14 days, half for days 15-30).
- Targets: minimum 3 copies, 5 when at risk or when at most one mirror is left; maximum =
  minimum + 2. Nodes fetch towards the goal, minimum + 1 (a spare while a departed
  node's check-in still counts), and evict only above the maximum.
- Priority: no mirror left first, deprecated versions last, then by deficit, at risk,
  curator priority, latest version; ties to smaller files, then by sha256 (a total order).
- Gate: a node considers an artifact only if it ranks among the top W known nodes not
  holding it, by sha256(node id || sha256), W = the copies missing to the goal + 2 x days
  under the goal, so (with counts a day stale) about as many nodes fetch it as copies
  are missing, and nodes with different ids pick different rare items.
- Eviction: only above the maximum, or for a higher-priority item, and never when the
  copies elsewhere would fall below the minimum (git-annex's numcopies). A budget the
  volunteer lowered is the one exception, and even then copies held at their minimum
  elsewhere go first. Holders rank by
  the same hash, so with stale counts only the lowest-ranked holders let go.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

MIN_COPIES = 3
MIN_AT_RISK = 5
SPREAD = 2  # maximum = minimum + SPREAD: kept, but not sought
WIDEN = 2  # more nodes in the gate for each day under the goal
WIDEN_DAYS = 14  # the gate stops widening after this many days: no stampede on a lost cause
SEEK = 1  # nodes seek one copy above the minimum: a departed node is not counted lost for 14 days
FULL_DAYS, HALF_DAYS = 14, 30


@dataclass(frozen=True)
class Candidate:
    """One artifact as this node sees it. `others` excludes this node's own copy."""

    sha256: str
    size: int
    mirrors: int  # healthy mirror copies
    others: float = 0.0  # effective copies on other nodes (sum of check-in weights)
    at_risk: bool = False
    deprecated: bool = False
    latest: bool = True
    curator: int = 0  # higher first
    held: bool = False
    rank: int = 0  # this node's place among the known nodes not holding it, by score (0 = first)
    holder_rank: int = 0  # this node's place among the other live holders (held items only)
    days_under: int = 0  # days the artifact has been under its goal


@dataclass
class Plan:
    fetch: list[tuple[Candidate, str]] = field(default_factory=list)  # (candidate, why)
    evict: list[tuple[Candidate, str]] = field(default_factory=list)

    @property
    def fetch_bytes(self) -> int:
        return sum(c.size for c, _ in self.fetch)


def checkin_weight(age_days: float) -> float:
    """What a node's check-in of that age counts for."""
    if age_days < 0:
        return 0.0
    return 1.0 if age_days <= FULL_DAYS else 0.5 if age_days <= HALF_DAYS else 0.0


def targets(c: Candidate) -> tuple[int, int]:
    low = MIN_AT_RISK if c.at_risk or c.mirrors <= 1 else MIN_COPIES
    return low, low + SPREAD


def elsewhere(c: Candidate) -> float:
    return c.mirrors + c.others


def deficit(c: Candidate) -> float:
    return targets(c)[0] - elsewhere(c)


def goal(c: Candidate) -> int:
    """The copies nodes fetch towards: a spare above the minimum, but never past the
    at-risk minimum, which already has its spares."""
    return min(targets(c)[0] + SEEK, MIN_AT_RISK)


def gate_width(c: Candidate) -> int:
    """How many of the known nodes not holding it may fetch it: the copies missing to the
    goal, widened by 2 a day while it stays under the goal (nodes full, offline or gone),
    for at most WIDEN_DAYS days."""
    return max(0, math.ceil(goal(c) - elsewhere(c))) + WIDEN * min(max(0, c.days_under), WIDEN_DAYS)


def score(node_id: str, sha256: str) -> bytes:
    """The rendezvous score: smaller ranks first."""
    return hashlib.sha256(f"{node_id}:{sha256}".encode()).digest()


def rank_among(node_id: str, sha256: str, nodes: Iterable[str]) -> int:
    """How many of `nodes` (other than this one) score before this node for the artifact."""
    own = score(node_id, sha256)
    return sum(1 for n in set(nodes) if n != node_id and score(n, sha256) < own)


Urgency = tuple[bool, bool, float, bool, int, bool]


def urgency(c: Candidate) -> Urgency:
    """How much the artifact needs a copy: smaller is more urgent (no tie-breaks)."""
    return (c.mirrors > 0, c.deprecated, -deficit(c), not c.at_risk, -c.curator, not c.latest)


def priority(c: Candidate) -> tuple[bool, bool, float, bool, int, bool, int, str]:
    """Sort key, a total order: urgency, then smaller files, then sha256."""
    return (*urgency(c), c.size, c.sha256)


def wanted(c: Candidate) -> bool:
    """Not held, under the goal, and inside the gate."""
    return not c.held and elsewhere(c) < goal(c) and c.rank < gate_width(c)


def droppable(c: Candidate, keep: int) -> bool:
    """Dropping this copy leaves `keep` copies elsewhere, and enough holders rank first."""
    return elsewhere(c) >= keep and c.holder_rank >= keep - c.mirrors


def _make_room(need: int, keep: list[tuple[Urgency, Candidate]], than: Candidate
               ) -> list[tuple[Urgency, Candidate]] | None:
    """Lowest-priority droppable held items, strictly less urgent than `than`, freeing `need`
    bytes; else None. Only an artifact under its minimum (or without a mirror) evicts: a
    spare copy never displaces one, and a tie in urgency never swaps copies back and forth.
    `keep` holds the droppable items only, lowest priority first."""
    if deficit(than) <= 0 and than.mirrors > 0:
        return None
    victims = []
    room, bar = 0, urgency(than)
    for u, h in keep:
        if u <= bar:
            break
        victims.append((u, h))
        room += h.size
        if room >= need:
            return victims
    return None


def plan(cands: Sequence[Candidate], budget: int, max_fetch: int | None = None) -> Plan:
    """What to fetch (most urgent first) and what to evict, keeping within `budget` bytes.

    `max_fetch` caps the bytes fetched (the day's bandwidth, or `d4c node plan --max`).
    """
    out = Plan()
    held = sorted((c for c in cands if c.held), key=priority, reverse=True)  # lowest first
    keep: list[Candidate] = []
    for c in held:
        if droppable(c, targets(c)[1]):
            out.evict.append((c, "above the maximum"))
        else:
            keep.append(c)
    used = sum(c.size for c in keep)
    # The budget shrank: the volunteer's disk comes first, but copies that stay at their
    # minimum elsewhere go before any other, lowest priority first.
    for safe in (True, False):
        for c in [c for c in keep if droppable(c, targets(c)[0]) is safe]:
            if used <= budget:
                break
            keep.remove(c)
            out.evict.append((c, "over budget"))
            used -= c.size
    spare = [(urgency(h), h) for h in keep if droppable(h, targets(h)[0])]
    fetched = 0
    for c in sorted((c for c in cands if wanted(c)), key=priority):
        if c.size > budget or (max_fetch is not None and fetched + c.size > max_fetch):
            continue
        if used + c.size > budget:
            victims = _make_room(used + c.size - budget, spare, c)
            if victims is None:
                continue
            for v in victims:
                spare.remove(v)
                used -= v[1].size
                out.evict.append((v[1], f"room for {c.sha256}"))
        used += c.size
        fetched += c.size
        out.fetch.append((c, _why(c)))
    return out


def _why(c: Candidate) -> str:
    low, high = targets(c)
    state = "no mirror left" if c.mirrors == 0 else "at risk" if c.at_risk else ""
    have = f"{elsewhere(c):g} copies, min {low}, max {high}"
    return f"{state}: {have}" if state else have
