"""Read a stream a few items ahead in a thread of its own, in order.

The writers use it so the work that makes a row group (DuckDB's sort output, WKB and bbox
preparation, pyarrow's take) overlaps the compression of the one before: both release the
GIL, so on two cores the slower of the two sets the pace, not their sum. One producer and a
FIFO queue keep the order; at most `depth` items wait, so memory stays bounded.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")
_END = object()


def ahead(items: Iterable[T], depth: int = 2) -> Generator[T, None, None]:
    """Yield `items` in order, computed up to `depth` ahead; the producer's error is raised here."""
    box: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        source = iter(items)
        try:
            for item in source:
                if not put((True, item)):
                    break
            else:
                put((True, _END))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put((False, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # in this thread: a generator cannot be closed while another runs it

    thread = threading.Thread(target=produce, name="d4c-ahead", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = box.get()
            if not ok:
                assert isinstance(item, BaseException)
                raise item
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
