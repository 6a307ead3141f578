"""Smaller sources for `d4c build --sample`: a byte range, some zip members, a bbox.

Each `sample.sources` entry of a recipe (`name:` one of its sources) says how a pull
request's sample build reads less of that source: `range: {start, length}` fetches only those bytes; `members: [...]` reads a zip
through ranged reads (its end record, central directory and the named members only) and
hands the transform a zip of just those members (stored, the archive's own timestamps);
`bbox: [minx, miny, maxx, maxy]` is given to the transform (`ctx.sample_bbox(name)`) to
filter while it reads. Places are tried as a full fetch tries them (the cached full source,
the file in git, mirrors, then the recipe URLs) but only ever with ranged reads: a server
that ignores Range is refused, never downloaded whole.

A sample cannot be checked against the full source's sha256, so its bytes are pinned by
what is recorded: every range read (start, length, sha256), the same wherever it came
from, and the sha256 of the file handed over; `sha256:` in the recipe makes a mismatch an
error. Sampled files live under `<cache>/samples/`, apart from the verified sources, and a
manifest holding them says `sample: true`, which `d4c release` refuses.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import requests

from d4c import archive, fetch, http, paths
from d4c.errors import D4CError
from d4c.rangefile import RangeFile
from d4c.recipe import Recipe, Source
from d4c.redact import redact

MAX_BYTES = 2**30  # what one sample may read of its source, in all
MAX_MEMBERS = 1000
_BLOCK = 2**16  # ranged reads are coalesced into blocks at least this big
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
log = logging.getLogger("d4c.sample")


@dataclass(frozen=True)
class Spec:
    """One source's `sample.sources` entry, checked."""

    name: str
    start: int | None = None
    length: int | None = None
    members: tuple[str, ...] = ()
    bbox: tuple[float, float, float, float] | None = None
    sha256: str | None = None

    @property
    def reads(self) -> bool:
        """True when the sample reads less of the source (not only a bbox for the transform)."""
        return self.length is not None or bool(self.members)


class _Refused(D4CError):
    """A sample spec or archive that is hostile or impossible: refused, no other place tried."""


class _Failed(Exception):
    """One place could not give the sample; the next place is tried."""


def _member_name(where: str, name: Any) -> str:
    """A member name exactly as the zip stores it; nothing that could climb or hide."""
    if not isinstance(name, str) or not name or len(name) > 1024:
        raise _Refused(f"{where}: member {name!r} must be a non-empty name of at most 1024 characters")
    if "\\" in name or "\0" in name or name.endswith("/") or any(ord(c) < 32 for c in name):
        raise _Refused(f"{where}: member {name!r} has a backslash, control character or trailing '/'")
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or "." in name.split("/") or "" in name.split("/"):
        raise _Refused(f"{where}: member {name!r} must be a relative path without empty, '.' or '..' parts")
    return name


def _one(recipe: Recipe, src: Source, entry: dict[str, Any]) -> Spec:
    where = f"{recipe.path}: sample.sources[{src.name}]"
    extra = set(entry) - {"name", "range", "members", "bbox", "sha256"}
    if extra:
        raise _Refused(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    if len(entry) < 2:
        raise _Refused(f"{where}: give a range, members and/or a bbox")
    start = length = None
    if "range" in entry:
        rng = entry["range"]
        if not isinstance(rng, dict) or set(rng) != {"start", "length"}:
            raise _Refused(f"{where}.range: must be {{start: BYTE, length: BYTES}}")
        start, length = rng["start"], rng["length"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, length)):
            raise _Refused(f"{where}.range: start and length must be whole numbers")
        if start < 0 or not 0 < length <= MAX_BYTES:
            raise _Refused(f"{where}.range: start must be >= 0 and length 1 to {MAX_BYTES} bytes")
        if src.size is not None and start + length > src.size:
            raise _Refused(f"{where}.range: bytes {start}..{start + length - 1} pass the end of the "
                           f"{src.size}-byte source")
        if src.extract:
            raise _Refused(f"{where}.range: a byte range of an archive is not an archive; use members")
    members = entry.get("members", [])
    if not isinstance(members, list) or len(members) > MAX_MEMBERS or ("members" in entry and not members):
        raise _Refused(f"{where}.members: must be a list of 1 to {MAX_MEMBERS} member names")
    names = tuple(_member_name(f"{where}.members", m) for m in members)
    if len(set(names)) != len(names):
        raise _Refused(f"{where}.members: a member is named twice")
    if names and length is not None:
        raise _Refused(f"{where}: range and members exclude each other")
    bbox = entry.get("bbox")
    if bbox is not None:
        ok = (isinstance(bbox, list) and len(bbox) == 4
              and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox))
        if not ok or not (bbox[0] <= bbox[2] and bbox[1] <= bbox[3]):
            raise _Refused(f"{where}.bbox: must be [minx, miny, maxx, maxy] with min <= max")
    sha = entry.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
        raise _Refused(f"{where}.sha256: must be 64 lowercase hex digits")
    return Spec(src.name, start, length, names, tuple(map(float, bbox)) if bbox else None, sha)  # type: ignore[arg-type]


