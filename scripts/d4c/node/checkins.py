"""Check-ins: what a node holds, verified, signed with its key and appended to the public
log (d4c.node.log) after each sync (docs/nodes.md).

An entry is canonical JSON {"v": 1, "node": id, "key": ed25519 public key, "at": time,
"budget": bytes, "held": [{"sha256", "size", "verified_at"}], "challenge": {"prev",
"answers": {sha256: answer}}, "sig"}, `sig` over the canonical bytes of the rest. Readers
count an entry only when its bytes hash to its name, its node id is its key's, the
signature holds, and its `prev` (the challenge's nonce, d4c.node.challenge) is an earlier
counted entry of the log at most a day older than the newest one before it (empty only
when there was none). Anything
else is refused with one warning line; the answers themselves are checked by whoever
holds the bytes (d4c.node.sync, `d4c node audit`).
"""
from __future__ import annotations

import bisect
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from d4c import canonical
from d4c.node import challenge, identity
from d4c.node.log import MAX_ENTRY, NAME, Log, entry_name
from d4c.node.store import State

_ID = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
WINDOW_DAYS = 31  # older check-ins count for nothing (policy.checkin_weight)
PREV_MAX = timedelta(days=1)


@dataclass(frozen=True)
class Checkin:
    node: str
    at: datetime
    held: frozenset[str]
    sizes: dict[str, int] = field(default_factory=dict)
    prev: str = ""
    answers: dict[str, str] = field(default_factory=dict)
    name: str = ""

    @property
    def date(self) -> str:
        return self.at.astimezone(UTC).date().isoformat()


def document(secret: str, at: str, budget: int, state: State, prev: str,
             read: challenge.Reader) -> bytes:
    """The signed check-in's bytes (`at` in UTC, ...Z; `prev` the newest entry seen)."""
    public = identity.public_key(secret)
    node = identity.node_id(public)
    held = [{"sha256": h.sha256, "size": h.size, "verified_at": h.verified_at}
            for h in sorted(state.held.values(), key=lambda h: h.sha256)]
    sizes = {h.sha256: h.size for h in state.held.values()}
    doc: dict[str, object] = {
        "v": 1, "node": node, "key": public, "at": at, "budget": budget, "held": held,
        "challenge": {"prev": prev, "answers": challenge.answers(node, at[:10], prev, sizes, read)}}
    doc["sig"] = identity.sign(secret, canonical.encode(doc))
    return canonical.encode(doc)


def append(log: Log, data: bytes) -> str:
    name = entry_name(json.loads(data)["at"][:10], data)
    log.append(name, data)
    return name


def parse(name: str, data: bytes) -> Checkin | str:
    """The check-in, or why it is refused (its `prev` is checked by `read`)."""
    if f"{hashlib.sha256(data).hexdigest()}.json" != name.rpartition("/")[2]:
        return "its bytes do not hash to its name"
    try:
        doc = json.loads(data)
        sig, key, node = doc.pop("sig"), doc["key"], doc["node"]
        at, held, chal = datetime.fromisoformat(doc["at"]), doc["held"], doc["challenge"]
        sizes = {str(h["sha256"]): int(h["size"]) for h in held}
        prev, answers = str(chal["prev"]), {str(k): str(v) for k, v in chal["answers"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return "not a check-in"
    if not isinstance(key, str) or not _HEX64.fullmatch(key) or node != identity.node_id(key):
        return "its node id is not its key's"
    if not isinstance(sig, str) or not identity.verify(key, canonical.encode(doc), sig):
        return "bad signature"
    if not all(_HEX64.fullmatch(s) for s in sizes) or len(sizes) != len(held) or at.tzinfo is None:
        return "a malformed or repeated sha256, or a time without a zone"
    if any(v < 0 for v in sizes.values()) or (prev and not NAME.fullmatch(prev)):
        return "a negative size or a malformed prev"
    if name[:10] != at.astimezone(UTC).date().isoformat():
        return "filed under another date"
    return Checkin(node, at, frozenset(sizes), sizes, prev, answers, name)


def _fresh(ci: Checkin, counted: dict[str, Checkin], times: list[datetime]) -> bool:
    """Its nonce was unknown until at most a day before the newest entry it could have
    seen (d4c.node.challenge); `times`: the counted entries' times, ascending."""
    k = bisect.bisect_left(times, ci.at)
    if not ci.prev:
        return k == 0
    p = counted.get(ci.prev)
    return p is not None and k > 0 and times[k - 1] - PREV_MAX <= p.at < ci.at


def read(log: Log | None, now: datetime, warn: list[str]) -> list[Checkin]:
    """The newest counted check-in of each node in the last 31 days."""
    if log is None:
        return []
    since = (now - timedelta(days=WINDOW_DAYS)).date().isoformat()
    valid: dict[str, Checkin] = {}
    for item in log.names(since):
        where = f"check-in {log.where}/{item.name}"
        if not NAME.fullmatch(item.name):
            warn.append(f"{where}: not a <date>/<sha256>.json name, ignored")
        elif item.size > MAX_ENTRY:
            warn.append(f"{where}: larger than {MAX_ENTRY >> 20} MiB, refused unread")
        else:
            got = parse(item.name, log.read(item.name))
            if isinstance(got, str):
                warn.append(f"{where}: {got}, ignored")
            elif got.at <= now + timedelta(minutes=10):  # a check-in from the future waits
                valid[got.name] = got
    counted: dict[str, Checkin] = {}
    times: list[datetime] = []
    newest: dict[str, Checkin] = {}
    for ci in sorted(valid.values(), key=lambda c: (c.at, c.name)):
        if not _fresh(ci, counted, times):
            warn.append(f"check-in {log.where}/{ci.name}: its prev is not an entry of the log "
                        "from the day before it, ignored")
        else:
            counted[ci.name] = ci
            times.append(ci.at)
            newest[ci.node] = ci
    return sorted(newest.values(), key=lambda c: c.node)


def newest_name(cis: list[Checkin]) -> str:
    """The name of the newest counted entry: the nonce of the next check-in."""
    return max(cis, key=lambda c: (c.at, c.name)).name if cis else ""
