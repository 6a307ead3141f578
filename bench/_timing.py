"""Shared by the benchmarks: timing of functions run side by side, interleaved.

Every call prints, per function, the min and median wall time of its N rounds and the
load average when it ended: these machines are shared, and a figure means little without
the load it was measured under.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable


def measure(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall time of each function over `repeat` interleaved rounds (noise hits all alike)."""
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    load = os.getloadavg()
    for name, times in runs.items():
        print(f"  [timing] {name}: min {min(times):.4f} s, median {statistics.median(times):.4f} s "
              f"of {len(times)}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
              file=sys.stderr)
    return {name: min(times) for name, times in runs.items()}
