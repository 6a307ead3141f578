"""The release journal: what each step did, kept on local disk and on `journal.target`.

The journal is a record of facts (a DOI reserved, a file verified on a target), never
the only truth: every step still looks at the world before acting. Keeping it on the
target the config's `journal:` names (at a key outside every public prefix, see
`d4c.release.locations`) lets a fresh machine resume a release that crashed elsewhere;
without one it is only in `.d4c/journal/<id>/v<version>.json` on this machine.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from d4c import canonical
from d4c.atomic import atomic_write
from d4c.release.targets.base import StateStore, Target

log = logging.getLogger(__name__)


class Journal:
    def __init__(self, local: Path, primary: Target | None, key: str | None) -> None:
        self.local = local
        self.primary = primary if isinstance(primary, StateStore) else None
        self.key = key
        self.data: dict[str, Any] = {"journal_version": 1, "steps": {}, "targets": {}}

    @property
    def where(self) -> str:
        return f"{self.primary.name}:{self.key}" if self.primary else str(self.local)

    def load(self) -> None:
        """Prefer the journal target's copy (it survives the machine); fall back to local."""
        raw = None
        if self.primary is not None and self.key is not None:
            raw = self.primary.read_state(self.key)  # type: ignore[attr-defined]
        if raw is None and self.local.is_file():
            raw = self.local.read_bytes()
        if raw is not None:
            try:
                loaded = json.loads(raw)
            except ValueError:
                log.warning("journal %s is unreadable; starting afresh (steps re-check the world)",
                            self.where)
                return
            if isinstance(loaded, dict):
                self.data.update(loaded)

    def done(self, step: str) -> bool:
        return bool(self.data["steps"].get(step))

    def target_state(self, name: str) -> dict[str, Any]:
        return dict(self.data["targets"].setdefault(name, {}))

    def set_target_state(self, name: str, facts: dict[str, Any]) -> None:
        self.data["targets"].setdefault(name, {}).update(facts)

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value

    def mark(self, step: str) -> None:
        self.data["steps"][step] = True

    def save(self) -> None:
        raw = canonical.encode(self.data)
        atomic_write(self.local, data=raw, durable=False)  # the journal target's copy is the one kept
        if self.primary is not None and self.key is not None:
            self.primary.write_state(self.key, raw)  # type: ignore[attr-defined]
