"""distill.progress: about ten progress lines per fit, rank 0 only."""

from __future__ import annotations

import re

from distill.progress import Progress


def test_rank_zero_prints_about_ten_lines_and_the_last_step(capsys):
    p = Progress("train", total=25, rank=0)
    for s in range(1, 26):
        p.step(s, 0.5)
    lines = capsys.readouterr().out.splitlines()
    assert [int(re.search(r"step (\d+)/25", x).group(1)) for x in lines] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
                                                                               22, 24, 25]
    assert re.fullmatch(r"\[train\] step 25/25 loss 0\.5000 \(\d+\.\d s/step, ~0\.0 min left\)", lines[-1])


def test_other_ranks_print_nothing(capsys):
    p = Progress("teacher", total=4, rank=1)
    for s in range(1, 5):
        p.step(s, 1.0)
    assert capsys.readouterr().out == ""


def test_a_resumed_fit_counts_from_its_start_step(capsys):
    p = Progress("train", total=40, rank=0, start=30, every=5)
    for s in range(31, 41):
        p.step(s, 0.25)
    out = capsys.readouterr().out
    assert "step 35/40" in out and "step 40/40" in out and "step 31/40" not in out
