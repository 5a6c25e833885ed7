"""Progress lines from training loops (rank 0 only): ``[<stage>] step s/total loss L (x.x s/step, ~m min left)``.

Printed about ten times per fit, so a long teacher fine-tune or distillation on a laptop shows that it moves
and when it will end; Ray forwards a worker's stdout to the driver's log.
"""

from __future__ import annotations

import time


class Progress:
    def __init__(self, stage: str, total: int, rank: int, start: int = 0, every: int | None = None):
        self.stage, self.total, self.rank, self.start = stage, total, rank, start
        self.every = every or max(1, (total - start) // 10)
        self.t0 = time.perf_counter()

    def step(self, step: int, loss: float) -> None:
        """Call after finishing step ``step`` (1-based)."""
        if self.rank != 0 or not ((step - self.start) % self.every == 0 or step == self.total):
            return
        per = (time.perf_counter() - self.t0) / max(1, step - self.start)
        left = per * (self.total - step) / 60
        print(f"[{self.stage}] step {step}/{self.total} loss {loss:.4f} ({per:.1f} s/step, ~{left:.1f} min left)",
              flush=True)
