"""`local`: a directory with the same layout rules as a bucket (the offline default)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from d4c.atomic import atomic_write
from d4c.digest import sha256_file
from d4c.errors import D4CError
from d4c.release.targets.base import BaseTarget, ReleaseContext, TargetConfig


class LocalTarget(BaseTarget):
    kind = "local"
    REPLACES = True

    def __init__(self, config: TargetConfig, environ: Mapping[str, str] | None = None):
        super().__init__(config, environ)
        self.root = Path(str(config.options.get("path", "publish")))

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise D4CError(f"target {self.name!r}: key {key!r} escapes {self.root}")
        return path

    def probe(self, ctx: ReleaseContext) -> list[str]:
        """The folder (or the nearest folder above it that exists) must be writable."""
        here = self.root.resolve()
        while not here.exists() and here != here.parent:
            here = here.parent
        if not here.is_dir() or not os.access(here, os.W_OK | os.X_OK):
            raise D4CError(f"target {self.name!r}: {here} is not a writable folder",
                           hint=f"fix the permissions or options.path of {self.root}")
        return [] if self.root.is_dir() else [f"no folder at {self.root} yet: the release makes it"]

    def exists(self, key: str, sha256: str) -> bool:
        path = self._path(key)
        if not path.is_file():
            return False
        if sha256_file(path) != sha256:
            # An immutable key never gets different bytes: stop and say which one.
            raise D4CError(f"target {self.name!r}: {path} exists with different content",
                           hint="a published file is immutable: bump the version, "
                                "or remove the corrupt copy if it is damaged")
        return True

    def upload(self, key: str, path: Path, sha256: str, md5: str) -> None:
        atomic_write(self._path(key), src=path)

    def verify(self, key: str, sha256: str) -> bool:
        path = self._path(key)
        return path.is_file() and sha256_file(path) == sha256

    def replace(self, key: str, path: Path, sha256: str, md5: str) -> None:
        """A damaged file gives way to ours in one rename (readers see old or new, never
        half), then the bytes are read back like a release's."""
        atomic_write(self._path(key), src=path)
        self.replaced(key, sha256)

    def delete_older_versions(self, dataset_id: str, keep_version: str) -> list[str]:
        prefix = self.listing_prefix(dataset_id)
        base = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else self.root
        if not base.is_dir():
            return []
        keys = [p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file()]
        old = self.older_version_keys(keys, dataset_id, keep_version)
        for key in old:
            path = self._path(key)
            path.unlink()
            for parent in path.parents:  # drop emptied version folders
                if parent == self.root or any(parent.iterdir()):
                    break
                parent.rmdir()
        return old

    def read_state(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.is_file() else None

    def write_state(self, key: str, data: bytes, content_type: str = "application/json") -> None:
        atomic_write(self._path(key), data=data)
