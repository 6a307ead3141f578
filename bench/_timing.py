"""Shared by the benchmarks: best-of-N timing of functions run side by side, interleaved."""
from __future__ import annotations

import time
from collections.abc import Callable


def measure(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall time of each function over `repeat` interleaved rounds (noise hits all alike)."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best
