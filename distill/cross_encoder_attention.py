"""A cross-encoder's attention as its teacher score (``teacher.signal: attention``; docs/METHODS.md, 4.1).

Contract: :func:`cross_encoder_attention_scores` gives one float32 score per (query, passage) pair, in
input order: the cross-encoder's self-attention from the query's tokens (rows) to the passage's tokens
(keys), aggregated by :func:`distill.attention.aggregate_attention` as a reader's cross-attention is (the
query's tokens play the output tokens, the passage is the one passage; ``output_tokens: first`` is the
[CLS] row). The model is switched to eager attention and left in the train/eval mode it came in. The
score stage's TeacherActor (distill.stages.score) calls it; no Ray here.
"""

from __future__ import annotations

import numpy as np
import torch

from distill.attention import aggregate_attention, aggregate_kwargs, ensure_eager


@torch.inference_mode()
def cross_encoder_attention_scores(ce, queries: list[str], docs: list[str], attention=None,
                                   batch_size: int = 32) -> np.ndarray:
    """Per pair: the cross-encoder's attention from the query's tokens to the passage's tokens, aggregated
    like the reader's (query tokens play the output tokens, the passage is the one passage)."""
    kw = aggregate_kwargs(attention or {})
    was_training = ce.training
    ce.eval()
    ensure_eager(ce.model)
    out = np.zeros(len(queries), np.float32)
    for i in range(0, len(queries), batch_size):
        enc = ce.tokenizer(list(queries[i:i + batch_size]), list(docs[i:i + batch_size]), padding=True,
                           truncation="longest_first", max_length=ce.max_length, return_tensors="pt")
        seq = torch.tensor([[-1 if s is None else s for s in enc.sequence_ids(j)] for j in range(len(enc["input_ids"]))])
        dev = next(ce.model.parameters()).device
        inputs = {k: v.to(dev) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        attn = torch.stack(ce.model(**inputs, output_attentions=True).attentions)  # [layers, B, heads, T, T]
        attn = attn.unsqueeze(4)  # one passage: [layers, B, heads, T, 1, T]
        scores = aggregate_attention(attn, (seq == 1).unsqueeze(1), (seq == 0), **kw).squeeze(1)
        out[i:i + batch_size] = scores.float().cpu().numpy()
    ce.train(was_training)
    return out
