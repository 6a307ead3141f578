"""The data folder: the copies (`<collection>/<item id>/<file>`), partial downloads
(`.d4c-node/partial/<sha256>`) and the node's state (`.d4c-node/state.json`: what it
holds and when each copy was last verified, bytes downloaded per UTC day, when each
artifact was first seen under its minimum).

Every path is built from checked segments (`inventory.safe_segment`) and resolved
inside the folder before use; the state file is re-checked the same way when read,
since anyone with write access to the folder could have edited it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from d4c import canonical
from d4c.atomic import atomic_write
from d4c.errors import D4CError
from d4c.node.inventory import safe_segment

STATE = ".d4c-node"


@dataclass
class Held:
    sha256: str
    size: int
    relpath: str
    item_id: str
    asset: str
    verified_at: str


@dataclass
class State:
    held: dict[str, Held] = field(default_factory=dict)
    downloaded: dict[str, int] = field(default_factory=dict)  # UTC date -> bytes
    under_since: dict[str, str] = field(default_factory=dict)  # sha256 -> UTC date


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = root / STATE

    def path_of(self, relpath: str | PurePosixPath) -> Path:
        parts = PurePosixPath(relpath).parts
        if len(parts) != 3 or not all(safe_segment(p) for p in parts):
            raise D4CError(f"unsafe path {str(relpath)!r} for the data folder {self.root}")
        path = self.root.joinpath(*parts)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise D4CError(f"{relpath} resolves outside the data folder {self.root}")
        return path

    def partial(self, sha256: str) -> Path:
        return self.meta / "partial" / sha256

    def partial_bytes(self) -> int:
        folder = self.meta / "partial"
        return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0

    def held_bytes(self, state: State) -> int:
        return sum(h.size for h in state.held.values())

    def load(self) -> State:
        path = self.meta / "state.json"
        if not path.is_file():
            return State()
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            held = {k: Held(**v) for k, v in doc.get("held", {}).items()}
            state = State(held, {str(k): int(v) for k, v in doc.get("downloaded", {}).items()},
                          {str(k): str(v) for k, v in doc.get("under_since", {}).items()})
        except (ValueError, TypeError, AttributeError):
            raise D4CError(f"{path}: not a node state file",
                           hint="move it aside; the next sync re-verifies what the folder holds") from None
        for sha, h in state.held.items():
            self.path_of(h.relpath)  # a state file that names a path outside is refused
            if sha != h.sha256 or not isinstance(h.size, int) or not _when(h.verified_at):
                raise D4CError(f"{path}: entry {sha[:16]} is malformed",
                               hint="move the file aside; the next sync starts afresh")
        return state

    def save(self, state: State) -> None:
        doc: dict[str, Any] = {
            "held": {k: vars(state.held[k]) for k in sorted(state.held)},
            "downloaded": dict(sorted(state.downloaded.items())[-40:]),  # the last 40 days
            "under_since": dict(sorted(state.under_since.items())),
        }
        atomic_write(self.meta / "state.json", canonical.dumps(doc))

    def remove(self, state: State, sha256: str) -> None:
        h = state.held.pop(sha256, None)
        if h is not None:
            path = self.path_of(h.relpath)
            path.unlink(missing_ok=True)
            for folder in (path.parent, path.parent.parent):
                try:
                    folder.rmdir()  # only when empty
                except OSError:
                    break


def _when(text: object) -> bool:
    try:
        return isinstance(text, str) and datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
