"""Check-ins: what a node holds, verified, written after each sync (docs/nodes.md).

`<node id>.json` = {"node": id, "at": time, "budget": bytes, "held": [{"sha256", "size",
"verified_at"}], "challenge": {"date", "nonce", "answers": {sha256: answer}}} in canonical
JSON (the challenge: d4c.node.challenge). The node writes it to its data folder and, when the
config names a shared `checkins` folder, there too; that folder is what the project and
the other nodes count. Other nodes' files are untrusted: one that does not parse, names
another node, or lists a malformed sha256 is ignored with a warning line.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from d4c import canonical
from d4c.atomic import atomic_write
from d4c.node import challenge
from d4c.node.store import State

_ID = re.compile(r"[0-9a-f]{32}")
_SHA = re.compile(r"[0-9a-f]{64}")
MAX_FILE = 64 << 20


@dataclass(frozen=True)
class Checkin:
    node: str
    at: datetime
    held: frozenset[str]
    sizes: dict[str, int] = field(default_factory=dict)
    nonce: str = ""
    answers: dict[str, str] = field(default_factory=dict)

    @property
    def date(self) -> str:
        return self.at.astimezone(UTC).date().isoformat()


def document(node_id: str, at: str, budget: int, state: State, nonce: str,
             read: challenge.Reader) -> dict[str, object]:
    """The check-in, with the answers to the day's challenge (`at` in UTC, ...Z)."""
    held = [{"sha256": h.sha256, "size": h.size, "verified_at": h.verified_at}
            for h in sorted(state.held.values(), key=lambda h: h.sha256)]
    sizes = {h.sha256: h.size for h in state.held.values()}
    date = at[:10]
    return {"node": node_id, "at": at, "budget": budget, "held": held,
            "challenge": {"date": date, "nonce": nonce,
                          "answers": challenge.answers(node_id, date, nonce, sizes, read)}}


def write(doc: dict[str, object], folders: list[Path]) -> list[Path]:
    out = []
    for folder in folders:
        dest = folder / f"{doc['node']}.json"
        atomic_write(dest, canonical.dumps(doc))
        out.append(dest)
    return out


def _parse(path: Path) -> Checkin | str:
    if path.stat().st_size > MAX_FILE:
        return "larger than 64 MiB"
    try:
        doc = json.loads(path.read_bytes())
        node, at, held = doc["node"], datetime.fromisoformat(doc["at"]), doc["held"]
        shas = frozenset(h["sha256"] for h in held)
        sizes = {str(h["sha256"]): int(h["size"]) for h in held}
        chal = doc.get("challenge") or {}
        nonce, answers = str(chal.get("nonce") or ""), dict(chal.get("answers") or {})
    except (ValueError, KeyError, TypeError, AttributeError):
        return "not a check-in"
    if not isinstance(node, str) or not _ID.fullmatch(node) or path.stem != node:
        return "its node id is not its file name"
    if not all(isinstance(s, str) and _SHA.fullmatch(s) for s in shas) or at.tzinfo is None:
        return "a malformed sha256 or a time without a zone"
    if any(v < 0 for v in sizes.values()):
        return "a negative size"
    return Checkin(node, at, shas, sizes, nonce, {str(k): str(v) for k, v in answers.items()})


def read(folder: Path | None, warn: list[str]) -> list[Checkin]:
    if folder is None or not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        got = _parse(path)
        if isinstance(got, str):
            warn.append(f"check-in {path}: {got}, ignored")
        else:
            out.append(got)
    return out