def specs(recipe: Recipe) -> dict[str, Spec]:
    """The checked `sample.sources` of a recipe (name -> Spec); one line for anything hostile."""
    declared = (recipe.data.get("sample") or {}).get("sources") or []
    if not isinstance(declared, list) or not all(isinstance(e, dict) for e in declared):
        raise _Refused(f"{recipe.path}: sample.sources must be a list of {{name, range|members|bbox}}")
    by_name = {s.name: s for s in recipe.sources}
    found: dict[str, Spec] = {}
    for entry in declared:
        name = entry.get("name")
        if name not in by_name:
            raise _Refused(f"{recipe.path}: sample.sources names {name!r}, which is not a source",
                           hint=f"the recipe's sources are {sorted(by_name)}")
        if name in found:
            raise _Refused(f"{recipe.path}: sample.sources names {name!r} twice")
        found[name] = _one(recipe, by_name[name], entry)
    return dict(sorted(found.items()))


@dataclass
class _Reads:
    """Ranged reads of one place: local file or HTTP. Every read is logged as (start, length,
    sha256), so what a sample took is recorded the same whichever place gave it."""

    place: str
    size: int
    session: requests.Session | None = None
    pieces: list[list[Any]] = field(default_factory=list)
    total: int = 0

    def get(self, start: int, length: int) -> bytes:
        length = min(length, self.size - start)
        if start < 0 or length <= 0:
            return b""
        if self.total + length > MAX_BYTES:
            raise _Refused(f"the sample would read more than {MAX_BYTES} bytes of the source")
        data = self._local(start, length) if self.session is None else self._http(start, length)
        self.total += len(data)
        self.pieces.append([start, len(data), hashlib.sha256(data).hexdigest()])
        return data

    def _local(self, start: int, length: int) -> bytes:
        with open(self.place, "rb") as fh:
            fh.seek(start)
            data = fh.read(length)
        if len(data) != length:
            raise _Failed(f"the file ended before byte {start + length}")
        return data

    def _http(self, start: int, length: int) -> bytes:
        assert self.session is not None
        end = start + length - 1
        headers = {"Range": f"bytes={start}-{end}", "Accept-Encoding": "identity"}
        try:
            with self.session.get(self.place, headers=headers, stream=True) as resp:
                if resp.status_code != 206:
                    raise _Failed(f"HTTP {resp.status_code} to a Range request (a sample is only "
                                        "read in ranges, never downloaded whole)")
                want = f"bytes {start}-{end}/{self.size}"
                if resp.headers.get("Content-Range", "") != want:
                    raise _Failed(f"Content-Range {resp.headers.get('Content-Range')!r}, expected {want!r}")
                data = resp.raw.read(length + 1, decode_content=False)
        except requests.RequestException as exc:
            raise _Failed(http.describe(exc)) from None
        if len(data) != length:
            raise _Failed(f"sent {len(data)}{'+' if len(data) > length else ''} bytes for a "
                                f"{length}-byte range")
        return data


