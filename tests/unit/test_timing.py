"""distill.timing: warm-up calls are not timed, and the figure is the fastest of the timed calls."""

import pytest

from distill import timing


def test_best_seconds_is_the_minimum_of_the_timed_calls_after_the_warmup(monkeypatch):
    clock = iter([0.0, 5.0, 10.0, 12.0, 20.0, 27.0])  # timed calls of 5 s, 2 s and 7 s
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    calls = []
    assert timing.best_seconds(lambda: calls.append(1), repeats=3, warmup=2) == 2.0
    assert len(calls) == 5  # 2 warm-up + 3 timed


def test_best_seconds_needs_a_timed_call():
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        timing.best_seconds(lambda: None, repeats=0)
