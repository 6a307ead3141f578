"""The typed documents every step passes along: a build manifest and a release record.

Each shape is parsed in exactly one place, here: read the JSON, check it against its JSON
Schema (d4c.schemas, shipped as package data), then expose the fields the steps use as
typed attributes. `doc` keeps the validated JSON itself, because the canonical bytes of
a manifest or record are what get hashed, published and compared; treat it as read-only.

The recipe has its own typed view (d4c.recipe.Recipe), built once from the validated YAML.
Anything that reads a manifest or a record from disk goes through `load_manifest`,
`load_record` or `load_either`; a document that is not one gives one clear line.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from d4c.errors import D4CError

# The recipe's descriptive fields a record snapshots as `metadata`, so the catalog never
# needs the recipe; the rest of a recipe is build detail. `retention` (a keep-until or
# takedown date) rides along so the catalog and the at-risk signal see it.
DESCRIPTIVE = ("title", "description", "license", "creators", "providers", "keywords",
               "temporal", "spatial", "retention")


@dataclass(frozen=True)
class SourceFact:
    """One raw source as the build saw it: its hash, and where the recipe said it lives."""
    name: str
    sha256: str
    size: int | None
    url: str | None
    path: str | None  # for a source kept in git beside the recipe


@dataclass(frozen=True)
class OutputFact:
    """One artifact of a build, with the facts the diff and the catalog read."""
    name: str
    file: str
    format: str
    media_type: str
    size: int
    sha256: str
    md5: str
    rows: int | None
    crs: str | None
    bbox: tuple[float, ...] | None


@dataclass(frozen=True)
class Manifest:
    doc: dict[str, Any]
    dataset_id: str
    version: str
    recipe_path: str
    commit: str | None  # None for a build outside git
    runner: str  # "" in old records that kept no environment
    sandbox: str
    source_date_epoch: int
    sources: tuple[SourceFact, ...]
    outputs: tuple[OutputFact, ...]

    @classmethod
    def from_doc(cls, doc: Any, *, where: str, checked: bool = True) -> Manifest:
        if checked:
            _check("manifest", doc, what="the manifest", where=where,
                          hint="manifests are written by `d4c build`; rebuild to get a valid one")
        with _shape(where, "manifest"):
            return cls._build(doc)

    @classmethod
    def _build(cls, doc: dict[str, Any]) -> Manifest:
        dataset_id, version, recipe_path, commit, runner, sandbox, epoch = _manifest_fields(doc)
        return cls(
            doc=doc, dataset_id=dataset_id, version=version, recipe_path=recipe_path,
            commit=commit, runner=runner, sandbox=sandbox, source_date_epoch=epoch,
            sources=tuple(SourceFact(*_source_fact(s)) for s in doc["sources"]),
            outputs=tuple(OutputFact(*_output_fact(o)) for o in doc["outputs"]),
        )


# The shape of each document, read field by field in the order of the typed objects below;
# `ReleaseRecord.check` reads the same fields in the same order without building the objects.
def _manifest_fields(doc: dict[str, Any]) -> tuple[Any, ...]:
    ds, env = doc["dataset"], doc.get("environment") or {}
    return (ds["id"], ds["version"], ds["recipe_path"], (doc.get("code") or {}).get("commit"),
            str(env.get("runner") or ""), _sandbox(env), int(doc["source_date_epoch"]))


def _source_fact(s: dict[str, Any]) -> tuple[Any, ...]:
    return s["name"], s["sha256"], s["size"], s["url"], s["path"]


def _output_fact(o: dict[str, Any]) -> tuple[Any, ...]:
    return (o["name"], o["file"], o["format"], o["media_type"], o["size"], o["sha256"], o["md5"],
            o["rows"], o["crs"], tuple(o["bbox"]) if o["bbox"] is not None else None)


def _file_copy(f: dict[str, Any]) -> tuple[Any, ...]:
    return (f["role"], f["name"], f["file"], f["size"], f["sha256"], f["md5"], f["media_type"],
            dict(f["urls"]))


def _source_copy(s: dict[str, Any]) -> tuple[Any, ...]:
    return s["name"], s["sha256"], s["size"], dict(s["urls"])


def _record_fields(doc: dict[str, Any], dataset_id: str, version: str,
                   where: str) -> tuple[Any, ...]:
    if (dataset_id, version) != (doc["id"], doc["version"]):
        raise D4CError(f"the record is for {doc['id']} {doc['version']} but its manifest "
                       f"for {dataset_id} {version}", where=where)
    return doc["id"], doc["version"], doc["released_at"], doc["doi"]


def _targets(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in (doc.get("targets") or {}).items()}


@dataclass(frozen=True)
class FileCopy:
    """One released file (artifact, torrent, manifest, bundle, provenance) and its copies."""
    role: str
    name: str
    file: str
    size: int
    sha256: str
    md5: str
    media_type: str
    urls: dict[str, str]  # target name -> URL


@dataclass(frozen=True)
class SourceCopy:
    """One raw source of a release and the mirrors that hold it (target name -> URL)."""
    name: str
    sha256: str
    size: int | None
    urls: dict[str, str]


@dataclass(frozen=True)
class ReleaseRecord:
    doc: dict[str, Any]
    id: str
    version: str
    released_at: str
    manifest: Manifest
    doi: str | None
    files: tuple[FileCopy, ...]
    sources: tuple[SourceCopy, ...]
    targets: dict[str, dict[str, Any]]  # target name -> facts its hooks returned

    @classmethod
    def from_doc(cls, doc: Any, *, where: str, checked: bool = True) -> ReleaseRecord:
        if checked:
            _check("release", doc, what="the release record", where=where,
                          hint="records are written by `d4c release`; see docs/architecture.md")
        with _shape(where, "release record"):
            manifest = Manifest.from_doc(doc["manifest"], where=f"{where} (its manifest)",
                                         checked=checked)
            return cls._build(doc, manifest, where)

    @classmethod
    def _build(cls, doc: dict[str, Any], manifest: Manifest, where: str) -> ReleaseRecord:
        rid, version, released_at, doi = _record_fields(doc, manifest.dataset_id,
                                                        manifest.version, where)
        return cls(
            doc=doc, id=rid, version=version, released_at=released_at, manifest=manifest, doi=doi,
            files=tuple(FileCopy(*_file_copy(f)) for f in doc["files"]),
            sources=tuple(SourceCopy(*_source_copy(s)) for s in doc["sources"]),
            targets=_targets(doc),
        )

    @staticmethod
    def check(doc: Any, *, where: str) -> None:
        """`from_doc(doc, checked=False)`'s shape check, with its error lines, without
        building the objects: the catalog's bulk read keeps the JSON (0.4 s at 10k)."""
        with _shape(where, "release record"):
            mdoc = doc["manifest"]
            with _shape(f"{where} (its manifest)", "manifest"):
                dataset_id, version, *_ = _manifest_fields(mdoc)
                for s in mdoc["sources"]:
                    _source_fact(s)
                for o in mdoc["outputs"]:
                    _output_fact(o)
            _record_fields(doc, dataset_id, version, where)
            for f in doc["files"]:
                _file_copy(f)
            for s in doc["sources"]:
                _source_copy(s)
            _targets(doc)

    def urls_of(self, role: str) -> dict[str, dict[str, str]]:
        """file name -> {target: URL} for the files of one role."""
        return {f.file: f.urls for f in self.files if f.role == role}


