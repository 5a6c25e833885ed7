"""When a call whose replica died is sent again, and when it is not.

A replica can die under a request for reasons of its own (its node lost, a kill, a crash elsewhere) or
because of the request (a body that crashes the model or exhausts its memory). Sending the request again
is right in the first case and spreads the damage in the second. The rule (:class:`RetryPolicy`):

- a call whose replica *died* under it (``ActorDiedError`` / ``RayActorError``) is sent once more, to another
  replica; if that one dies under it too, the request is answered 503 and not sent again, and its
  fingerprint (a digest of what it asks) is kept for ``suspect_ttl_s``: the same request arriving meanwhile is
  refused at once, before it reaches a replica. An unlucky request (a replica killed under it) succeeds on
  its second try; a request that kills every replica it reaches takes down at most two.
- a call that found its replica *unavailable* (starting, draining: ``ActorUnavailableError``,
  ``ReplicaUnavailableError``; the request did not run) is tried again, ``attempts`` times in all.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable


def fingerprint(*parts) -> str:
    """A digest of what a request asks (route, texts, parameters): equal requests, equal fingerprints."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class Suspects:
    """Fingerprints of requests that lost two replicas in a row, each kept ``ttl_s`` seconds (at most
    ``max_entries``, the oldest dropped first)."""

    def __init__(self, ttl_s: float = 120.0, max_entries: int = 1024, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()

    def add(self, fp: str) -> None:
        self._until.pop(fp, None)
        self._until[fp] = self.clock() + self.ttl_s
        while len(self._until) > self.max_entries:
            self._until.popitem(last=False)

    def __contains__(self, fp: str) -> bool:
        until = self._until.get(fp)
        if until is None:
            return False
        if self.clock() >= until:
            del self._until[fp]
            return False
        return True

    def __len__(self) -> int:
        return sum(1 for fp in list(self._until) if fp in self)


class RetryRefused(RuntimeError):
    """The request is not sent (again): its replicas died under it, or it is a suspect."""


class RetryPolicy:
    """What to do after a failed attempt: :meth:`after_failure` returns the seconds to wait before the
    next attempt or raises :class:`RetryRefused`; :meth:`check` refuses a suspect before its first attempt."""

    def __init__(self, died: tuple, unavailable: tuple, attempts: int = 3, max_deaths: int = 2,
                 suspects: Suspects | None = None):
        self.died = died
        self.unavailable = unavailable
        self.attempts = attempts
        self.max_deaths = max_deaths
        self.suspects = suspects if suspects is not None else Suspects()

    @property
    def retryable(self) -> tuple:
        return self.died + self.unavailable

    def is_death(self, err: BaseException) -> bool:
        """The replica died under the call (an unavailable replica is not a death, though Ray's
        ``ActorUnavailableError`` is a ``RayActorError``)."""
        return isinstance(err, self.died) and not isinstance(err, self.unavailable)

    def check(self, fp: str | None) -> None:
        if fp is not None and fp in self.suspects:
            raise RetryRefused(f"refused: the same request lost {self.max_deaths} replicas in a row within the "
                               f"last {self.suspects.ttl_s:g} s, so it is not sent to another")

    def after_failure(self, err: BaseException, attempt: int, deaths: int, fp: str | None) -> float:
        """``attempt``: 0-based number of the attempt that failed; ``deaths``: how many of the attempts so far
        (this one included) lost their replica to a death."""
        if self.is_death(err) and deaths >= self.max_deaths:
            if fp is not None:
                self.suspects.add(fp)
            raise RetryRefused(f"its replica died under it {deaths} times in a row ({type(err).__name__}); "
                               "not sent again")
        if attempt >= self.attempts - 1:
            raise RetryRefused(f"replicas unavailable after {self.attempts} attempts ({type(err).__name__})")
        return 0.05 * (attempt + 1)
