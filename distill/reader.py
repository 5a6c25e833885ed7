"""The Fusion-in-Decoder (FiD) reader teacher (``teacher.kind: reader``; Izacard & Grave, arXiv 2012.04584).

A FiD reader is a seq2seq model (T5, BART, ...) that encodes each ``question: q context: p_i`` input
separately, concatenates the encoder states of all k passages, and decodes an answer while its
cross-attention reads all of them at once. An encoder-only checkpoint (BERT, MiniLM) is warm-started as a
BERT2BERT seq2seq model (:func:`warm_start_seq2seq`).

Contract: :class:`FiDReader` loads a reader (attention implementation eager, so its cross-attention is
returned), gives the answer's LM loss for fine-tuning (``tokenize``, ``tokenize_answers``, ``forward``:
stage ``teacher``), one float32 score per passage from its cross-attention on its own greedy answer
(``passage_scores``; the maths and its options: distill.attention), and saves as an ordinary seq2seq
checkpoint plus ``distill_reader.json``. :func:`score_grouped` scores (query, passage) pairs reading each
query's pairs together (evaluation, serving). No Ray here: the score stage's actor pool is
distill.reader_scoring; the QA pairs it is fine-tuned on are read by distill.answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill.attention import aggregate_attention, aggregate_kwargs, answer_positions, ensure_eager
from distill.models import count_parameters, resolve_model

READER_META = "distill_reader.json"
INPUT_FORMAT = "question: {question} context: {passage}"


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
        kw = aggregate_kwargs(attention or {})
        was_training = self.training
        self.eval()
        ensure_eager(self.model)
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
