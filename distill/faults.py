"""Fault injection for the fault tests: a named point in the code dies (or stalls) on its n-th hit, once.

    DISTILL_FAULT=<point>@<n>[:exit|:hold]      e.g. encode.batch@2, encode.shard@1:hold
    DISTILL_FAULT_ONCE_FILE=<path>              claimed atomically by the process that fires; holds its pid

``exit`` ends the process at once with status 17 (``os._exit``: no cleanup, as a crash or OOM kill
would); ``hold`` writes the pid and sleeps, so a test can kill the process from outside at a known
point. With a once-file only the first process to reach the point fires (a restarted actor or a re-run
driver then passes); without one, every process fires on its n-th hit (a poison batch). The spec is
read on the driver (``from_env``) and handed to Ray actors in their constructor arguments, because a
worker's environment was fixed when the cluster started. Points: ``encode.batch`` and ``score.batch``
(inside a Ray Data actor, per batch), ``encode.shard`` and ``score.shard`` (the driver, after each shard
is saved).
Training keeps its own ``DISTILL_FAIL_AT_STEP`` hook (distill/stages/train.py).
"""

from __future__ import annotations

import os
import time

ENV, ONCE_ENV = "DISTILL_FAULT", "DISTILL_FAULT_ONCE_FILE"
HOLD_SECONDS = 600


def from_env(point: str) -> dict | None:
    """The fault spec for ``point`` from the environment, or None when no fault targets it."""
    raw = os.environ.get(ENV, "")
    name, _, rest = raw.partition("@")
    if name != point or not rest:
        return None
    n, _, action = rest.partition(":")
    if action not in ("", "exit", "hold"):
        raise ValueError(f"{ENV}={raw!r}: action must be exit or hold")
    return {"point": point, "n": int(n), "action": action or "exit", "once_file": os.environ.get(ONCE_ENV)}


class Fault:
    """Counts hits of one point in this process; fires on the n-th (see the module docstring)."""

    def __init__(self, spec: dict | None):
        self.spec = spec
        self.hits = 0

    def hit(self) -> None:
        if not self.spec:
            return
        self.hits += 1
        if self.hits != self.spec["n"]:
            return
        once = self.spec.get("once_file")
        if once:
            tmp = f"{once}.{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(str(os.getpid()))
            try:  # link: atomic claim, and whoever sees the file sees the pid in it
                os.link(tmp, once)
            except FileExistsError:
                return  # another process (or an earlier life of this actor) already fired
            finally:
                os.unlink(tmp)
        if self.spec["action"] == "hold":
            time.sleep(HOLD_SECONDS)
        os._exit(17)
