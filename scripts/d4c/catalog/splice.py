"""Appends that copy the untouched row groups' bytes instead of encoding them again.

pyarrow cannot copy an encoded row group into a new file, so this works around it. The
span of row groups that hold the appended dataset (for a new dataset, the groups either
side of where it goes) is decoded and written again by the catalog's own writer into a
temp file. The new catalog is the old file's bytes before the span, the temp file's row
groups, the old file's bytes after the span, and a footer: the temp file's (its schema,
key-value metadata and writer are the new file's) with every row group's metadata, those
after the span with their offsets moved by the change in length (d4c.catalog.thrift_compact).

A row group's bytes do not depend on where it sits in the file, and the footer is encoded
as pyarrow encodes it, so the result is the file a rebuild writes, as long as the layout
does not move: the dataset after the span must still start a row group. When the new rows
overflow the span's last group, that cut moves and every later one with it; then (and for
a changed schema, or a file this does not recognise) the caller rewrites the whole file.
"""
from __future__ import annotations

import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from d4c.atomic import atomic_path, publish
from d4c.catalog import sidecar
from d4c.catalog import thrift_compact as tc
from d4c.catalog.writer import rows_writer

# parquet.thrift field ids: FileMetaData, RowGroup, ColumnChunk, ColumnMetaData
_FM_ROW_GROUPS = 4
_RG_COLUMNS, _RG_ROWS, _RG_FILE_OFFSET, _RG_SIZE, _RG_ORDINAL = 1, 3, 5, 6, 7
_CC_META, _CC_POSITIONS = 3, {2, 4, 6}  # file offset (0 from pyarrow), page index offsets
_CM_SIZE, _CM_DATA, _CM_DICT, _CM_POSITIONS = 7, 9, 11, {9, 10, 11, 14}  # compressed size; page, bloom offsets
Fields = list[list[Any]]


class _Moved(Exception):
    """The file cannot be spliced: the layout moves, or its bytes are not as expected."""


def span_for(pf: pq.ParquetFile, cid: str) -> tuple[int, int] | None:
    """The row groups to write again for dataset `cid`, first and last; None when the file's
    statistics give no clean span."""
    leaves = pf.metadata.schema
    col = next(i for i in range(len(leaves)) if leaves.column(i).path == "collection")
    bounds = []
    for g in range(pf.num_row_groups):
        stats = pf.metadata.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            return None
        bounds.append((stats.min, stats.max))
    holding = [g for g, (lo, hi) in enumerate(bounds) if lo <= cid <= hi]
    before = [g for g, (_, hi) in enumerate(bounds) if hi < cid]
    after = [g for g, (lo, _) in enumerate(bounds) if lo > cid]
    if holding:
        first, last = holding[0], holding[-1]
    elif before or after:
        first, last = (before or after)[-1 if before else 0], (after or before)[0 if after else -1]
    else:
        return None
    # a dataset larger than a row group cut across the span's edge: not a clean span
    if first and bounds[first - 1][1] == bounds[first][0] or \
            last + 1 < len(bounds) and bounds[last][1] == bounds[last + 1][0]:
        return None
    return first, last


def splice(source: Any, pf: pq.ParquetFile, span: tuple[int, int], datasets: Iterable[pa.Table],
           schema: pa.Schema, collections: dict[str, Any], dest: Path) -> bool:
    """Write `dest` from the catalog at `source` (path or file object) with the span's row
    groups replaced by `datasets` (in order, the file's schema); False when it cannot."""
    last = span[1]
    follows = _first_dataset_rows(pf, last + 1) if last + 1 < pf.num_row_groups else None
    if follows is None and last + 1 < pf.num_row_groups:
        return False  # an empty group after the span: the whole file is rewritten
    own = not hasattr(source, "read")
    src: BinaryIO = open(source, "rb") if own else source  # noqa: SIM115 - closed below
    try:
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".splice-") as tmp:
            part, side = Path(tmp) / "span.parquet", Path(tmp) / "side.json"
            with rows_writer(part, schema, side) as out:
                for rows in datasets:
                    out.add(rows)
                if follows is not None and not out.cuts_before(follows):
                    raise _Moved("the next dataset would join the span's last row group")
                out.collections = collections
            with open(part, "rb") as new:
                _write(src, new, span, dest, side)
        return True
    except (_Moved, IndexError, KeyError, TypeError, ValueError):  # the whole file is rewritten
        return False
    finally:
        if own:
            src.close()


