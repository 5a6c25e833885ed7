"""Reader attention as the teacher signal (docs/METHODS.md, section 4.1; Izacard & Grave, arXiv 2012.04584).

A Fusion-in-Decoder (FiD) reader is a seq2seq model (T5, BART, ...) that encodes each
``question: q context: p_i`` input separately, concatenates the encoder states of all k passages, and
decodes an answer while its cross-attention reads all of them at once. How much the decoder attends to
a passage is a relevance signal that needs no relevance labels. With a_{l,h,t}(j) the decoder's
cross-attention weight of layer l, head h, output token t on encoder token j:

    score(q, p) = mean_{l in layers} mean_h mean_{t in answer} A_{l,h,t}(p)
    A(p) = sum_{j in p} a(j)   (passage_tokens "sum": the attention *mass* on p; the default)
    A(p) = mean_{j in p} a(j)  (passage_tokens "mean": per-token attention)

only the passage's real tokens count (padding gets no mass). ``weights: logits`` uses log a(j) in place
of a(j): that is the pre-softmax score minus a constant per (l, h, t) row, so with ``passage_tokens:
mean`` it equals the pre-softmax average up to one shift per question, which the softmax over passages
ignores. ``output_tokens: first`` keeps only the first decoder step (it reads no answer). The defaults
follow docs/METHODS.md, section 4.1 (attention mass per passage, averaged over layers, heads and tokens);
the FiD-KD code's choice is ``weights: logits, passage_tokens: mean, output_tokens: first``. The answer
tokens are the reader's own greedy answer (up to ``answer_max_length`` tokens, through its end token),
so any question can be scored, answered or not. The training target is softmax(score / T_t), as for any
teacher score (``training.teacher_temperature``; attention masses lie in [0, 1], so use a small T_t).

A cross-encoder exposes the same signal without decoding: its self-attention from the query's tokens
(rows) to the passage's tokens (keys), aggregated the same way (``teacher.signal: attention``; with
``output_tokens: first`` the [CLS] row).

Also here: reading QA pairs (``data.answers``) for fine-tuning the reader (stage ``teacher``), and the
Ray Data actor that scores each question's candidates together (stage ``score``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill.models import count_parameters, resolve_model

READER_META = "distill_reader.json"
INPUT_FORMAT = "question: {question} context: {passage}"
_TINY = 1e-30  # log-weights of real tokens whose probability underflowed to 0


# ---- aggregation (pure tensors; unit-tested on hand-built attention) -----------------------------------
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


def _agg_kwargs(agg) -> dict:
    """AttentionConfig (or its dict) -> aggregate_attention keyword arguments."""
    d = agg if isinstance(agg, dict) else agg.model_dump()
    return {k: d[k] for k in ("weights", "passage_tokens", "output_tokens", "layers") if k in d}


def _ensure_eager(model: nn.Module) -> None:
    """Attention weights are only returned by the eager attention implementation."""
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")


def warm_start_seq2seq(path: str, tokenizer, trust_remote_code: bool = False):
    """A seq2seq reader warm-started from an encoder-only checkpoint (BERT2BERT, Rothe et al. 2020): the
    encoder and the decoder's self-attention and feed-forward layers start from its weights, the decoder's
    cross-attention and LM-head transform start fresh. Start/end/pad tokens: [CLS]/[SEP]/[PAD] (or
    BOS/EOS/PAD). Saved, it is an ordinary ``encoder-decoder`` model (AutoModelForSeq2SeqLM loads it)."""
    from transformers import EncoderDecoderModel

    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if start is None or end is None or tokenizer.pad_token_id is None:
        raise ValueError(f"{path}: a reader warm-started from an encoder needs start, end and pad tokens")
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(path, path, trust_remote_code=trust_remote_code)
    for conf in (model.config, model.generation_config):
        conf.decoder_start_token_id, conf.eos_token_id, conf.pad_token_id = start, end, tokenizer.pad_token_id
    return model


# ---- the FiD reader ------------------------------------------------------------------------------------
class FiDReader(nn.Module):
    """A seq2seq model used Fusion-in-Decoder style: encoder per (question, passage), decoder over all.
    An encoder-only ``model`` (BERT, MiniLM) is warm-started as a BERT2BERT seq2seq model
    (:func:`warm_start_seq2seq`).

    ``forward`` gives the answer's LM loss (fine-tuning); ``passage_scores`` the attention per passage.
    """

    def __init__(self, model: str, max_length: int = 256, answer_max_length: int = 32,
                 trust_remote_code: bool = False):
        super().__init__()
        from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

        path = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        if getattr(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code), "is_encoder_decoder", False):
            # eager attention from the start: the attention scores are what the reader is for, and switching
            # an sdpa-loaded T5 later returns no cross-attentions under transformers 5.17 (seen on the H200 check)
            self.model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=trust_remote_code,
                                                               attn_implementation="eager")
        else:
            self.model = warm_start_seq2seq(path, self.tokenizer, trust_remote_code)
        self.max_length = max_length
        self.answer_max_length = answer_max_length

    @staticmethod
    def format(question: str, passage: str) -> str:
        return INPUT_FORMAT.format(question=question, passage=passage)

    def tokenize(self, questions: list[str], passages: list[list[str]], pad_to: int | None = None):
        """input_ids, attention_mask [B, P, L]: question b with each of its passages (all b have P passages)."""
        n = {len(p) for p in passages}
        if len(n) != 1 or 0 in n:
            raise ValueError("every question needs the same, non-zero number of passages")
        texts = [self.format(q, p) for q, ps in zip(questions, passages) for p in ps]
        enc = self.tokenizer(texts, truncation=True, max_length=pad_to or self.max_length, return_tensors="pt",
                             padding="max_length" if pad_to else True)
        B, P = len(questions), n.pop()
        return enc["input_ids"].view(B, P, -1), enc["attention_mask"].view(B, P, -1)

    def tokenize_answers(self, answers: list[str]) -> torch.Tensor:
        """Labels [B, T] (end token included; padding -100)."""
        enc = self.tokenizer(list(answers), truncation=True, max_length=self.answer_max_length,
                             padding=True, return_tensors="pt")
        return enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, chunk: int | None = None):
        """Encoder states of every passage, concatenated per question: [B, P*L, H] and mask [B, P*L]."""
        B, P, L = input_ids.shape
        ids, mask = input_ids.reshape(B * P, L), attention_mask.reshape(B * P, L)
        encoder = self.model.get_encoder()
        step = chunk or B * P
        h = torch.cat([encoder(input_ids=ids[i:i + step], attention_mask=mask[i:i + step]).last_hidden_state
                       for i in range(0, B * P, step)])
        return h.reshape(B, P * L, -1), mask.reshape(B, P * L)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The answer's token-level cross-entropy given the question and its passages (FiD training)."""
        from transformers.modeling_outputs import BaseModelOutput

        h, mask = self.encode(input_ids, attention_mask)
        return self.model(encoder_outputs=BaseModelOutput(last_hidden_state=h), attention_mask=mask,
                          labels=labels).loss

    @torch.inference_mode()
    def passage_scores(self, question: str, passages: list[str], attention=None, batch_size: int = 32,
                       pad_to: int | None = None) -> np.ndarray:
        """One score per passage (float32, input order) from the decoder's cross-attention."""
        from transformers.modeling_outputs import BaseModelOutput

        if not passages:
            return np.zeros(0, np.float32)
        kw = _agg_kwargs(attention or {})
        was_training = self.training
        self.eval()
        _ensure_eager(self.model)
        dev = next(self.model.parameters()).device
        ids, mask = (t.to(dev) for t in self.tokenize([question], [list(passages)], pad_to))
        h, flat_mask = self.encode(ids, mask, chunk=batch_size)
        enc = BaseModelOutput(last_hidden_state=h)
        start = torch.full((1, 1), self.model.config.decoder_start_token_id, dtype=torch.long, device=dev)
        if kw.get("output_tokens", "all") == "first":
            dec = start
        else:  # the reader's own greedy answer, then one teacher-forced pass for its attention
            gen = self.model.generate(encoder_outputs=enc, attention_mask=flat_mask, do_sample=False, num_beams=1,
                                      max_new_tokens=self.answer_max_length, decoder_start_token_id=int(start))
            dec = gen[:, :-1] if gen.shape[1] > 1 else gen
        out = self.model(encoder_outputs=enc, attention_mask=flat_mask, decoder_input_ids=dec, output_attentions=True)
        if not out.cross_attentions:
            raise RuntimeError(f"the reader returned no cross-attentions (attention implementation "
                               f"{getattr(self.model.config, '_attn_implementation', '?')!r}): load it with "
                               "attn_implementation='eager'")
        attn = torch.stack(out.cross_attentions)  # [layers, 1, heads, T, P*L]
        attn = attn.view(*attn.shape[:4], ids.shape[1], ids.shape[2])
        qmask = answer_positions(dec, self.model.config.eos_token_id)
        scores = aggregate_attention(attn, mask, qmask, **kw)[0]
        self.train(was_training)
        return scores.float().cpu().numpy().astype(np.float32)

    def score(self, queries: list[str], docs: list[str], batch_size: int = 32) -> np.ndarray:
        """Pair scores in input order (a query's pairs read together; default aggregation), so the reader
        can stand where a cross-encoder does (evaluation's speed and size rows)."""
        return score_grouped(self, queries, docs, None, batch_size)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        (path / READER_META).write_text(json.dumps({"input_format": INPUT_FORMAT, "max_length": self.max_length,
                                                    "answer_max_length": self.answer_max_length}))

    @property
    def num_parameters(self) -> int:
        return count_parameters(self)


