"""`--check`: compare two builds byte for byte, and explain the first difference.

The explanation is format-aware: for Parquet the schema, the footer key-value
metadata, the row groups and the first differing row (both files read side by side,
a batch at a time, so a difference in a file bigger than memory is explained too); for CSV the first differing
line; otherwise the first differing byte. diffoscope's report is added when it is
installed (it knows many more formats than we do).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from d4c import canonical
from d4c.atomic import atomic_write
from d4c.build.geo_facts import DESCRIBE
from d4c.build.logical import read_table
from d4c.build.manifest import code_state
from d4c.build.pipeline import MANIFEST, PROVENANCE, BuildOptions, build, check_out_dir, publish
from d4c.build.runners import NORMAL, VARIED
from d4c.errors import D4CError
from d4c.recipe import Recipe

log = logging.getLogger("d4c.build")


def first_byte_difference(a: Path, b: Path, block: int = 1 << 20) -> int | None:
    """Offset of the first differing byte (or the shorter length), None if equal."""
    offset = 0
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(block), fb.read(block)
            if ca != cb:
                n = min(len(ca), len(cb))
                return offset + next((i for i in range(n) if ca[i] != cb[i]), n)
            if not ca:
                return None
            offset += len(ca)


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _batches(path: Path, fmt: str) -> tuple[int, Any]:
    """(row count, batches): Parquet row group by row group, CSV whole (a text table)."""
    if fmt in {"parquet", "geoparquet"}:
        pf = pq.ParquetFile(path)
        return pf.metadata.num_rows, pf.iter_batches(batch_size=BATCH_ROWS, use_threads=False)
    table = read_table(path, fmt)
    return table.num_rows, iter(table.to_batches(BATCH_ROWS))


BATCH_ROWS = 65536


def _rebatch(batches: Any) -> Any:
    """The same rows in batches of exactly BATCH_ROWS (the last shorter), whatever came in."""
    pending: list[Any] = []
    have = 0
    for batch in batches:
        while batch.num_rows:
            take = min(BATCH_ROWS - have, batch.num_rows)
            pending.append(batch.slice(0, take))
            batch, have = batch.slice(take), have + take
            if have == BATCH_ROWS:
                yield pa.Table.from_batches(pending)
                pending, have = [], 0
    if have:
        yield pa.Table.from_batches(pending)


def _first_row_difference(a: Path, b: Path, fmt: str) -> list[str]:
    """The first differing row, reading both files side by side a batch at a time."""
    (na, ba), (nb, bb) = _batches(a, fmt), _batches(b, fmt)
    if na != nb:
        return [f"row count: {na} vs {nb}"]
    start = 0
    for ta, tb in zip(_rebatch(ba), _rebatch(bb)):
        for name in ta.column_names:
            if name not in tb.column_names:
                continue
            ca, cb = ta.column(name), tb.column(name)
            if ca.type == cb.type and ca.equals(cb):
                continue
            for i, (x, y) in enumerate(zip(ca.to_pylist(), cb.to_pylist())):
                if x != y:
                    return [f"first differing row: {start + i}, column {name!r}: {_short(x)} vs {_short(y)}"]
        start += ta.num_rows
    return ["rows: identical values"]


def explain_parquet(a: Path, b: Path) -> list[str]:
    fa, fb = pq.ParquetFile(a), pq.ParquetFile(b)
    lines: list[str] = []
    if not fa.schema_arrow.equals(fb.schema_arrow):
        lines.append(f"schema differs:\n  {fa.schema_arrow}\n  vs\n  {fb.schema_arrow}")
    ma, mb = fa.metadata, fb.metadata
    kva, kvb = ma.metadata or {}, mb.metadata or {}
    if list(kva) != list(kvb):
        lines.append(f"footer key-value metadata keys: {[k.decode() for k in kva]} vs {[k.decode() for k in kvb]}")
    for key in kva:
        if key in kvb and kva[key] != kvb[key]:
            off = next((i for i, (x, y) in enumerate(zip(kva[key], kvb[key])) if x != y), None)
            at = off if off is not None else min(len(kva[key]), len(kvb[key]))
            va, vb = (v[max(0, at - 40):at + 40].decode("utf-8", "replace") for v in (kva[key], kvb[key]))
            lines.append(f"footer metadata {key.decode()!r} differs at byte {at}: {_short(va)} vs {_short(vb)}")
    if ma.created_by != mb.created_by:
        lines.append(f"created_by: {ma.created_by!r} vs {mb.created_by!r}")
    if ma.num_row_groups != mb.num_row_groups:
        lines.append(f"row groups: {ma.num_row_groups} vs {mb.num_row_groups}")
    for i in range(min(ma.num_row_groups, mb.num_row_groups)):
        ra, rb = ma.row_group(i), mb.row_group(i)
        if (ra.num_rows, ra.total_byte_size) != (rb.num_rows, rb.total_byte_size):
            lines.append(f"row group {i}: {ra.num_rows} rows/{ra.total_byte_size} bytes vs "
                         f"{rb.num_rows} rows/{rb.total_byte_size} bytes")
            break
    lines += _first_row_difference(a, b, "parquet")
    return lines


def explain_csv(a: Path, b: Path) -> list[str]:
    """First differing line of two text files (CSV, the manifest)."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        for n, (la, lb) in enumerate(zip(fa, fb), start=1):
            if la != lb:
                return [f"first differing line: {n}: {_short(la)} vs {_short(lb)}"]
    return ["one file is a prefix of the other (different line counts)"]


