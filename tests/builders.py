"""Builders for tests and benchmarks: tiny random models from a config and generated BEIR data.

The generated corpus has a learnable signal: every document carries two words unique to it plus words
of its topic, and each query names one of its document's unique words, a synonym-free paraphrase of
nothing else, and a topic word shared with the topic's other documents (hard negatives).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TEST_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # what every Ray worker of a test sees


def start_local_ray(object_store_mb: int = 300, **kwargs) -> None:
    """A test's own local Ray cluster on the 2 cores CI has: no dashboard, a small object store, and TEST_ENV
    in every worker (``kwargs`` go to ray.init: log_to_driver, _system_config, ...)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=object_store_mb * 1024 * 1024,
             runtime_env={"env_vars": dict(TEST_ENV)}, **kwargs)


SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FILLER = ["the", "a", "of", "and", "in", "on", "with", "for", "about", "study", "report", "note"]


def _pseudo_words(rng: np.random.Generator, n: int) -> list[str]:
    cons, vow = "bcdfgklmnprstvz", "aeiou"
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(list(cons)) + rng.choice(list(vow)) for _ in range(3)))
    return sorted(words)


def make_beir(directory: str | Path, topics: int = 12, docs_per_topic: int = 10, train_queries: int = 60,
              test_queries: int = 30, seed: int = 0) -> dict:
    """Write corpus.jsonl, queries.jsonl, qrels/{train,test}.tsv; returns counts and the vocabulary."""
    rng = np.random.default_rng(seed)
    n_docs = topics * docs_per_topic
    words = _pseudo_words(rng, topics * 4 + n_docs * 2)
    topic_words = [words[4 * t:4 * t + 4] for t in range(topics)]
    unique = words[topics * 4:]
    d = Path(directory)
    (d / "qrels").mkdir(parents=True, exist_ok=True)
    docs = []
    for i in range(n_docs):
        t = i // docs_per_topic
        body = list(topic_words[t]) + [unique[2 * i], unique[2 * i + 1]] + list(rng.choice(FILLER, 6))
        rng.shuffle(body)
        docs.append({"_id": f"d{i}", "title": f"{topic_words[t][0]} {unique[2 * i]}", "text": " ".join(body)})
    with open(d / "corpus.jsonl", "w") as f:
        for doc in docs:
            f.write(json.dumps(doc) + "\n")
    n_q = train_queries + test_queries
    targets = rng.choice(n_docs, size=n_q, replace=n_q > n_docs)
    with open(d / "queries.jsonl", "w") as f:
        for j, i in enumerate(targets):
            t = i // docs_per_topic
            q = [unique[2 * i + int(rng.integers(2))], str(rng.choice(topic_words[t])), str(rng.choice(FILLER))]
            rng.shuffle(q)
            f.write(json.dumps({"_id": f"q{j}", "text": " ".join(q)}) + "\n")
    for split, rows in (("train", range(train_queries)), ("test", range(train_queries, n_q))):
        with open(d / "qrels" / f"{split}.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for j in rows:
                f.write(f"q{j}\td{targets[j]}\t1\n")
    vocab = sorted(set(words) | set(FILLER))
    return {"docs": n_docs, "queries": n_q, "train": train_queries, "test": test_queries, "vocab": vocab}


def word_tokenizer(tokens: list[str]):
    """A BERT-style WordPiece tokenizer over a whole-word vocabulary ([CLS] q [SEP] d [SEP] for pairs)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_input_names=[
                                       "input_ids", "token_type_ids", "attention_mask"])


def make_tiny_bert(directory: str | Path, vocab: list[str], hidden: int = 32, layers: int = 2, heads: int = 2,
                   cross_encoder: bool = False, seed: int = 0, initializer_range: float = 0.02) -> Path:
    """A random BERT (or BERT cross-encoder) with a whole-word vocabulary, saved as safetensors.
    ``initializer_range``: the weights' init std (BERT's 0.02 gives a random cross-encoder nearly the same
    logit for every pair; ~0.1 spreads them)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tokens = SPECIAL + [w for w in dict.fromkeys(vocab) if w not in SPECIAL] + [str(i) for i in range(10)] + list(".,")
    tok = word_tokenizer(tokens)
    cfg = BertConfig(vocab_size=len(tokens), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=hidden * 2, max_position_embeddings=128, num_labels=1,
                     initializer_range=initializer_range)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg) if cross_encoder else BertModel(cfg, add_pooling_layer=False)
    model.save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    return d


def make_bow_encoder(directory: str | Path, vocab: list[str], hidden: int = 256, seed: int = 0) -> Path:
    """A 1-layer BERT whose attention and feed-forward outputs are zeroed, so mean pooling gives a
    normalised bag of random (nearly orthogonal) word vectors: cosine ~ word overlap. A teacher with
    a real signal on :func:`make_beir` data, built from a config, no download."""
    import torch

    d = make_tiny_bert(directory, vocab, hidden=hidden, layers=1, heads=2, seed=seed)
    from transformers import BertModel

    model = BertModel.from_pretrained(d, add_pooling_layer=False)
    with torch.no_grad():
        model.embeddings.position_embeddings.weight.zero_()
        model.embeddings.token_type_embeddings.weight.zero_()
        for layer in model.encoder.layer:
            for lin in (layer.attention.output.dense, layer.output.dense):
                lin.weight.zero_()
                lin.bias.zero_()
    model.save_pretrained(d, safe_serialization=True)
    return d


def make_tiny_t5(directory: str | Path, vocab: list[str], d_model: int = 32, layers: int = 2, heads: int = 4,
                 seed: int = 0) -> Path:
    """A random T5 (a FiD reader) with a whole-word vocabulary: <pad>=0 (also the decoder start), </s>=1,
    <unk>=2; every encoded text ends with </s>."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    special = ["<pad>", "</s>", "<unk>"]
    words = ["question", "context", ":", "."] + [str(i) for i in range(10)] + list(dict.fromkeys(vocab))
    tokens = special + [w for w in dict.fromkeys(words) if w not in special]
    ids = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.WordLevel(ids, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    cfg = T5Config(vocab_size=len(tokens), d_model=d_model, d_kv=d_model // heads, d_ff=d_model * 2,
                   num_layers=layers, num_decoder_layers=layers, num_heads=heads, dropout_rate=0.0,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(seed)
    T5ForConditionalGeneration(cfg).save_pretrained(d, safe_serialization=True)
    tok.save_pretrained(d)
    return d