def _sandbox(env: dict[str, Any]) -> str:
    """How the build was isolated: `environment.sandbox`, or for manifests written before
    that field, "none" exactly when `network_isolation` was "none" (nothing else ran bare)."""
    if "sandbox" in env:
        return str(env["sandbox"])
    return str(env.get("network_isolation") or "none")


def _check(name: str, doc: Any, **how: str) -> None:
    # jsonschema is imported on first use: `d4c catalog build` never checks a schema, and
    # importing it cost 0.17 s before the build's workers fork
    from d4c import schemas

    schemas.check(name, doc, **how)


@contextmanager
def _shape(where: str, what: str) -> Iterator[None]:
    """Unchecked loads (the catalog's bulk read) still fail in one line on a bad shape."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise D4CError(f"not a valid {what}: {type(exc).__name__} {exc}", where=where,
                       hint="check it with `d4c verify`, or rewrite it with `d4c release`") from None


# Digits to "0", every other byte to a space: a run of 19 digits is then a substring
# search (C speed; a regex costs more than orjson saves).
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG = b"0" * 19


def parse_json(raw: bytes, path: Path | str, what: str) -> Any:
    # orjson first (half of json's time on records); what it refuses (NaN, 1e400,
    # UTF-16, lone surrogates, a BOM, bad JSON) goes to json, so values and error lines are
    # json's. orjson reads an integer past 64 bits as a float, so 19+ digits in a row go to
    # json too.
    if _LONG not in raw.translate(_DIGITS):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise D4CError(f"{path} is not JSON ({exc})", hint=f"give a {what}") from None


def read_json(path: Path | str, what: str) -> Any:
    """The parsed JSON at `path`, or one line saying why it cannot be read (a str path
    spares a bulk read pathlib's cost)."""
    try:
        with open(path, "rb") as fh:
            return parse_json(fh.read(), path, what)
    except FileNotFoundError:
        raise D4CError(f"no {what} at {path}") from None
    except OSError as exc:
        raise D4CError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_manifest(path: Path) -> Manifest:
    return Manifest.from_doc(read_json(path, "manifest"), where=str(path))


def load_record(path: Path, *, checked: bool = True) -> ReleaseRecord:
    """`checked=False` skips the JSON Schema (about 2 ms a record) for bulk reads of records
    that `d4c release` validated when it wrote them; the shape is still enforced."""
    return ReleaseRecord.from_doc(read_json(path, "release record"), where=str(path),
                                  checked=checked)


def load_either(path: Path) -> Manifest | ReleaseRecord:
    """A build manifest or a release record, told apart by their version keys."""
    doc = read_json(path, "manifest or release record")
    if isinstance(doc, dict) and "record_version" in doc:
        return ReleaseRecord.from_doc(doc, where=str(path))
    if isinstance(doc, dict) and "manifest_version" in doc:
        return Manifest.from_doc(doc, where=str(path))
    raise D4CError(f"{path} is neither a build manifest nor a release record",
                   hint="give a manifest.json or releases/<id>/<version>.json")