def diffoscope(a: Path, b: Path, max_lines: int = 60) -> list[str]:
    exe = shutil.which("diffoscope")
    if not exe:
        return []
    try:
        proc = subprocess.run([exe, "--text", "-", str(a), str(b)], capture_output=True,
                              text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return ["diffoscope: timed out after 120 s"]
    out = proc.stdout.splitlines()
    return ["diffoscope:", *out[:max_lines], *(["  ..."] if len(out) > max_lines else [])]


def explain(a: Path, b: Path, fmt: str) -> list[str]:
    """Why two versions of one artifact differ, most useful facts first."""
    sizes = f"(sizes {a.stat().st_size} and {b.stat().st_size})"
    lines = [f"first differing byte at offset {first_byte_difference(a, b)} {sizes}"]
    if fmt in {"parquet", "geoparquet"}:
        lines += explain_parquet(a, b)
    elif fmt in {"csv", "json"}:
        lines += explain_csv(a, b)
    elif fmt in DESCRIBE:  # FlatGeobuf, COG, PMTiles: which of the manifest's facts moved
        fa, fb = DESCRIBE[fmt](a), DESCRIBE[fmt](b)
        moved = [k for k in sorted(fa) if fa[k] != fb.get(k)]
        lines.append(f"facts that differ: {', '.join(moved)}" if moved else
                     "same facts (rows, columns, logical hash): only the encoding differs")
    return lines + diffoscope(a, b)


def compare(a: Path, b: Path, files: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """[(file, explanation)] for every differing file of `files` [(file, format)], in order."""
    diffs = []
    for name, fmt in files:
        pa_, pb = a / name, b / name
        if not pa_.is_file() or not pb.is_file():
            diffs.append((name, [f"missing in {'first' if not pa_.is_file() else 'second'} build"]))
        elif first_byte_difference(pa_, pb) is not None:
            diffs.append((name, explain(pa_, pb, fmt)))
    return diffs


# The two runs: the normal build, then one where everything the transform can see differs
# (runners.VARIED: TZ, locale, umask, build path, hostname, user, CPUs), and so does this
# process's own TZ, locale, umask, cwd and environment order (the host side of the build).
VARIATIONS = (NORMAL, VARIED)


@contextmanager
def varied_host(index: int) -> Iterator[None]:
    """Change this process's TZ, locale, umask, cwd and environment order for one run."""
    v = VARIATIONS[index]
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_umask = os.umask(v.umask)
    items = list({**saved_env, "TZ": v.tz, "LANG": v.locale, "LC_ALL": v.locale}.items())
    os.environ.clear()
    os.environ.update(reversed(items) if index else items)
    cwd = tempfile.mkdtemp(prefix=f"d4c-check-cwd{index}-")
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        shutil.rmtree(cwd, ignore_errors=True)
        os.umask(saved_umask)
        os.environ.clear()
        os.environ.update(saved_env)


def check_result_path(out: Path) -> Path:
    """Where `--check` writes its result, beside the output folder: `<out>.check.json`."""
    return out.with_name(f"{out.name}.check.json")


def manifest_sha256(folder: Path) -> str | None:
    """The sha256 of a build's manifest.json: what ties a --check result to one build."""
    path = folder / MANIFEST
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def write_result(path: Path, recipe: Recipe, files: list[str], diffs: list[tuple[str, list[str]]],
                 kept: Path | None, manifest: str | None = None) -> None:
    """The --check verdict as data (what `d4c diff --check-result` reads). `manifest_sha256`
    names the build it vouches for: a later plain build into the same folder is not it."""
    differing = {name: why for name, why in diffs}
    doc = {
        "check_version": 1,
        "dataset": recipe.id, "version": recipe.version,
        "reproducible": not diffs,
        "manifest_sha256": manifest,
        "variations": [{**asdict(v), "umask": f"{v.umask:03o}"} for v in VARIATIONS],
        "artifacts": [{"file": n, "identical": n not in differing} for n in files],
        "differences": [f"{name}: {why[0]}" if why else name for name, why in diffs],
        "first_difference": {"file": diffs[0][0], "explanation": diffs[0][1]} if diffs else None,
        "kept": str(kept) if kept else None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data=canonical.encode(doc))


def build_twice(recipe: Recipe, root: Path, out: Path, opts: BuildOptions) -> dict[str, Any]:
    """Build twice under varied host conditions; publish into `out` only when identical."""
    out = out.absolute()
    check_out_dir(out, recipe.id)
    opts = replace(opts, code=opts.code if opts.code is not None else code_state(root, recipe))
    runs = [out.with_name(f".{out.name}.check-{i + 1}") for i in range(2)]
    for folder in runs:  # our own leftovers from an interrupted check
        shutil.rmtree(folder, ignore_errors=True)
    manifests = []
    result_path = check_result_path(out)
    for i, folder in enumerate(runs):
        v = VARIATIONS[i]
        log.info("--check: build %d of 2 (TZ=%s, locale %s, umask %03o, build path %s, hostname %s, "
                 "user %s, CPUs %s)", i + 1, v.tz, v.locale, v.umask, v.mount, v.hostname, v.user, v.cpus or "all")
        try:
            with varied_host(i):
                manifests.append(build(recipe, root, folder, replace(opts, variation=v)))
        except D4CError as exc:
            write_result(result_path, recipe, [], [(f"build {i + 1} of 2", [exc.line()])], None)
            raise
    files = [(o["file"], o["format"]) for o in manifests[0]["outputs"]]
    diffs = compare(runs[0], runs[1], [*files, (MANIFEST, "json"), (PROVENANCE, "json")])
    names = [name for name, _ in [*files, (MANIFEST, "json"), (PROVENANCE, "json")]]
    if diffs:
        kept = out.with_name(f"{out.name}.check-differs")
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir(parents=True)
        for i, folder in enumerate(runs):
            os.replace(folder, kept / f"run{i + 1}")
        write_result(result_path, recipe, names, diffs, kept)
        name, why = diffs[0]
        also = [f"also differing: {', '.join(n for n, _ in diffs[1:])}"] if len(diffs) > 1 else []
        report = "\n".join([f"--check: {name} differs between two builds:", *("  " + w for w in why), *also])
        print(report, file=sys.stderr)
        raise D4CError(f"build is not reproducible: {name} differs between two builds",
                       hint=f"see the report above (and {result_path.name}); both builds are kept in {kept}")
    write_result(result_path, recipe, names, [], None, manifest_sha256(runs[0]))
    publish(runs[0], out)
    shutil.rmtree(runs[1], ignore_errors=True)
    return manifests[0]
