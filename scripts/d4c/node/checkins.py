"""Check-ins: what a node holds, verified, written after each sync (docs/nodes.md).

`<node id>.json` = {"node": id, "at": time, "budget": bytes, "held": [{"sha256", "size",
"verified_at"}]}, in canonical JSON. The node writes it to its data folder and, when the
config names a shared `checkins` folder, there too; that folder is what the project and
the other nodes count. Other nodes' files are untrusted: one that does not parse, names
another node, or lists a malformed sha256 is ignored with a warning line.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from d4c import canonical
from d4c.atomic import atomic_write
from d4c.node.store import State

_ID = re.compile(r"[0-9a-f]{32}")
_SHA = re.compile(r"[0-9a-f]{64}")
MAX_FILE = 64 << 20


@dataclass(frozen=True)
class Checkin:
    node: str
    at: datetime
    held: frozenset[str]


def document(node_id: str, at: str, budget: int, state: State) -> dict[str, object]:
    held = [{"sha256": h.sha256, "size": h.size, "verified_at": h.verified_at}
            for h in sorted(state.held.values(), key=lambda h: h.sha256)]
    return {"node": node_id, "at": at, "budget": budget, "held": held}


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
    except (ValueError, KeyError, TypeError):
        return "not a check-in"
    if not isinstance(node, str) or not _ID.fullmatch(node) or path.stem != node:
        return "its node id is not its file name"
    if not all(isinstance(s, str) and _SHA.fullmatch(s) for s in shas) or at.tzinfo is None:
        return "a malformed sha256 or a time without a zone"
    return Checkin(node, at, shas)


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
