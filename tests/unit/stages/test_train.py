"""distill.stages.train without Ray: training groups, sampling and the step -> rows map that makes resume
exact, and one training step (_train_step) against the step as train_loop spelled it inline."""

import numpy as np
import pandas as pd

from distill.stages.train import build_groups, sample_group, step_indices


def test_step_indices_partition_each_epoch_across_workers():
    n, batch, world, spe = 40, 4, 2, 5
    for epoch in range(2):
        seen = []
        for step in range(epoch * spe, (epoch + 1) * spe):
            for rank in range(world):
                seen += step_indices(n, step, spe, batch, world, rank, seed=3).tolist()
        assert sorted(seen) == list(range(n))  # every row once per epoch, no overlap between workers
    # a pure function of (seed, step, rank): a resumed run sees the same batches
    assert (step_indices(n, 7, spe, batch, world, 1, 3) == step_indices(n, 7, spe, batch, world, 1, 3)).all()


def test_sample_group_positive_first_and_padding_masked():
    row = {"docs": ["p", "n1", "n2"], "scores": [3.0, 1.0, 0.5], "labels": [1, 0, 0]}
    docs, scores, mask, chosen = sample_group(row, 5, np.random.default_rng(0))
    assert docs[0] == "p" and scores[0] == 3.0
    assert sorted(docs[1:3]) == ["n1", "n2"] and docs[3:] == ["", ""]
    assert mask == [True, True, True, False, False]
    assert chosen[0] == 0 and sorted(chosen[1:3]) == [1, 2] and chosen[3:] == [-1, -1]


def test_build_groups_skips_queries_without_positive_or_negative():
    scores = pd.DataFrame({"qid": ["a", "a", "b", "c", "c"], "docid": ["1", "2", "1", "1", "2"],
                           "teacher_score": [1.0, 0.0, 2.0, 0.5, 0.1], "label": [1, 0, 1, 0, 0]})
    g = build_groups(scores, {"a": "qa", "b": "qb", "c": "qc"}, lambda d: f"doc{d}")
    assert g["qid"].tolist() == ["a"]
    assert g.iloc[0]["docs"] == ["doc1", "doc2"] and g.iloc[0]["labels"] == [1, 0]


# ---- one training step, against the step as train_loop spelled it inline before the collator/losses split ----
def _step_groups():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        n = 5 if i % 2 else 3  # short lists: padding
        rows.append({"qid": f"q{i}", "query": f"w{i} w{i + 1}", "docs": [f"w{j} w{i}" for j in range(n)],
                     "scores": rng.normal(size=n).astype(np.float32).tolist(), "labels": [1] + [0] * (n - 1),
                     "q_embs": rng.normal(size=(n, 6)).astype(np.float32).tolist(),
                     "d_embs": rng.normal(size=(n, 6)).astype(np.float32).tolist(),
                     "layer_scores": rng.normal(size=(n, 3)).astype(np.float32).tolist()})
    return pd.DataFrame(rows)


def _encoder(matmul: bool = False):
    """``matmul``: a linear layer after the embeddings (autocast has something to run in bf16)."""
    import torch

    class Enc(torch.nn.Module):
        """Stand-in student: bag of word embeddings; two 'layers'."""

        dim = 4

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.emb = torch.nn.Embedding(16, 4)
            self.lin = torch.nn.Linear(4, 4) if matmul else None

        def tokenize(self, texts):
            ids = torch.tensor([[int(w[1:]) for w in t.split()] if t else [0, 0] for t in texts])
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

        def forward(self, input_ids, attention_mask, return_layers=False):
            h1 = torch.tanh(self.emb(input_ids)).mean(1)
            h1 = self.lin(h1) if self.lin is not None else h1
            v = torch.nn.functional.normalize(h1 * 2, dim=-1)
            return (v, [h1, v]) if return_layers else v

    return Enc()


