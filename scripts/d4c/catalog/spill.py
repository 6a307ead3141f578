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

from d4c.catalog.writer import Keys, keys_of_schema, union_keys

_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


class Spill:
    """One file of tables; `close()` it to hand it to another process (it pickles without
    its sink), which reads the tables back with `tables()`."""

    def __init__(self, folder: Path, name: str = "datasets") -> None:
        self._path = folder / f"{name}.arrows"
        self._sink: pa.OSFile | None = pa.OSFile(str(self._path), "wb")
        self._spans: list[tuple[int, int]] = []
        self.keys: Keys = (set(), set(), set())
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        assert self._sink is not None, "a closed spill takes no more tables"
        start = self._sink.tell()
        with pa.ipc.new_stream(self._sink, table.schema, options=_OPTIONS) as stream:
            stream.write_table(table)
        self._spans.append((start, self._sink.tell() - start))
        self.keys = union_keys(self.keys, keys_of_schema(table.schema))
        self.rows += table.num_rows

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def __getstate__(self) -> dict[str, object]:
        self.close()
        return self.__dict__

    def tables(self) -> Iterator[pa.Table]:
        """The tables in the order they were added (the sink is closed first)."""
        self.close()
        with pa.OSFile(str(self._path), "rb") as source:
            for start, length in self._spans:
                source.seek(start)
                yield pa.ipc.open_stream(source.read_buffer(length)).read_all()
