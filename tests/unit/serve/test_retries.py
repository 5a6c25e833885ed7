"""serve.retries and ServeBackend._call: an unlucky request is sent again, a request that kills replicas is
not passed from one to the next, and the same request is refused for a while after."""

import asyncio

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError
from ray.serve.exceptions import ReplicaUnavailableError

from serve.api import BackendUnavailable
from serve.app import ServeBackend
from serve.retries import Suspects, fingerprint


class Replicas:
    """A call that fails with the given errors in turn, then answers "ok"; counts the calls."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _call(backend, replicas, fp="fp-1"):
    return asyncio.run(backend._call("retriever", replicas, fp))


def test_a_request_whose_replica_was_killed_is_sent_once_more_and_answered():
    backend, replicas = ServeBackend(None), Replicas(ActorDiedError())
    assert _call(backend, replicas) == "ok" and replicas.calls == 2
    assert len(backend.retry.suspects) == 0


def test_a_request_that_loses_two_replicas_is_not_sent_to_a_third_and_is_refused_after():
    backend, replicas = ServeBackend(None), Replicas(ActorDiedError(), ActorDiedError())
    with pytest.raises(BackendUnavailable, match="died under it 2 times in a row"):
        _call(backend, replicas)
    assert replicas.calls == 2
    again = Replicas()
    with pytest.raises(BackendUnavailable, match="refused: the same request lost 2 replicas"):
        _call(backend, again)
    assert again.calls == 0  # refused before it reached a replica
    assert _call(backend, Replicas(), fp="another request") == "ok"


def test_unavailable_replicas_are_not_deaths_and_get_three_attempts():
    backend = ServeBackend(None)
    replicas = Replicas(ActorUnavailableError("draining", None), ReplicaUnavailableError("r1"))
    assert _call(backend, replicas) == "ok" and replicas.calls == 3
    replicas = Replicas(*[ReplicaUnavailableError("r1")] * 3)
    with pytest.raises(BackendUnavailable, match="unavailable after 3 attempts"):
        _call(backend, replicas)
    assert replicas.calls == 3 and len(backend.retry.suspects) == 0
    # one death among unavailable answers: still sent until the attempts run out, and no suspect
    replicas = Replicas(ActorDiedError(), ReplicaUnavailableError("r2"))
    assert _call(backend, replicas) == "ok" and replicas.calls == 3


def test_suspects_expire_and_are_bounded():
    now = [0.0]
    suspects = Suspects(ttl_s=10, max_entries=2, clock=lambda: now[0])
    suspects.add("a")
    now[0] = 9.9
    assert "a" in suspects
    now[0] = 10.0
    assert "a" not in suspects and len(suspects) == 0
    for fp in ("b", "c", "d"):
        suspects.add(fp)
    assert "b" not in suspects and "c" in suspects and "d" in suspects and len(suspects) == 2


def test_fingerprints_are_equal_exactly_for_equal_requests():
    assert fingerprint("search", ["q"], 10, False) == fingerprint("search", ["q"], 10, False)
    assert fingerprint("search", ["q"], 10, False) != fingerprint("search", ["q"], 11, False)
    assert fingerprint("search", ["q"], 10, False) != fingerprint("embed", ["q"])