def _size(src: Source, place: str, sess: requests.Session | None) -> int:
    """The place's file size: a local file's, the recipe's, else what the server says for bytes 0-0."""
    local = fetch.local_path(place)
    if local is not None:
        if not local.is_file():
            raise _Failed("not present")
        actual = local.stat().st_size
    elif src.size is not None:  # every answer's Content-Range must then say this size
        return src.size
    else:
        assert sess is not None
        try:
            with sess.get(place, headers={"Range": "bytes=0-0", "Accept-Encoding": "identity"}, stream=True) as resp:
                rng = resp.headers.get("Content-Range", "")
                if resp.status_code != 206 or not re.fullmatch(r"bytes 0-0/\d{1,18}", rng):
                    raise _Failed(f"HTTP {resp.status_code} with Content-Range {rng!r} to a Range request")
                actual = int(rng.rsplit("/", 1)[1])
        except requests.RequestException as exc:
            raise _Failed(http.describe(exc)) from None
    if src.size is not None and actual != src.size:
        raise _Failed(f"{actual} bytes, the recipe declares {src.size}")
    return actual


def _zip_subset(spec: Spec, reads: _Reads, out: Path) -> None:
    """The named members, read through ranges, into a new zip (stored, the archive's timestamps)."""
    buffered = io.BufferedReader(RangeFile(reads.size, lambda a, b: reads.get(a, b - a + 1)), buffer_size=_BLOCK)
    try:
        with zipfile.ZipFile(buffered) as zin, zipfile.ZipFile(out, "w") as zout:
            for name in spec.members:
                try:
                    info = zin.getinfo(name)
                except KeyError:
                    raise _Refused(f"sample.sources[{spec.name}]: member {name!r} is not in the archive") from None
                if info.is_dir() or (info.external_attr >> 16) & 0o170000 not in (0, 0o100000):
                    raise _Refused(f"sample.sources[{spec.name}]: member {name!r} is not a plain file")
                if info.file_size > MAX_BYTES:
                    raise _Refused(f"sample.sources[{spec.name}]: member {name!r} unpacks to more than "
                                   f"{MAX_BYTES} bytes")
                zi = zipfile.ZipInfo(name, date_time=info.date_time)
                zi.external_attr = (0o100755 if (info.external_attr >> 16) & 0o111 else 0o100644) << 16
                written = 0
                with zin.open(info) as fin, zout.open(zi, "w", force_zip64=info.file_size >= 2**31) as fout:
                    while chunk := fin.read(2**20):
                        written += len(chunk)
                        if written > info.file_size:
                            raise _Refused(f"sample.sources[{spec.name}]: member {name!r} is longer than "
                                           "its header says")
                        fout.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError, ValueError,
            zlib.error) as exc:  # RuntimeError: an encrypted member
        raise _Failed(f"not a readable zip archive ({exc})") from None


def _take(spec: Spec, src: Source, place: str, out: Path) -> list[list[Any]]:
    """Read the sample of `src` from one place into `out`; return the ranges read."""
    sess = http.session(retries=2, backoff_factor=0.2) if fetch.local_path(place) is None else None
    try:
        local = fetch.local_path(place)
        reads = _Reads(str(local) if local else place, _size(src, place, sess), sess)
        if spec.members:
            _zip_subset(spec, reads, out)
        else:
            assert spec.start is not None and spec.length is not None
            if spec.start + spec.length > reads.size:
                raise _Refused(f"sample.sources[{spec.name}].range passes the end of the {reads.size}-byte source")
            with open(out, "wb") as fh:
                pos = spec.start
                while pos < spec.start + spec.length:
                    step = min(2**24, spec.start + spec.length - pos)
                    fh.write(reads.get(pos, step))
                    pos += step
        return reads.pieces
    finally:
        if sess is not None:
            sess.close()


def _places(recipe: Recipe, src: Source, mode: str, mirrors: Sequence[str]) -> list[str]:
    cached = fetch.cache_path(src.sha256)
    places = [str(cached)] if cached.is_file() else []  # verified when it was stored
    if src.path and not Path(src.path).is_absolute() and ".." not in Path(src.path).parts:
        places.append(str(recipe.folder / src.path))
    places += [fetch.mirror_location(b, src.sha256) for b in mirrors]
    if mode == "auto":
        places += [u for u in (src.url, *src.alternate_urls) if u]
    return places


