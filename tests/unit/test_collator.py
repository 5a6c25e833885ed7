"""distill/collator.py: sampling a group, a step's features (exact shapes, masks, padding, draw order) and
the StepBatch that joins them with the student's outputs."""

import numpy as np
import pandas as pd
import pytest
import torch

from distill.collator import Collator, assemble, sample_group


def _groups() -> pd.DataFrame:
    """Two queries: q0 with 4 candidates (positive at 2), q1 with 2 (positive at 0); 3-wide teacher vectors
    and 2 teacher layers per candidate."""
    rows = []
    for qi, (n, pos) in enumerate([(4, 2), (2, 0)]):
        rows.append({"qid": f"q{qi}", "query": f"query {qi}", "docs": [f"d{qi}{j}" for j in range(n)],
                     "scores": [float(10 * qi + j) for j in range(n)], "labels": [int(j == pos) for j in range(n)],
                     "q_embs": [[qi, j, 0.5] for j in range(n)], "d_embs": [[qi, j, -1.0] for j in range(n)],
                     "layer_scores": [[qi + j, -(qi + j)] for j in range(n)]})
    return pd.DataFrame(rows)


def _tokenize(texts):
    """A stand-in tokenizer: one id per text (its length), so the test sees which texts went in."""
    ids = torch.tensor([[len(t)] for t in texts])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_sample_group_positive_first_then_negatives_then_padding():
    row = _groups().iloc[0]
    docs, scores, mask, chosen = sample_group(row, 3, np.random.default_rng(0))
    assert chosen[0] == 2 and docs[0] == "d02" and scores[0] == 2.0
    assert len(set(chosen)) == 3 and 2 not in chosen[1:] and mask == [True] * 3
    docs, scores, mask, chosen = sample_group(_groups().iloc[1], 4, np.random.default_rng(0))
    assert chosen == [0, 1, -1, -1] and docs == ["d10", "d11", "", ""] and scores == [10.0, 11.0, 0.0, 0.0]
    assert mask == [True, True, False, False]


def test_features_shapes_masks_and_padding():
    g = _groups()
    col = Collator(g, 3, _tokenize, embeddings=True, layer_map=[(1, 1), (2, 2)], pairs_per_step=1)
    f = col(np.array([0, 1]), np.random.default_rng(0))
    assert f.q_in["input_ids"].tolist() == [[7], [7]] and f.d_in["input_ids"].shape == (6, 1)
    assert f.teacher_scores.shape == (2, 3) and f.teacher_scores.dtype == torch.float32
    assert f.mask.tolist() == [[True, True, True], [True, True, False]]
    assert f.teacher_scores[0, 0] == 2.0 and f.teacher_scores[1].tolist() == [10.0, 11.0, 0.0]
    # teacher query vector: the positive pair's; document vectors per slot, zeros for padding
    assert f.teacher_q.tolist() == [[0, 2, 0.5], [1, 0, 0.5]]
    assert f.teacher_d.shape == (6, 3) and f.teacher_d[0].tolist() == [0, 2, -1] and f.teacher_d[5].tolist() == [0, 0, 0]
    assert f.teacher_layers.shape == (2, 3, 2) and f.teacher_layers[1, 2].tolist() == [0.0, 0.0]
    assert f.teacher_layers[0, 0].tolist() == [2.0, -2.0]
    assert len(f.layer_pairs) == 1 and f.layer_pairs[0] in [(1, 1), (2, 2)]


def test_draw_order_groups_then_layer_pairs():
    """One generator per step: every group's samples first, then the LEAD layer pairs (resume exactness)."""
    g, idx = _groups(), np.array([1, 0])
    lm = [(1, 1), (1, 2), (2, 1), (2, 2)]
    f = Collator(g, 3, _tokenize, layer_map=lm, pairs_per_step=2)(idx, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    chosen = [sample_group(g.iloc[i], 3, rng)[3] for i in idx]
    assert f.layer_pairs == [lm[j] for j in rng.choice(4, size=2, replace=False)]
    assert f.mask.tolist() == [[c >= 0 for c in ch] for ch in chosen]
    plain = Collator(g, 3, _tokenize)(idx, np.random.default_rng(5))  # no LEAD: the same groups
    assert torch.equal(plain.teacher_scores, f.teacher_scores) and plain.layer_pairs is None
    assert plain.teacher_q is None and plain.teacher_layers is None


def test_asymmetric_features_have_no_document_tokens():
    f = Collator(_groups(), 2, _tokenize, embeddings=True, asymmetric=True)(np.array([0]), np.random.default_rng(0))
    assert f.d_in is None and f.teacher_d.shape == (2, 3)


@pytest.mark.parametrize("asym", [False, True])
def test_assemble_scores_are_query_document_dot_products(asym):
    f = Collator(_groups(), 3, _tokenize, embeddings=True, asymmetric=asym)(np.array([0, 1]), np.random.default_rng(1))
    q = torch.randn(2, 3)
    d = None if asym else torch.randn(6, 3)
    b = assemble((q, d), f, projection=torch.nn.Identity(), asymmetric=asym)
    docs = f.teacher_d if asym else d
    assert b.scores.shape == (2, 3) and b.group_size == 3
    torch.testing.assert_close(b.scores, torch.einsum("bd,bkd->bk", q, docs.view(2, 3, 3)))
    assert b.docs is docs and b.mask is f.mask and b.asymmetric is asym and b.query_layers is None


def test_assemble_with_layers():
    lm = [(1, 1), (2, 2)]
    f = Collator(_groups(), 2, _tokenize, layer_map=lm, pairs_per_step=2)(np.array([0]), np.random.default_rng(0))
    q, d = torch.randn(1, 4), torch.randn(2, 4)
    ql, dl = [torch.randn(1, 4), torch.randn(1, 4)], [torch.randn(2, 4), torch.randn(2, 4)]
    b = assemble(((q, ql), (d, dl)), f)
    assert b.query_layers is ql and b.doc_layers is dl and sorted(b.layer_pairs) == lm
    assert b.teacher_layers.shape == (1, 2, 2)
