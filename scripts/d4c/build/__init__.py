"""Deterministic builds: the transform contract, runners, manifest, `--check`.

Public entry points: `build` (one build into a folder) and `build_twice` (the
`--check` build). See docs/architecture.md for the context API and the manifest.
"""
from d4c.build.check import build_twice
from d4c.build.pipeline import MANIFEST, PROVENANCE, BuildOptions, build

__all__ = ["MANIFEST", "PROVENANCE", "BuildOptions", "build", "build_twice"]
