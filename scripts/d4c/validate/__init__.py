"""Recipe validation: position-aware YAML loading, JSON-Schema findings and the lint registry.

Public API: `validate_paths(paths) -> list[Finding]`, `check_file(path)`, `LINTS`.
"""
from __future__ import annotations

from d4c.validate.lints import LINTS, Finding, Lint
from d4c.validate.runner import check_file, discover, validate_paths

__all__ = ["LINTS", "Finding", "Lint", "check_file", "discover", "validate_paths"]
