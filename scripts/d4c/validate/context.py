"""What a lint sees: the loaded recipe, where it lives, and a way to report."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d4c.validate.lints import Finding
from d4c.validate.yamlpos import JPath, Loaded

SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Context:
    loaded: Loaded
    display: str  # the path as shown in findings
    recipe: Path
    allow_loopback: bool = False
    found: list[Finding] = field(default_factory=list)

    @property
    def data(self) -> dict[str, Any]:
        return self.loaded.data if isinstance(self.loaded.data, dict) else {}

    @property
    def folder(self) -> Path:
        return self.recipe.parent

    @property
    def root(self) -> Path | None:
        """The repository root when the recipe sits at <root>/datasets/<folder>/recipe.yaml."""
        parent = self.recipe.parent.parent
        return parent.parent if parent.name == "datasets" else None

    def add(self, lint: str, path: JPath, message: str, *, key: bool = False) -> None:
        line, col = self.loaded.pos(path, key=key)
        self.found.append(Finding(self.display, line, col, lint, message))

    def items(self, name: str) -> list[tuple[int, dict[str, Any]]]:
        """The mapping entries of a top-level list (others are the schema's business)."""
        value = self.data.get(name)
        if not isinstance(value, list):
            return []
        return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)]

    def text(self, *path: str | int) -> str | None:
        """The string at `path`, or None when absent or not a string."""
        node: Any = self.data
        for part in path:
            if isinstance(part, int):
                node = node[part] if isinstance(node, list) and part < len(node) else None
            else:
                node = node.get(part) if isinstance(node, dict) else None
        return node if isinstance(node, str) else None


def inside(folder: Path, rel: str) -> Path | None:
    """`folder/rel` resolved (symlinks followed) if it stays inside `folder`, else None."""
    if not rel or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel) or "\\" in rel:
        return None
    if ".." in Path(rel).parts:
        return None
    base = folder.resolve()
    try:
        target = (base / rel).resolve()
    except (OSError, RuntimeError, ValueError):  # symlink loops, NUL bytes
        return None
    return target if target == base or base in target.parents else None
