"""Target kinds: a Protocol (`base.Target`) plus an explicit name -> class registry.

Entries are import paths, so a kind whose module is missing or broken only fails
when a config actually uses it.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping

from d4c.errors import D4CError
from d4c.release.targets.base import (
    BaseTarget,
    ReleaseContext,
    ReleaseFile,
    StateStore,
    Target,
    TargetConfig,
    source_key,
)

KINDS: dict[str, str] = {
    "local": "d4c.release.targets.local:LocalTarget",
    "s3": "d4c.release.targets.s3:S3Target",
    "zenodo": "d4c.release.targets.zenodo:ZenodoTarget",
    "internet-archive": "d4c.release.targets.internet_archive:InternetArchiveTarget",
    "github": "d4c.release.targets.github:GitHubTarget",
}


def make_target(config: TargetConfig, environ: Mapping[str, str] | None = None) -> Target:
    """Instantiate the plug-in for `config.kind`; kinds take (config, environ)."""
    spec = KINDS.get(config.kind)
    if spec is None:
        raise D4CError(f"target {config.name!r}: unknown kind {config.kind!r}",
                       hint=f"use one of {', '.join(sorted(KINDS))}")
    module_name, _, cls_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise D4CError(f"target {config.name!r}: kind {config.kind!r} is not available ({exc})") from None
    target: Target = cls(config, environ)
    return target


__all__ = ["KINDS", "BaseTarget", "ReleaseContext", "ReleaseFile", "StateStore", "Target",
           "TargetConfig", "make_target", "source_key"]
