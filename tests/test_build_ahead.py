"""d4c.build.ahead: order kept, the producer's error raised in the consumer, and a consumer
that stops early leaves no thread behind and closes the source generator in its own thread."""
from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from d4c.build.ahead import ahead


def test_items_come_in_order_and_errors_reach_the_consumer() -> None:
    assert list(ahead(range(1000), depth=3)) == list(range(1000))

    def broken() -> Iterator[int]:
        yield 1
        raise ValueError("bad batch 2")

    got: list[int] = []
    with pytest.raises(ValueError, match="bad batch 2"):
        got.extend(ahead(broken()))
    assert got == [1]  # what came before the error was handed over


def test_stopping_early_closes_the_source_and_the_thread() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    before = threading.active_count()
    stream = ahead(endless())
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()  # what a writer's error does to the stream it reads
    assert closed.is_set() and threading.active_count() == before
