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
is saved), ``train.step`` (rank 0 of Ray Train, after finishing global step n: ``hit(at=step)``).

Training also takes the older spelling (``train_step_from_env``):

    DISTILL_FAIL_AT_STEP=<n>                    = DISTILL_FAULT=train.step@<n>
    DISTILL_FAIL_ONCE_FILE=<path>               its once-file (default: beside the training groups)

A ``train.step`` once-file holds the step it fired at, not the pid.
"""

from __future__ import annotations

import os
import time

ENV, ONCE_ENV = "DISTILL_FAULT", "DISTILL_FAULT_ONCE_FILE"
STEP_ENV, STEP_ONCE_ENV = "DISTILL_FAIL_AT_STEP", "DISTILL_FAIL_ONCE_FILE"
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


def train_step_from_env(default_once_file: str) -> dict | None:
    """The ``train.step`` fault: ``DISTILL_FAIL_AT_STEP`` (once-file ``DISTILL_FAIL_ONCE_FILE``, else
    ``default_once_file``), or ``DISTILL_FAULT=train.step@n``. Always once: a restarted worker group passes."""
    if os.environ.get(STEP_ENV):
        return {"point": "train.step", "n": int(os.environ[STEP_ENV]), "action": "exit",
                "once_file": os.environ.get(STEP_ONCE_ENV, default_once_file), "record": "hit"}
    spec = from_env("train.step")
    if spec:
        spec.update(once_file=spec["once_file"] or default_once_file, record="hit")
    return spec


class Fault:
    """Counts hits of one point in this process; fires on the n-th (see the module docstring)."""

    def __init__(self, spec: dict | None):
        self.spec = spec
        self.hits = 0

    def hit(self, at: int | None = None) -> None:
        """One more hit, or (``at``) the hit number itself, e.g. the global step of a resumed run."""
        if not self.spec:
            return
        self.hits = self.hits + 1 if at is None else at
        if self.hits != self.spec["n"]:
            return
        once = self.spec.get("once_file")
        if once:
            tmp = f"{once}.{os.getpid()}"
            with open(tmp, "w") as f:  # what the once-file holds: the pid, or (record "hit") the hit number
                f.write(str(self.hits if self.spec.get("record") == "hit" else os.getpid()))
            try:  # link: atomic claim, and whoever sees the file sees the pid in it
                os.link(tmp, once)
            except FileExistsError:
                return  # another process (or an earlier life of this actor) already fired
            finally:
                os.unlink(tmp)
        if self.spec["action"] == "hold":
            time.sleep(HOLD_SECONDS)
        os._exit(17)
