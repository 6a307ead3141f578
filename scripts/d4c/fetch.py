"""The fetch step: a recipe's sources, by sha256, into the content-addressed cache.

Order per source: the file kept in git (`path:`, always re-hashed so an edit is never
hidden by the cache), the cache (re-verified), each source mirror at
`sources/sha256/<aa>/<hash>`, then the recipe's `url` and `alternate_urls` (skipped in
mode "mirrors"). A URL is only a place to get bytes: whatever arrives is
streamed through sha256 into a partial file and renamed into the cache only when the
hash is right, so a wrong byte is never stored or used. Downloads run in parallel,
resume with Range after a broken connection, stop at the recipe's declared size, and
retry 429/5xx with backoff (d4c.http). Archives with `extract: true` are unpacked
safely (d4c.archive) into `extracted/<hash>/`.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

import requests
import urllib3
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from d4c import archive, http, paths
from d4c import copies as copies_of
from d4c.digest import sha256_file
from d4c.errors import D4CError, UsageError
from d4c.recipe import Recipe, Source

Mode = Literal["auto", "mirrors"]
MODES: tuple[str, ...] = ("auto", "mirrors")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 2**20
log = logging.getLogger("d4c.fetch")
# (source name, bytes so far, declared size) -> None; called from worker threads.
ProgressHook = Callable[[str, int, "int | None"], None]


class _Failed(Exception):
    """One place failed to give the right bytes; the next place is tried."""


class _Broken(Exception):
    """A transfer broke off midway; the same place is tried again, resuming."""


# Sources downloaded at once. A source is latency-bound more often than bandwidth-bound
# (one host each, small files); 8 reaches the >= 4x of bench/fetch on 16 sources, with at
# most 8 connections per build, which no host here is asked to bear for one dataset.
DEFAULT_JOBS = 8

def cache_path(sha256: str) -> Path:
    """Where a verified source lives in the cache: sha256/<aa>/<hash>."""
    return paths.cache_dir() / "sha256" / sha256[:2] / sha256


def extracted_path(sha256: str) -> Path:
    """Where an archive source is unpacked in the cache: extracted/<hash>/."""
    return paths.cache_dir() / "extracted" / sha256


def mirror_bases(extra: Sequence[str] = (), root: Path | None = None) -> list[str]:
    """Mirror base URLs: `extra`, then D4C_MIRRORS (space-separated), then the default
    local target `.d4c/publish/` of the repository when it exists; duplicates dropped."""
    bases = [*extra, *os.environ.get("D4C_MIRRORS", "").split()]
    if root is not None and (paths.state_dir(root) / "publish").is_dir():
        bases.append(str(paths.state_dir(root) / "publish"))
    return list(dict.fromkeys(b for b in bases if b))


def mirror_location(base: str, sha256: str) -> str:
    """The content-addressed key of a source under a mirror base (URL or folder)."""
    return f"{base.rstrip('/')}/sources/sha256/{sha256[:2]}/{sha256}"


@contextmanager
def _locked(sha256: str) -> Iterator[Path]:
    """Serialise work on one hash across processes; yield the partial-download path."""
    tmp = paths.cache_dir() / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    with open(tmp / f"{sha256}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield tmp / f"{sha256}.part"
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _Fetcher:
    """Fetches one recipe's sources; holds the settings shared by all of them."""

    def __init__(
        self,
        recipe: Recipe,
        *,
        mirrors: list[str],
        copies: Mapping[str, Sequence[str]],
        mode: Mode,
        recorded: Mapping[str, Sequence[str]],
        retries: int,
        backoff_factor: float,
        hook: ProgressHook,
    ) -> None:
        self.recipe = recipe
        self.mirrors = mirrors
        self.copies = copies
        self.mode = mode
        self.recorded = recorded
        self.retries = retries
        self.backoff_factor = backoff_factor
        self.hook = hook

    def _where(self, src: Source) -> str:
        return f"dataset {self.recipe.id}, source {src.name!r}"

    def fetch(self, src: Source) -> Path:
        if not _SHA256.match(src.sha256):
            raise D4CError(f"{self._where(src)}: sha256 {src.sha256!r} is not 64 lowercase hex digits",
                           where=str(self.recipe.path), hint="run `d4c validate`")
        with _locked(src.sha256) as part:
            path = self._verified(src, part)
            if not src.extract:
                return path
            dest = extracted_path(src.sha256)
            if dest.is_dir():
                return dest
            try:
                return archive.extract(path, dest)
            except archive.ArchiveError as exc:
                raise D4CError(f"{self._where(src)}: {exc.message}", hint=exc.hint) from None

    def _verified(self, src: Source, part: Path) -> Path:
        final = cache_path(src.sha256)
        local = self._in_git(src)
        if local is not None:
            # Kept in git: always hash the working copy, so an edit without a new sha256
            # in the recipe is reported rather than hidden by an older cached copy.
            try:
                return self._store(src, part, self._copy(local, src, part))
            except _Failed as exc:
                raise D4CError(f"{self._where(src)}: {local}: {exc}",
                               hint="update the recipe's sha256 and size, or restore the file") from None
        if final.is_file():
            if sha256_file(final) == src.sha256:
                return final
            log.warning("cached copy of %s is corrupt; fetching it again", src.name)
            final.unlink()
        places = [*self.copies.get(src.sha256, ()), *(mirror_location(b, src.sha256) for b in self.mirrors)]
        if self.mode == "auto":
            places += [u for u in (src.url, *src.alternate_urls) if u]
        # Last, the copies our releases made of it: the build outlives the source's URL.
        places += [u for u in self.recorded.get(src.sha256, ()) if u not in places]
        failures: list[str] = []
        for place in places:
            try:
                stored = self._store(src, part, self._get(place, src, part))
                log.info("%s: fetched from %s", src.name, place)
                return stored
            except _Failed as exc:
                log.debug("%s: %s: %s", src.name, place, exc)
                failures.append(f"{place}: {exc}")
        if not places:
            failures.append("no mirror or URL to try" + (" (mode 'mirrors')" if self.mode == "mirrors" else ""))
        raise D4CError(
            f"{self._where(src)}: no verified copy of sha256 {src.sha256}: " + "; ".join(failures),
            hint="add a working url or mirror (d4c fetch --mirror URL), or check the recipe's sha256",
        )

    def _in_git(self, src: Source) -> Path | None:
        """The working-copy file of a `path:` source, if present; never outside the dataset."""
        if not src.path:
            return None
        rel = Path(src.path)
        if rel.is_absolute() or ".." in rel.parts:
            raise D4CError(f"{self._where(src)}: path {src.path!r} must stay inside the dataset folder",
                           where=str(self.recipe.path), hint="use a path relative to datasets/<id>/")
        local = self.recipe.folder / rel
        return local if local.is_file() else None

    def _store(self, src: Source, part: Path, actual: str) -> Path:
        if actual != src.sha256:
            part.unlink(missing_ok=True)
            raise _Failed(f"got sha256 {actual}, expected {src.sha256}")
        final = cache_path(src.sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(part, 0o444)  # cached bytes are immutable
        os.replace(part, final)
        return final

    def _check_size(self, src: Source, received: int) -> None:
        if src.size is not None and received > src.size:
            raise _Failed(f"got more than the {src.size} bytes the recipe declares; stopped")

    def _copy(self, local: Path, src: Source, part: Path) -> str:
        """Copy a local file into the partial path, hashing as it streams."""
        digest, received = hashlib.sha256(), 0
        try:
            with open(local, "rb") as fin, open(part, "wb") as fout:
                while chunk := fin.read(_CHUNK):
                    received += len(chunk)
                    self._check_size(src, received)
                    digest.update(chunk)
                    fout.write(chunk)
                    self.hook(src.name, received, src.size)
        except _Failed:
            part.unlink(missing_ok=True)
            raise
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise _Failed(exc.strerror or str(exc)) from None
        return digest.hexdigest()

    def _get(self, place: str, src: Source, part: Path) -> str:
        local = local_path(place)
        if local is None:
            return self._download(place, src, part)
        if not local.is_file():
            raise _Failed("not present")
        part.unlink(missing_ok=True)
        return self._copy(local, src, part)

    def _download(self, url: str, src: Source, part: Path) -> str:
        """GET `url` into `part`, resuming after broken transfers; return its sha256."""
        last, fresh = "", False
        with http.session(retries=self.retries, backoff_factor=self.backoff_factor) as sess:
            for attempt in range(self.retries + 1):
                if attempt:
                    time.sleep(min(self.backoff_factor * 2 ** (attempt - 1), 30.0))
                try:
                    actual, resumed = self._attempt(sess, url, src, part)
                except _Broken as exc:
                    last = str(exc)
                    continue
                if actual != src.sha256 and resumed and not fresh:
                    # The partial file may hold stale bytes: try once more from byte zero.
                    fresh = True
                    part.unlink(missing_ok=True)
                    continue
                return actual
        raise _Failed(f"{last}; gave up after {self.retries + 1} tries")

    def _attempt(self, sess: requests.Session, url: str, src: Source, part: Path) -> tuple[str, bool]:
        """One GET; raises _Broken when the transfer broke off and can be resumed."""
        start = part.stat().st_size if part.exists() else 0
        if src.size is not None and start > src.size:
            part.unlink()
            start = 0
        digest = hashlib.sha256()
        if start:
            with open(part, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
            if start == src.size:  # complete already (a crash came before the rename)
                return digest.hexdigest(), True
        # identity: the bytes as stored, never transparently decompressed.
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={start}-"} if start else {})}
        try:
            resp = sess.get(url, headers=headers, stream=True)
        except requests.RequestException as exc:
            raise _Failed(http.describe(exc)) from None
        with resp:
            if resp.status_code == 416 and start:
                part.unlink()
                raise _Broken("server refused to resume (HTTP 416)")
            content_range = resp.headers.get("Content-Range", "")
            if resp.status_code == 206 and start and content_range.startswith(f"bytes {start}-"):
                mode = "ab"
            elif resp.status_code == 200:
                start, mode, digest = 0, "wb", hashlib.sha256()
            else:
                raise _Failed(f"HTTP {resp.status_code} {resp.reason}".strip())
            announced = resp.headers.get("Content-Length", "")
            if src.size is not None and announced.isdigit() and start + int(announced) > src.size:
                raise _Failed(f"server announces {start + int(announced)} bytes, "
                              f"more than the {src.size} the recipe declares")
            received = start
            with open(part, mode) as out:
                try:
                    # read1: what has arrived is kept even if the connection breaks next.
                    while chunk := resp.raw.read1(_CHUNK, decode_content=False):
                        received += len(chunk)
                        if src.size is not None and received > src.size:
                            out.close()
                            part.unlink()
                            self._check_size(src, received)
                        digest.update(chunk)
                        out.write(chunk)
                        self.hook(src.name, received, src.size)
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                    raise _Broken(http.describe(exc)) from None
        return digest.hexdigest(), start > 0


@contextmanager
def _progress(recipe: Recipe, show: bool | None) -> Iterator[ProgressHook]:
    """A rich progress bar per source on a terminal; silent otherwise (CI logs, pipes)."""
    console = Console(stderr=True, force_terminal=show)  # show=None: decide by isatty
    if not console.is_terminal:
        yield lambda name, done, total: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks = {s.name: bar.add_task(s.name, total=s.size) for s in recipe.sources}
        yield lambda name, done, total: bar.update(tasks[name], completed=done, total=total)


def fetch_sources(
    recipe: Recipe,
    *,
    mirrors: Sequence[str] = (),
    copies: Mapping[str, Sequence[str]] | None = None,
    mode: Mode = "auto",
    jobs: int = DEFAULT_JOBS,
    retries: int = 5,
    backoff_factor: float = 0.5,
    progress: bool | None = None,
    defaults: bool = True,
) -> dict[str, Path]:
    """Fetch and verify every source of `recipe`; return source name -> local path.

    The path is the verified file in the cache (`<cache>/sha256/<aa>/<hash>`), or for a
    source with `extract: true` the folder it was unpacked into. `mirrors` are base
    URLs or folders (http(s)://, file://, plain paths) tried before the recipe URLs;
    D4C_MIRRORS and the repository's `.d4c/publish/` are added, and, tried last, the mirrored
    copies that the dataset's release records list (`releases/<id>/*.json`). `copies` maps a sha256 to
    exact URLs said to hold it (a release record's or a bundle's source mirrors), tried
    first; whatever arrives is checked against the sha256 all the same. Mode "mirrors" never
    touches the recipe URLs (for `d4c verify`); `defaults=False` leaves out D4C_MIRRORS and the
    local publish folder, so only the copies and mirrors given are tried. Up to `jobs` sources download at once.
    Raises one-line D4CError naming the dataset, source, places tried and the reason.
    """
    if mode not in MODES:
        raise UsageError(f"unknown sources mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, not {jobs}")
    root = recipe.folder.parent.parent  # datasets/<id>/ -> the repository
    results: dict[str, Path] = {}
    errors: list[D4CError] = []
    with _progress(recipe, progress) as hook:
        bases = mirror_bases(mirrors, root) if defaults else list(mirrors)
        recorded = copies_of.recorded(paths.releases_dir(root) / recipe.id) if defaults else {}
        fetcher = _Fetcher(recipe, mirrors=bases, copies=copies or {}, mode=mode, recorded=recorded,
                           retries=retries, backoff_factor=backoff_factor, hook=hook)
        with ThreadPoolExecutor(max_workers=min(jobs, max(1, len(recipe.sources)))) as pool:
            futures = [(s, pool.submit(fetcher.fetch, s)) for s in recipe.sources]
            for src, fut in futures:
                try:
                    results[src.name] = fut.result()
                except D4CError as exc:
                    errors.append(exc)
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more source(s) failed)" if len(errors) > 1 else ""
        raise D4CError(first.message + more, hint=first.hint, where=first.where)
    return results


def local_path(url: str, root: Path | None = None) -> Path | None:
    """The file a `file://` URL or a plain path names (relative to `root`); None for http(s)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in {"http", "https"}:
        return None
    path = Path(url)
    return path if path.is_absolute() or root is None else root / path


def get_verified(url: str, dest: Path, sha256: str, *, root: Path | None = None,
                 max_bytes: int | None = None) -> bool:
    """Copy or download `url` to `dest` (temp + rename); True only when the sha256 matches.
    For files that are not sources (a released artifact, a bundle): any failure is False,
    logged, and leaves nothing behind; `max_bytes` stops a server that sends too much."""
    tmp = dest.with_name(dest.name + ".part")
    digest, got = hashlib.sha256(), 0
    try:
        with ExitStack() as stack:
            out = stack.enter_context(tmp.open("wb"))
            local = local_path(url, root)
            if local is not None:
                if not local.is_file():  # never a device or a FIFO a hostile record names
                    raise OSError(f"{local} is not a regular file")
                fh = stack.enter_context(local.open("rb"))
                chunks: Iterable[bytes] = iter(lambda: fh.read(1 << 20), b"")
            else:
                resp = stack.enter_context(http.session().get(url, stream=True, timeout=http.DEFAULT_TIMEOUT))
                resp.raise_for_status()
                chunks = resp.iter_content(1 << 20)
            for chunk in chunks:
                got += len(chunk)
                if max_bytes is not None and got > max_bytes:
                    raise OSError(f"more than {max_bytes} bytes")
                digest.update(chunk)
                out.write(chunk)
    except (OSError, requests.RequestException) as exc:
        log.info("cannot fetch %s: %s", url, exc)
        tmp.unlink(missing_ok=True)
        return False
    if digest.hexdigest() != sha256:
        log.warning("%s: sha256 does not match the record; ignored", url)
        tmp.unlink(missing_ok=True)
        return False
    tmp.replace(dest)
    return True
