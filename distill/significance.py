"""Is a difference between two systems more than query noise? A paired test over the same queries.

For one metric, a system's value on query q is a_q (the control) or b_q (the treatment), on the same n
queries; the observed difference is d = mean_q(b_q - a_q).

- **Randomization test** (Fisher's; the test Smucker, Allan & Carterette, CIKM 2007, recommend for IR):
  if the two systems are exchangeable, swapping a_q and b_q on any query is as likely as what was seen, so each
  d_q = b_q - a_q keeps or flips its sign with probability 1/2. Of R random sign patterns s, count those with
  |mean_q(s_q d_q)| >= |d|; the two-sided p-value is (count + 1) / (R + 1), the observed pattern counted once
  (never 0).
- **Bootstrap interval**: resample the n queries with replacement B times; the 2.5th and 97.5th percentiles
  of mean(d) over the resamples bound d at 95%.

With several training seeds a system's value on a query is first averaged over its seeds
(:func:`seed_mean`), so the test compares systems, not one seed's draw (seed noise then shrinks, query
noise stays: the test is conservative about seeds it did not see).
"""

from __future__ import annotations

import numpy as np


def _check_same_queries(a: dict[str, float], b: dict[str, float], what: str) -> list[str]:
    if set(a) != set(b):
        only_a, only_b = len(set(a) - set(b)), len(set(b) - set(a))
        raise ValueError(f"{what}: not the same queries ({only_a} only in the first, {only_b} only in the second)")
    if not a:
        raise ValueError(f"{what}: no queries")
    return sorted(a)


def seed_mean(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Each query's value averaged over the seeds' runs (every run must cover the same queries)."""
    if not per_seed:
        raise ValueError("seed_mean: no runs")
    qids = sorted(per_seed[0])
    for i, run in enumerate(per_seed[1:], 1):
        _check_same_queries(per_seed[0], run, f"seed_mean: run 0 and run {i}")
    return {q: float(np.mean([run[q] for run in per_seed])) for q in qids}


def paired_test(control: dict[str, float], treatment: dict[str, float], permutations: int = 10_000,
                resamples: int = 10_000, seed: int = 0) -> dict:
    """The treatment against the control on one metric, both ``{qid: value}`` over the same queries:
    ``{queries, control, treatment, diff, p, ci95: [lo, hi], wins, losses, ties}`` (wins: queries where the
    treatment is higher). Deterministic for a given ``seed``."""
    qids = _check_same_queries(control, treatment, "paired_test")
    a = np.array([control[q] for q in qids], dtype=np.float64)
    b = np.array([treatment[q] for q in qids], dtype=np.float64)
    d = b - a
    observed = d.mean()
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(permutations, len(d)))
    flipped = np.abs(signs @ d) / len(d)
    count = int(np.count_nonzero(flipped >= abs(observed) - 1e-12))
    boot = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"queries": len(d), "control": float(a.mean()), "treatment": float(b.mean()), "diff": float(observed),
            "p": (count + 1) / (permutations + 1), "ci95": [float(lo), float(hi)],
            "wins": int(np.count_nonzero(d > 0)), "losses": int(np.count_nonzero(d < 0)),
            "ties": int(np.count_nonzero(d == 0))}
