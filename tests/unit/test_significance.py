"""distill.significance: the paired randomization test and bootstrap interval over queries."""

from __future__ import annotations

import pytest

from distill.significance import paired_test, seed_mean


def test_identical_systems_differ_by_nothing():
    a = {f"q{i}": i / 10 for i in range(10)}
    out = paired_test(a, dict(a), permutations=999, resamples=200)
    assert out["diff"] == 0.0 and out["p"] == 1.0 and out["ci95"] == [0.0, 0.0]
    assert (out["wins"], out["losses"], out["ties"], out["queries"]) == (0, 0, 10, 10)


def test_a_gain_on_every_query_is_significant_and_its_interval_is_exact():
    a = {f"q{i}": 0.5 for i in range(20)}
    b = {q: 0.6 for q in a}
    out = paired_test(a, b, permutations=999, resamples=200)
    assert out["diff"] == pytest.approx(0.1) and out["wins"] == 20
    # only the all-kept and all-flipped patterns (2 in 2^20) reach |0.1|: none drawn in 999, so p = 1/1000
    assert out["p"] == pytest.approx(1 / 1000)
    assert out["ci95"] == [pytest.approx(0.1), pytest.approx(0.1)]


def test_one_query_can_never_be_significant():
    out = paired_test({"q": 0.0}, {"q": 1.0}, permutations=99, resamples=10)
    assert out["p"] == 1.0  # every sign pattern has |mean| = 1


def test_a_gain_on_half_the_queries_and_a_loss_on_the_other_half_is_noise():
    a = {f"q{i}": 0.5 for i in range(40)}
    b = {q: 0.5 + (0.2 if i % 2 else -0.2) for i, q in enumerate(a)}
    out = paired_test(a, b, permutations=2000, resamples=2000, seed=3)
    assert out["diff"] == pytest.approx(0.0, abs=1e-12) and out["p"] == 1.0
    assert out["ci95"][0] < 0 < out["ci95"][1] and (out["wins"], out["losses"]) == (20, 20)


def test_the_same_seed_gives_the_same_answer():
    a = {f"q{i}": (i * 7 % 10) / 10 for i in range(30)}
    b = {q: (i * 3 % 10) / 10 for i, q in enumerate(a)}
    assert paired_test(a, b, seed=1) == paired_test(a, b, seed=1)


def test_different_queries_are_refused():
    with pytest.raises(ValueError, match="not the same queries .1 only in the first, 1 only in the second"):
        paired_test({"q1": 0.1, "q2": 0.2}, {"q1": 0.1, "q3": 0.2})
    with pytest.raises(ValueError, match="no queries"):
        paired_test({}, {})


def test_seed_mean_averages_each_query_over_runs():
    assert seed_mean([{"a": 0.0, "b": 1.0}, {"a": 1.0, "b": 1.0}]) == {"a": 0.5, "b": 1.0}
    with pytest.raises(ValueError, match="run 0 and run 1"):
        seed_mean([{"a": 0.0}, {"b": 0.0}])
    with pytest.raises(ValueError, match="no runs"):
        seed_mean([])
