"""Per-dataset Arrow tables parked on disk while a catalog is built.

The catalog's schema is the union of every dataset's asset keys, mirrors and software
(d4c.catalog.writer), so it is known only after the last dataset; the Parquet writer needs
it before the first row. Each dataset's rows go to one temp file as an Arrow IPC stream
(LZ4: cheap next to the mapping) and are read back one dataset at a time, so memory holds
one dataset, not the catalog.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from d4c.catalog.writer import Keys, keys_of_schema

_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


class Spill:
    def __init__(self, folder: Path) -> None:
        self._path = folder / "datasets.arrows"
        self._sink = pa.OSFile(str(self._path), "wb")
        self._spans: list[tuple[int, int]] = []
        self.keys: Keys = (set(), set(), set())
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        start = self._sink.tell()
        with pa.ipc.new_stream(self._sink, table.schema, options=_OPTIONS) as stream:
            stream.write_table(table)
        self._spans.append((start, self._sink.tell() - start))
        for acc, more in zip(self.keys, keys_of_schema(table.schema)):
            acc |= more
        self.rows += table.num_rows

    def tables(self) -> Iterator[pa.Table]:
        """The tables in the order they were added (read once: the sink is closed)."""
        self._sink.close()
        with pa.OSFile(str(self._path), "rb") as source:
            for start, length in self._spans:
                source.seek(start)
                yield pa.ipc.open_stream(source.read_buffer(length)).read_all()