def _first_dataset_rows(pf: pq.ParquetFile, group: int) -> int | None:
    """Rows of the first dataset in `group`; None (no splice) for a group without rows, which
    a writer never leaves but a crafted file may."""
    names = pf.read_row_group(group, columns=["collection"])["collection"].combine_chunks()
    if len(names) == 0:
        return None
    return int(pc.run_end_encode(names).run_ends[0].as_py())


def _footer(f: BinaryIO) -> tuple[Fields, int]:
    """A Parquet file's decoded footer and where it starts."""
    size = f.seek(0, 2)
    f.seek(size - 8)
    length, magic = struct.unpack("<I4s", f.read(8))
    if magic != b"PAR1":
        raise _Moved("no Parquet footer")
    f.seek(size - 8 - length)
    return tc.Reader(f.read(length)).struct(), size - 8 - length


def _field(fields: Fields, fid: int) -> list[Any]:
    found = next((f for f in fields if f[0] == fid), None)
    if found is None:
        raise _Moved(f"thrift field {fid} missing")
    return found


def _groups(fm: Fields, end: int) -> tuple[list[Fields], list[tuple[int, int]]]:
    """Row groups and their byte ranges, checked to follow one another from byte 4 to `end`,
    each group's column chunks tiling its range: a chunk reaching into another group's bytes
    (a crafted or corrupt file) would read the span's new bytes once they are copied."""
    groups: list[Fields] = _field(fm, _FM_ROW_GROUPS)[2][1]
    ranges, at = [], 4
    for rg in groups:
        chunks = []
        for cc in _field(rg, _RG_COLUMNS)[2][1]:
            meta = {f[0]: f[2] for f in _field(cc, _CC_META)[2]}
            chunks.append((meta.get(_CM_DICT, meta[_CM_DATA]), meta[_CM_SIZE]))
        size = _field(rg, _RG_SIZE)[2]
        tiled = at
        for start, length in sorted(chunks):
            if start != tiled:
                raise _Moved("row groups or column chunks do not follow one another")
            tiled += length
        if tiled != at + size:
            raise _Moved("a row group's size is not its column chunks'")
        ranges.append((at, at + size))
        at += size
    if at != end:
        raise _Moved("bytes between the last row group and the footer")
    return groups, ranges


def _move(rg: Fields, delta: int, ordinal: int) -> Fields:
    """A row group's metadata as it reads `delta` bytes further on, as group `ordinal`."""
    for f in rg:
        if f[0] == _RG_FILE_OFFSET:
            f[2] += delta
        elif f[0] == _RG_ORDINAL:
            f[2] = ordinal
        elif f[0] == _RG_COLUMNS and delta:
            for cc in f[2][1]:
                for g in cc:
                    if g[0] in _CC_POSITIONS and g[2]:
                        g[2] += delta
                    elif g[0] == _CC_META:
                        for h in g[2]:
                            if h[0] in _CM_POSITIONS:
                                h[2] += delta
    return rg


def _write(src: BinaryIO, new: BinaryIO, span: tuple[int, int], dest: Path, side: Path) -> None:
    first, last = span
    old_fm, old_end = _footer(src)
    old_groups, old_ranges = _groups(old_fm, old_end)
    new_fm, new_end = _footer(new)
    new_groups, _ = _groups(new_fm, new_end)
    start, stop = old_ranges[first][0], old_ranges[last][1]
    grown = start + (new_end - 4) - stop
    groups = [*old_groups[:first],
              *(_move(rg, start - 4, first + i) for i, rg in enumerate(new_groups)),
              *(_move(rg, grown, first + len(new_groups) + i)
                for i, rg in enumerate(old_groups[last + 1:]))]
    rows = sum(_field(rg, _RG_ROWS)[2] for rg in groups)
    _field(new_fm, 3)[2] = rows  # num_rows
    _field(new_fm, _FM_ROW_GROUPS)[2] = (tc.STRUCT, groups)
    footer = bytearray()
    tc.encode_struct(new_fm, footer)
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            _copy(src, out, 0, start)
            _copy(new, out, 4, new_end)
            _copy(src, out, stop, old_end)
            out.write(bytes(footer) + struct.pack("<I", len(footer)) + b"PAR1")
        md = pq.ParquetFile(tmp).metadata  # pyarrow reads it back, or nothing is published
        if md.num_rows != rows or md.num_row_groups != len(groups):
            raise _Moved("the spliced file does not read back")
        publish(side, sidecar.beside(dest))  # only now: a splice that falls back leaves the old one


def _copy(src: BinaryIO, out: BinaryIO, start: int, end: int) -> None:
    src.seek(start)
    while start < end:
        chunk = src.read(min(end - start, 1 << 23))
        if not chunk:
            raise _Moved("the file is shorter than its footer says")
        out.write(chunk)
        start += len(chunk)