def _store(tmp: Path, sha: str, extract: bool) -> Path:
    """Keep the sample under `<cache>/samples/` by its own sha256 (or its unpacked folder)."""
    final = paths.cache_dir() / "samples" / "sha256" / sha[:2] / sha
    final.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(tmp, 0o444)
    os.replace(tmp, final)
    if not extract:
        return final
    dest = paths.cache_dir() / "samples" / "extracted" / sha
    return dest if dest.is_dir() else archive.extract(final, dest)


def fetch_one(recipe: Recipe, spec: Spec, mode: str, mirrors: Sequence[str]) -> tuple[Path, dict[str, Any]]:
    """The sampled file (or folder) of one source and its manifest facts."""
    src = next(s for s in recipe.sources if s.name == spec.name)
    tmpdir = paths.cache_dir() / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for place in _places(recipe, src, mode, mirrors):
        fd, name = tempfile.mkstemp(prefix=f"sample-{src.sha256[:12]}-", dir=tmpdir)
        os.close(fd)
        tmp = Path(name)
        try:
            pieces = _take(spec, src, place, tmp)
            sha = fetch.sha256_file(tmp)
            if spec.sha256 is not None and sha != spec.sha256:
                raise _Failed(f"the sample has sha256 {sha}, the recipe pins {spec.sha256}")
            size = tmp.stat().st_size
            path = _store(tmp, sha, src.extract)
        except _Failed as exc:
            failures.append(f"{redact(place)}: {exc}")
            continue
        except D4CError as exc:  # refused (hostile or impossible): no other place is tried
            raise D4CError(f"dataset {recipe.id}, sample of {src.name!r}: {exc.message}", hint=exc.hint) from None
        finally:
            tmp.unlink(missing_ok=True)
        if spec.sha256 is None:
            log.warning("sample of %s is not pinned: add `sha256: %s` to its sample.sources entry", src.name, sha)
        log.info("%s: sample read from %s (%d bytes in %d ranges)", src.name, redact(place),
                 sum(p[1] for p in pieces), len(pieces))
        return path, facts(spec, src, sha, size, pieces)
    raise D4CError(f"dataset {recipe.id}: no place gave the sample of source {src.name!r}: "
                   + ("; ".join(failures) or "no mirror or URL to try"),
                   hint="the sample is read with HTTP Range requests; check the url, `range` and `members`")


def facts(spec: Spec, src: Source, sha: str | None, size: int | None, pieces: list[list[Any]]) -> dict[str, Any]:
    """The manifest's record of one sampled source (schemas/manifest.schema.json `sample_sources`)."""
    return {"name": spec.name, "of_sha256": src.sha256,
            "range": None if spec.length is None else {"start": spec.start, "length": spec.length},
            "members": list(spec.members) or None, "bbox": list(spec.bbox) if spec.bbox else None,
            "sha256": sha, "size": size, "read": pieces}


def resolve(recipe: Recipe, mode: str, mirrors: Sequence[str] = ()) -> tuple[dict[str, Path], list[dict[str, Any]]]:
    """Sampled paths of the sources that read less, and the facts of every sampled source."""
    bases = fetch.mirror_bases(mirrors, recipe.folder.parent.parent)
    found: dict[str, Path] = {}
    recorded: list[dict[str, Any]] = []
    for name, spec in specs(recipe).items():
        if spec.reads:
            found[name], fact = fetch_one(recipe, spec, mode, bases)
        else:  # a bbox only: the full source, filtered by the transform as it reads
            src = next(s for s in recipe.sources if s.name == name)
            fact = facts(spec, src, None, None, [])
        recorded.append(fact)
    return found, recorded


def bboxes(recipe: Recipe) -> dict[str, list[float]]:
    """source name -> the sample bbox the transform filters with (`ctx.sample_bbox`)."""
    return {n: list(s.bbox) for n, s in specs(recipe).items() if s.bbox is not None}
