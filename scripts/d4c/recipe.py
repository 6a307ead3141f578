"""Typed, read-only view of a recipe for the steps that consume one (build, release, ...).

Validation with positions lives in `d4c.validate`; this module assumes a recipe that
passed it, but still fails with one clear line (never a traceback) when it did not.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from d4c import paths
from d4c.errors import D4CError

# Artifact file extension per output format.
EXTENSIONS = {
    "geoparquet": "parquet",
    "parquet": "parquet",
    "csv": "csv",
    "cog": "tif",
    "pmtiles": "pmtiles",
    "flatgeobuf": "fgb",
    "gpkg": "gpkg",
}
TABULAR_FORMATS = {"geoparquet", "parquet", "csv", "flatgeobuf", "gpkg"}


@dataclass(frozen=True)
class Source:
    name: str
    sha256: str
    size: int | None = None
    url: str | None = None
    path: str | None = None  # relative to the dataset folder, for small files kept in git
    alternate_urls: tuple[str, ...] = ()
    extract: bool = False  # unpack an archive (zip, tar.*) after verification


@dataclass(frozen=True)
class Output:
    name: str
    format: str
    sort_by: tuple[str, ...] = ()
    primary_key: tuple[str, ...] = ()

    def file_name(self, dataset_id: str, version: str, single: bool) -> str:
        """`<id>_v<version>[_<output-name>].<ext>`: the name is omitted for a lone output."""
        suffix = "" if single else f"_{self.name}"
        return f"{dataset_id}_v{version}{suffix}.{EXTENSIONS[self.format]}"


@dataclass(frozen=True)
class ShardSpec:
    """`shards:` and `reduce:` (docs/scale.md): how to partition the build, how to merge it."""

    by: str
    max: int
    sources: tuple[str, ...] | None = None  # the partitioned sources; None: every source
    reduce: str = "concat"
    key: str | None = None  # `row_range`: the column whose sorted order is cut into ranges
    level: int | None = None  # `tile`: the zoom level of the tiles cut into runs


@dataclass(frozen=True)
class Recipe:
    path: Path
    data: dict[str, Any]
    sha256: str
    sources: tuple[Source, ...] = field(default=())
    outputs: tuple[Output, ...] = field(default=())
    raw: bytes = field(default=b"", repr=False)  # the bytes `sha256` was taken of (the build runs these)

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def version(self) -> str:
        return str(self.data["version"])

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def transform(self) -> dict[str, Any]:
        return dict(self.data.get("transform") or {})

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.transform.get("params") or {})

    @property
    def shards(self) -> ShardSpec | None:
        spec = self.data.get("shards")
        if not isinstance(spec, dict):
            return None
        try:
            names = spec.get("sources")
            return ShardSpec(by=str(spec["by"]), max=int(spec["max"]),
                             sources=tuple(map(str, names)) if names else None,
                             reduce=str((self.data.get("reduce") or {}).get("method", "concat")),
                             key=str(spec["key"]) if spec.get("key") is not None else None,
                             level=int(spec["level"]) if spec.get("level") is not None else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise D4CError(f"{self.path}: `shards:` is incomplete ({exc})", hint="run `d4c validate`") from None

    def artifact_name(self, output: Output) -> str:
        return output.file_name(self.id, self.version, single=len(self.outputs) == 1)


def plain(node: Any) -> Any:
    """YAML to JSON-like values: ruamel's safe loader gives dicts and lists; dates become ISO strings."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if hasattr(node, "isoformat"):
        return node.isoformat()
    return node


def load(path: Path) -> Recipe:
    """Read a recipe file into a `Recipe`, or raise one clear `D4CError`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise D4CError(f"cannot read recipe {path}: {exc.strerror}") from None
    try:
        data = plain(YAML(typ="safe", pure=True).load(raw))
    except YAMLError as exc:
        raise D4CError(f"{path}: not valid YAML", hint="run `d4c validate` for details") from exc
    if not isinstance(data, dict):
        raise D4CError(f"{path}: a recipe must be a mapping", hint="run `d4c validate`")
    missing = [key for key in ("id", "version") if key not in data]
    if missing:
        raise D4CError(f"{path}: recipe lacks {', '.join(missing)}", hint="run `d4c validate`")
    try:
        sources = tuple(
            Source(
                name=str(s["name"]),
                sha256=str(s["sha256"]),
                size=s.get("size"),
                url=s.get("url"),
                path=s.get("path"),
                alternate_urls=tuple(s.get("alternate_urls") or ()),
                extract=bool(s.get("extract", False)),
            )
            for s in data.get("sources") or []
        )
        outputs = tuple(
            Output(
                name=str(o["name"]),
                format=str(o["format"]),
                sort_by=tuple(o.get("sort_by") or ()),
                primary_key=tuple(o.get("primary_key") or ()),
            )
            for o in data.get("outputs") or []
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise D4CError(f"{path}: recipe is incomplete ({exc})", hint="run `d4c validate`") from None
    return Recipe(
        path=path, data=data, sha256=hashlib.sha256(raw).hexdigest(), sources=sources, outputs=outputs,
        raw=raw,
    )


def load_id(dataset_id: str, root: Path | None = None) -> Recipe:
    """Load datasets/<id>/recipe.yaml."""
    path = paths.recipe_path(dataset_id, root)
    if not path.is_file():
        raise D4CError(f"no recipe for dataset {dataset_id!r} at {path}", hint="check the id")
    return load(path)
