"""Best-of-repeats timing: the least disturbed of several timed calls after a warm-up.

On a shared 2-core machine the minimum, not the mean, is the figure that tracks the code (anything slower was
the machine doing something else); every speed the project reports (evaluate's throughputs, the bf16 probe,
the benchmarks) is measured this way.
"""

from __future__ import annotations

import time
from typing import Callable


def best_seconds(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """min over ``repeats`` timed calls of ``fn()`` (seconds), after ``warmup`` untimed ones."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