def _old_inline_step(model, groups, K, idx, rng, w, cfg):
    """train_loop's step before the refactor, world = 1 (copied from distill/stages/train.py at 2201ea6)."""
    import torch

    from distill import losses
    from distill.losses.lead import lead_loss

    tokenize, device, asym, T_t, T_s = model.encoder.tokenize, "cpu", cfg["asym"], cfg["T_t"], cfg["T_s"]
    use_emb, use_lead, layer_map = True, not asym, [(1, 1), (2, 3)]
    docs, tscores, masks, t_q, t_d, t_layers_b = [], [], [], [], [], []
    for i in idx:
        row = groups.iloc[i]
        d, s, m, chosen = sample_group(row, K, rng)
        docs += d
        tscores.append(s)
        masks.append(m)
        if use_lead:
            n_l = len(row["layer_scores"][0])
            t_layers_b.append([row["layer_scores"][c] if c >= 0 else [0.0] * n_l for c in chosen])
        if use_emb:
            t_q.append(row["q_embs"][chosen[0]])
            t_d += [row["d_embs"][c] if c >= 0 else np.zeros(len(row["d_embs"][0]), np.float32) for c in chosen]
    q_in = {k: v.to(device) for k, v in tokenize(groups["query"].iloc[idx].tolist()).items()}
    d_in = None if asym else {k: v.to(device) for k, v in tokenize(docs).items()}
    if use_lead:
        (q, q_layers), (d, d_layers) = model(q_in, d_in, True)
    else:
        q, d = model(q_in, d_in)
    if asym:
        d = torch.tensor(np.asarray(t_d, np.float32), device=device)
    q, d = q.float(), d.float()
    t = torch.tensor(tscores, dtype=torch.float32, device=device)
    mask = torch.tensor(masks, dtype=torch.bool, device=device)
    s = (q.unsqueeze(1) * d.view(len(idx), K, -1)).sum(-1)
    terms = {}
    if w["kl"]:
        terms["kl"] = losses.listwise_kl(s, t, T_t, T_s, mask)
    if w["margin_mse"]:
        terms["margin_mse"] = losses.margin_mse(s, t, T_t, T_s, mask)
    if w["mse"]:
        terms["mse"] = losses.score_mse(s, t, T_t, T_s, mask)
    if w["infonce"]:
        pos = torch.arange(len(idx), device=device) * K
        terms["infonce"] = losses.info_nce(q, d, pos, T_s, mask.reshape(-1).float().bool())
    if use_emb and w.get("embedding"):
        proj = model.proj
        tq = torch.tensor(np.asarray(t_q, np.float32), device=device)
        terms["embedding"] = losses.embedding_match(q if asym else proj(q), tq, cfg["mode"])
        if not asym:
            td = torch.tensor(np.asarray(t_d, np.float32), device=device)
            terms["embedding"] = terms["embedding"] + losses.embedding_match(proj(d), td, cfg["mode"],
                                                                             mask.reshape(-1))
    if use_lead:
        n_pick = min(cfg["pairs"], len(layer_map))
        picked = [layer_map[j] for j in rng.choice(len(layer_map), size=n_pick, replace=False)]
        s_layers = {m: (q_layers[m - 1].float().unsqueeze(1) * d_layers[m - 1].float().view(len(idx), K, -1)).sum(-1)
                    for m, _ in picked}
        tl = torch.tensor(np.asarray(t_layers_b, np.float32), device=device)
        terms["lead"] = lead_loss(s_layers, tl, picked, {1: 0.3, 2: 0.2, 3: 0.5}, 0.1, mask)
    return sum(w[k] * v for k, v in terms.items()), terms


import pytest  # noqa: E402


