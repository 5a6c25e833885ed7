"""Attention weights -> one relevance score per passage (docs/METHODS.md, section 4.1; Izacard & Grave,
arXiv 2012.04584).

Contract: pure tensor functions (no model, no tokenizer, no Ray), unit-tested on hand-built attention; plus
:func:`ensure_eager`, the one thing a model must do before it returns attention weights at all. The FiD
reader (distill.reader) and the cross-encoder's attention signal (distill.cross_encoder_attention) both
score through :func:`aggregate_attention`.

How much a decoder attends to a passage is a relevance signal that needs no relevance labels. With
a_{l,h,t}(j) the cross-attention weight of layer l, head h, output token t on encoder token j:

    score(q, p) = mean_{l in layers} mean_h mean_{t in answer} A_{l,h,t}(p)
    A(p) = sum_{j in p} a(j)   (passage_tokens "sum": the attention *mass* on p; the default)
    A(p) = mean_{j in p} a(j)  (passage_tokens "mean": per-token attention)

only the passage's real tokens count (padding gets no mass). ``weights: logits`` uses log a(j) in place
of a(j): that is the pre-softmax score minus a constant per (l, h, t) row, so with ``passage_tokens:
mean`` it equals the pre-softmax average up to one shift per question, which the softmax over passages
ignores. ``output_tokens: first`` keeps only the first decoder step (it reads no answer). The defaults
follow docs/METHODS.md, section 4.1 (attention mass per passage, averaged over layers, heads and tokens);
the FiD-KD code's choice is ``weights: logits, passage_tokens: mean, output_tokens: first``. For a reader
the answer tokens are its own greedy answer (up to ``answer_max_length`` tokens, through its end token;
:func:`answer_positions`), so any question can be scored, answered or not. The training target is
softmax(score / T_t), as for any teacher score (``training.teacher_temperature``; attention masses lie in
[0, 1], so use a small T_t).

A cross-encoder exposes the same signal without decoding: its self-attention from the query's tokens
(rows) to the passage's tokens (keys), aggregated the same way (``teacher.signal: attention``; with
``output_tokens: first`` the [CLS] row).
"""

from __future__ import annotations

import torch
from torch import nn

_TINY = 1e-30  # log-weights of real tokens whose probability underflowed to 0


def aggregate_attention(attn: torch.Tensor, key_mask: torch.Tensor, query_mask: torch.Tensor | None = None,
                        weights: str = "probs", passage_tokens: str = "sum", output_tokens: str = "all",
                        layers: list[int] | None = None) -> torch.Tensor:
    """Per-passage scores [B, P] from attention weights ``attn`` [n_layers, B, heads, T, P, L].

    ``attn[l, b, h, t]`` is one attention row (post-softmax, over the P*L keys); ``key_mask`` [B, P, L] is 1
    on the real tokens of passage p; ``query_mask`` [B, T] is 1 on the output (query) tokens that count
    (default: all). See the module docstring for the formula.
    """
    if attn.dim() != 6:
        raise ValueError(f"attention must be [layers, batch, heads, tokens, passages, length], got {tuple(attn.shape)}")
    n_layers, B, _, T, P, L = attn.shape
    if tuple(key_mask.shape) != (B, P, L):
        raise ValueError(f"key_mask must be {(B, P, L)}, got {tuple(key_mask.shape)}")
    if layers is not None:
        bad = [i for i in layers if not 1 <= i <= n_layers]
        if bad:
            raise ValueError(f"attention layers {bad} out of range 1..{n_layers}")
        attn = attn[[i - 1 for i in layers]]
    qm = torch.ones(B, T) if query_mask is None else query_mask.float()
    if output_tokens == "first":
        attn, qm = attn[:, :, :, :1], torch.ones(B, 1)
    elif output_tokens != "all":
        raise ValueError(f"output_tokens must be 'all' or 'first', got {output_tokens!r}")
    qm = qm.to(device=attn.device, dtype=torch.float64 if attn.dtype == torch.float64 else torch.float32)
    km = key_mask.to(attn.device).bool()[None, :, None, None]  # [1, B, 1, 1, P, L]
    a = attn if attn.dtype == torch.float64 else attn.float()  # half precision is summed in float32
    if weights == "logits":
        a = torch.log(a.clamp_min(_TINY))
    elif weights != "probs":
        raise ValueError(f"weights must be 'probs' or 'logits', got {weights!r}")
    per = torch.where(km, a, torch.zeros((), device=a.device)).sum(-1)  # [layers, B, heads, T, P]
    if passage_tokens == "mean":
        per = per / km.sum(-1).clamp_min(1)
    elif passage_tokens != "sum":
        raise ValueError(f"passage_tokens must be 'sum' or 'mean', got {passage_tokens!r}")
    per = per.mean(dim=(0, 2))  # layers, heads -> [B, T, P]
    return (per * qm[..., None]).sum(1) / qm.sum(1).clamp_min(1)[:, None]


def aggregate_kwargs(agg) -> dict:
    """AttentionConfig (or its dict) -> aggregate_attention keyword arguments."""
    d = agg if isinstance(agg, dict) else agg.model_dump()
    return {k: d[k] for k in ("weights", "passage_tokens", "output_tokens", "layers") if k in d}


def answer_positions(decoder_input: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """[B, T] mask of the decoder positions that produce the answer. Position t reads input token t and
    predicts token t+1: every position counts (the one that emits the end token included) until one
    reads an end token already emitted. Position 0 (the start token, which is the end token in BART)
    always counts."""
    if eos_id is None:
        return torch.ones_like(decoder_input, dtype=torch.float32)
    hit = decoder_input == eos_id
    hit[:, 0] = False
    return (hit.long().cumsum(1) == 0).float()


def ensure_eager(model: nn.Module) -> None:
    """Attention weights are only returned by the eager attention implementation."""
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")