def score_grouped(reader: FiDReader, queries: list[str], docs: list[str], attention=None,
                  batch_size: int = 32, keys: list | None = None) -> np.ndarray:
    """Scores of (query, doc) pairs in input order; the pairs of one query (one key, e.g. its id; by
    default its text) are read together."""
    out = np.zeros(len(queries), np.float32)
    groups: dict = {}
    for i, k in enumerate(queries if keys is None else keys):
        groups.setdefault(k, []).append(i)
    for idx in groups.values():
        out[idx] = reader.passage_scores(queries[idx[0]], [docs[i] for i in idx], attention, batch_size)
    return out


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


# ---- cross-encoder attention ---------------------------------------------------------------------------
@torch.inference_mode()
def cross_encoder_attention_scores(ce, queries: list[str], docs: list[str], attention=None,
                                   batch_size: int = 32) -> np.ndarray:
    """Per pair: the cross-encoder's attention from the query's tokens to the passage's tokens, aggregated
    like the reader's (query tokens play the output tokens, the passage is the one passage)."""
    kw = _agg_kwargs(attention or {})
    was_training = ce.training
    ce.eval()
    _ensure_eager(ce.model)
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


# ---- QA pairs ------------------------------------------------------------------------------------------
def read_answers(path: str | Path, queries: dict[str, str], rejects=None) -> tuple[dict[str, list[str]], dict]:
    """``{qid: [answer, ...]}`` from a JSONL file of ``{"_id": ..., "answers": [str, ...] | str}``.

    Rows without an ``answers`` key are counted (``no_answers``: a queries file may hold unanswered test
    queries); broken rows, unknown query ids, malformed or empty answers and duplicates are rejected with
    their reason (into ``rejects`` when given) and counted."""
    from distill.data import DataError, _lines

    path = Path(path)
    if not path.exists() and Path(str(path) + ".gz").exists():
        path = Path(str(path) + ".gz")
    if not path.exists():
        raise DataError(f"answers file not found: {path}")
    out: dict[str, list[str]] = {}
    counts = {"rows": 0, "answered": 0, "no_answers": 0, "rejected": 0}

    def reject(n: int, reason: str, raw: str) -> None:
        counts["rejected"] += 1
        if rejects is not None:
            rejects.add(path.name, n, reason, raw)

    for n, line, raw in _lines(path):
        if line is None:
            reject(n, "not_utf8", raw.decode("utf-8", "replace"))
            continue
        if not line.strip():
            continue
        counts["rows"] += 1
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            reject(n, "bad_json", line)
            continue
        if not isinstance(row, dict) or row.get("_id", row.get("id")) is None:
            reject(n, "missing_id", line)
            continue
        qid = str(row.get("_id", row.get("id")))
        if "answers" not in row and "answer" not in row:
            counts["no_answers"] += 1
            continue
        ans = row.get("answers", row.get("answer"))
        ans = [ans] if isinstance(ans, str) else ans
        if not isinstance(ans, list) or not all(isinstance(a, str) for a in ans) or not any(a.strip() for a in ans):
            reject(n, "bad_answers", line)
            continue
        if qid not in queries:
            reject(n, "unknown_query", line)
            continue
        if qid in out:
            reject(n, "duplicate_id", line)
            continue
        out[qid] = [a.strip() for a in ans if a.strip()]
    counts["answered"] = len(out)
    return out, counts