@pytest.mark.parametrize("asym", [False, True])
def test_train_step_equals_the_old_inline_step_bit_for_bit(asym, monkeypatch):
    import ray.train.torch
    import torch

    from distill.collator import Collator
    from distill.losses import build_losses
    from distill.pair_model import PairModel
    from distill.stages.train import _train_step
    from distill.train_engine import TrainEngine

    monkeypatch.setattr(ray.train.torch, "prepare_model", lambda m: m)
    groups, K, idx = _step_groups(), 4, np.array([2, 0, 3])
    w = {"kl": 1.0, "margin_mse": 0.5, "mse": 0.1, "infonce": 0.2, "embedding": 0.3, "lead": 0.0 if asym else 0.5}
    cfg = {"asym": asym, "T_t": 0.5, "T_s": 0.25, "mode": "l2", "pairs": 1}
    if asym:  # the teacher's width is the student's
        groups["q_embs"] = [np.asarray(v)[:, :4].tolist() for v in groups["q_embs"]]
        groups["d_embs"] = [np.asarray(v)[:, :4].tolist() for v in groups["d_embs"]]
    old = PairModel(_encoder(), None if asym else 6)
    old_loss, old_terms = _old_inline_step(old, groups, K, idx, np.random.default_rng([1, 2, 0]), w, cfg)
    old_loss.backward()
    torch.nn.utils.clip_grad_norm_(old.parameters(), 1.0)

    new = PairModel(_encoder(), None if asym else 6)
    new.load_state_dict(old.state_dict())
    # lr 0: the step leaves the weights as they are and the (clipped) gradients in place to compare
    engine = TrainEngine(new, {"backend": "ddp", "lr": 0.0, "weight_decay": 0.0, "warmup_ratio": 0.0}, total=1)
    collate = Collator(groups, K, new.encoder.tokenize, embeddings=True, asymmetric=asym,
                       layer_map=None if asym else [(1, 1), (2, 3)], pairs_per_step=1)
    losses = build_losses(w, teacher_temperature=0.5, student_temperature=0.25, lead_weights={1: 0.3, 2: 0.2, 3: 0.5},
                          lead_temperature=0.1, available={"lead": not asym})
    loss, terms, _ = _train_step(engine, collate, losses, w, idx, np.random.default_rng([1, 2, 0]), False)
    assert list(terms) == list(old_terms) and torch.equal(loss, old_loss)
    for k in terms:
        assert torch.equal(terms[k], old_terms[k]), k
    for (n, a), b in zip(old.named_parameters(), new.parameters()):
        assert torch.equal(a.grad, b.grad), n


def test_bf16_train_step_autocasts_the_forward_and_keeps_fp32_weights_and_gradients(monkeypatch):
    """training.precision bf16: the same step with the forward under bf16 autocast gives a loss and gradients
    close to fp32 (but not identical: the matmuls did run in bf16); weights and gradients stay fp32."""
    import ray.train.torch
    import torch

    from distill.collator import Collator
    from distill.losses import build_losses
    from distill.pair_model import PairModel
    from distill.stages.train import _train_step
    from distill.train_engine import TrainEngine

    monkeypatch.setattr(ray.train.torch, "prepare_model", lambda m: m)
    groups, K, idx = _step_groups(), 4, np.array([2, 0, 3])
    w = {"kl": 1.0, "infonce": 0.2, "lead": 0.5}
    runs = {}
    for precision in ("fp32", "bf16"):
        model = PairModel(_encoder(matmul=True), None)
        engine = TrainEngine(model, {"backend": "ddp", "lr": 0.0, "weight_decay": 0.0, "warmup_ratio": 0.0}, total=1)
        collate = Collator(groups, K, model.encoder.tokenize, layer_map=[(1, 1), (2, 3)], pairs_per_step=1)
        losses = build_losses(w, teacher_temperature=0.5, student_temperature=0.25,
                              lead_weights={1: 0.3, 2: 0.2, 3: 0.5}, lead_temperature=0.1, available={"lead": True})
        loss, terms, _ = _train_step(engine, collate, losses, w, idx, np.random.default_rng([1, 2, 0]), False,
                                     precision)
        assert loss.dtype == torch.float32 and sorted(terms) == ["infonce", "kl", "lead"]
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
        runs[precision] = (float(loss.detach()), torch.cat([p.grad.flatten() for p in model.parameters()]))
    (l32, g32), (l16, g16) = runs["fp32"], runs["bf16"]
    assert l16 != l32 and abs(l16 - l32) <= 0.02 * abs(l32)
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.99