# ---- Ray Data scoring: one row per question, all its candidates together -------------------------------
class ReaderActor:
    """Ray Data actor: for each question row (``qid``, ``query``, ``docids``, ``docs``) the reader's
    attention score of every candidate; returns one row per (qid, docid)."""

    def __init__(self, model_dir: str, max_length: int, answer_max_length: int, attention: dict, threads: int,
                 batch_size: int, trust_remote_code: bool = False):
        torch.set_num_threads(threads)
        self.reader = FiDReader(model_dir, max_length, answer_max_length, trust_remote_code)
        if torch.cuda.is_available():  # the pool asked for a GPU (ray.actor_gpus)
            self.reader.to("cuda")
        self.attention = attention
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        qids, docids, scores = [], [], []
        for qid, query, ids, docs in zip(batch["qid"], batch["query"], batch["docids"], batch["docs"]):
            s = self.reader.passage_scores(str(query), [str(d) for d in docs], self.attention, self.batch_size)
            qids += [str(qid)] * len(ids)
            docids += [str(d) for d in ids]
            scores.append(s)
        return {"qid": np.array(qids, dtype=object), "docid": np.array(docids, dtype=object),
                "teacher_score": np.concatenate(scores) if scores else np.zeros(0, np.float32)}


def score_pairs_reader(pairs, queries: dict[str, str], doc_text, teacher_dir: str, teacher_cfg, scoring_cfg,
                       ray_cfg, stats: dict | None = None):
    """The reader's attention score for each (qid, docid) row of ``pairs``; a question's candidates are
    read together (FiD), so rows are grouped per question before they become blocks. Rows in = rows out,
    checked."""
    import time

    t0 = time.perf_counter()
    import pandas as pd
    import pyarrow as pa

    from distill.raycluster import actor_threads
    from distill.raydata import blocks_of, check_rows, map_actor_pool

    groups = [(q, g["docid"].astype(str).tolist()) for q, g in pairs.groupby("qid", sort=False)]
    docs = [[doc_text(d) for d in ids] for _, ids in groups]
    order = np.argsort([-sum(len(t) for t in ds) for ds in docs], kind="stable")
    table = pa.table({"qid": [str(groups[i][0]) for i in order], "query": [queries[groups[i][0]] for i in order],
                      "docids": [groups[i][1] for i in order], "docs": [docs[i] for i in order]})
    per_q = max(1, math.ceil(len(pairs) / max(1, len(groups))))
    q_batch = max(1, scoring_cfg.batch_size // per_q)
    kwargs = {"model_dir": teacher_dir, "max_length": teacher_cfg.max_length,
              "answer_max_length": teacher_cfg.answer_max_length, "attention": teacher_cfg.attention.model_dump(),
              "threads": actor_threads(ray_cfg.actor_cpus), "batch_size": scoring_cfg.batch_size,
              "trust_remote_code": teacher_cfg.trust_remote_code}
    frames = [pd.DataFrame({"qid": b["qid"].astype(str), "docid": b["docid"].astype(str),
                            "teacher_score": np.asarray(b["teacher_score"], np.float32)})
              for b in map_actor_pool(blocks_of(table, max(1, min(scoring_cfg.actors * 4, len(groups)))), ReaderActor,
                                      kwargs, q_batch, scoring_cfg.actors, ray_cfg, stats, started=t0, keys=("qid",))]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["qid", "docid", "teacher_score"])
    check_rows("score", list(zip(pairs["qid"], pairs["docid"])), list(zip(out["qid"], out["docid"])))
    return pairs.merge(out, on=["qid", "docid"], how="left", validate="one_to_one")
