"""Students much smaller than the teacher (FEVER score distillation: "12x faster, 20x smaller").

Two kinds, both behind :class:`distill.models.DualEncoder`, so training, encoding, export and serving
are the same code as for a full transformer:

- a **truncated transformer**: the base model with only ``n`` of its ``L`` layers
  (:func:`truncate_layers`). ``init: first`` keeps layers 1..n; ``init: every_other`` keeps n layers
  spaced evenly through the depth, the last one always kept: layer ``floor(i L / n)`` for i = 1..n (every
  other layer when n = L/2, as DistilBERT initialises its student). The width is the base's, so the
  kept layers are copied as they are. The result is an ordinary Hugging Face model (``num_hidden_layers``
  = n): its export loads with ``AutoModel`` and ``SentenceTransformer``.
- a **CNN or BiLSTM over token embeddings** (:class:`SmallEncoder`). Same tokenizer as the base; the
  token embeddings start from the base's input embedding matrix E [V, D], or from its rank-k projection
  E V_k (V_k: the top-k right singular vectors of E, signs fixed) when ``embed_dim`` k < D, which is where
  most of the size goes::

      x_0 = E[ids] * m                                       (m: the attention mask, 0 on padding)
      cnn:  x_l = LayerNorm(x_{l-1} + GELU(conv_k(x_{l-1}))) * m    (layer 1: no residual, D -> hidden)
      lstm: x_l = BiLSTM_l(x_{l-1}) on the packed real tokens       (hidden/2 per direction)
      last_hidden_state = W x_N + b                          (width output_dim)

  Padding never reaches a real token: the CNN zeroes padded positions before every convolution (just as
  its own zero padding does past the sequence end), the LSTM reads packed sequences; so an embedding does
  not depend on how much its batch was padded. The other layers are initialised from a fixed seed, so
  every worker (and the zero-shot baseline) starts from the same student. Saved as ``small_encoder.json``
  + ``model.safetensors`` (no pickle) beside the tokenizer. It is **not** a Hugging Face or
  sentence-transformers model: load it with ``DualEncoder.load`` (serving does).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

SMALL_CONFIG = "small_encoder.json"
SMALL_WEIGHTS = "model.safetensors"
SMALL_ARCHS = ("cnn", "lstm")
DEFAULTS = {"num_layers": 2, "hidden_size": 256, "kernel_size": 3}


# ---- truncated transformer ------------------------------------------------------------------------------
def kept_layers(total: int, n: int, init: str = "first") -> list[int]:
    """0-based indices of the base layers a truncated student keeps (see the module docstring)."""
    if not 1 <= n <= total:
        raise ValueError(f"cannot keep {n} layers of a {total}-layer model (1..{total})")
    if init == "first":
        return list(range(n))
    if init == "every_other":
        return [(i * total) // n - 1 for i in range(1, n + 1)]
    raise ValueError(f"layer init must be 'first' or 'every_other', got {init!r}")


def _layer_list(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """(parent module, attribute name, the ModuleList of the model's ``num_hidden_layers`` blocks)."""
    total = model.config.num_hidden_layers
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == total]
    if len(found) != 1:
        raise ValueError(f"cannot truncate a {model.config.model_type!r} model: found {len(found)} candidate "
                         f"layer lists of length {total}, need exactly one")
    name, layers = found[0]
    parent_name, _, attr = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr, layers


def truncate_layers(model: nn.Module, n: int, init: str = "first") -> list[int]:
    """Keep ``n`` of a Hugging Face model's layers in place (``config.num_hidden_layers`` = n); returns
    the kept 0-based base-layer indices. A no-op when the model already has n layers and init is first."""
    total = model.config.num_hidden_layers
    keep = kept_layers(total, n, init)
    if keep == list(range(total)):
        return keep
    parent, attr, layers = _layer_list(model)
    new = nn.ModuleList([layers[i] for i in keep])
    for j, layer in enumerate(new):  # caches and attention code index layers by position
        for m in layer.modules():
            if isinstance(getattr(m, "layer_idx", None), int):
                m.layer_idx = j
    setattr(parent, attr, new)
    model.config.num_hidden_layers = n
    types = getattr(model.config, "layer_types", None)
    if isinstance(types, list) and len(types) == total:
        model.config.layer_types = [types[i] for i in keep]
    return keep


# ---- CNN / BiLSTM over token embeddings ------------------------------------------------------------------
@dataclass
class SmallEncoderConfig:
    arch: str
    vocab_size: int
    embed_dim: int
    hidden_size: int
    num_layers: int
    output_dim: int
    kernel_size: int = 3
    seed: int = 0

    def __post_init__(self):
        if self.arch not in SMALL_ARCHS:
            raise ValueError(f"small encoder arch must be one of {SMALL_ARCHS}, got {self.arch!r}")
        for k in ("vocab_size", "embed_dim", "hidden_size", "num_layers", "output_dim", "kernel_size"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"small encoder {k} must be >= 1, got {getattr(self, k)}")
        if self.arch == "cnn" and self.kernel_size % 2 == 0:
            raise ValueError(f"cnn kernel_size must be odd (keeps the sequence length), got {self.kernel_size}")
        if self.arch == "lstm" and self.hidden_size % 2:
            raise ValueError(f"lstm hidden_size must be even (half per direction), got {self.hidden_size}")

    @property
    def num_hidden_layers(self) -> int:  # the Hugging Face name DualEncoder.num_layers reads
        return self.num_layers


@dataclass
class SmallEncoderOutput:
    """The part of a Hugging Face model output DualEncoder uses."""

    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None


def project_embeddings(weight: torch.Tensor, k: int) -> torch.Tensor:
    """E V_k: the rows of E [V, D] in the span of its top-k right singular vectors (k <= D), signs fixed
    so the largest entry of each vector is positive; E itself when k == D."""
    weight = weight.detach().float()
    if k > weight.shape[1]:
        raise ValueError(f"embed_dim {k} exceeds the base model's embedding width {weight.shape[1]}")
    if k == weight.shape[1]:
        return weight.clone()
    _, _, vh = torch.linalg.svd(weight, full_matrices=False)
    v = vh[:k].T
    sign = torch.sign(v.gather(0, v.abs().argmax(0, keepdim=True)))
    return weight @ (v * sign)


class SmallEncoder(nn.Module):
    """CNN or BiLSTM over token embeddings with the forward contract of a Hugging Face encoder:
    ``forward(input_ids, attention_mask, output_hidden_states=False)`` -> ``last_hidden_state`` [B, T,
    output_dim] and, when asked, ``hidden_states`` = (x_0, x_1, ..., x_N)."""

    def __init__(self, config: SmallEncoderConfig, embeddings: torch.Tensor | None = None):
        super().__init__()
        self.config = c = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.embeddings = nn.Embedding(c.vocab_size, c.embed_dim)
            if c.arch == "cnn":
                self.convs = nn.ModuleList(
                    nn.Conv1d(c.embed_dim if i == 0 else c.hidden_size, c.hidden_size, c.kernel_size,
                              padding=c.kernel_size // 2) for i in range(c.num_layers))
                self.norms = nn.ModuleList(nn.LayerNorm(c.hidden_size) for _ in range(c.num_layers))
            else:
                self.lstms = nn.ModuleList(
                    nn.LSTM(c.embed_dim if i == 0 else c.hidden_size, c.hidden_size // 2, batch_first=True,
                            bidirectional=True) for i in range(c.num_layers))
            self.output = nn.Linear(c.hidden_size, c.output_dim)
        if embeddings is not None:
            if tuple(embeddings.shape) != (c.vocab_size, c.embed_dim):
                raise ValueError(f"embeddings of shape {tuple(embeddings.shape)}, expected "
                                 f"{(c.vocab_size, c.embed_dim)}")
            with torch.no_grad():
                self.embeddings.weight.copy_(embeddings)

    @classmethod
    def from_base(cls, base_embeddings: torch.Tensor, arch: str, num_layers: int | None = None,
                  hidden_size: int | None = None, embed_dim: int | None = None, output_dim: int | None = None,
                  kernel_size: int | None = None, seed: int = 0) -> "SmallEncoder":
        """A new student whose token embeddings come from a base model's input embedding matrix [V, D];
        unset sizes take :data:`DEFAULTS` (embed_dim and output_dim: D)."""
        vocab, width = base_embeddings.shape
        k = embed_dim or width
        cfg = SmallEncoderConfig(arch, vocab, k, hidden_size or DEFAULTS["hidden_size"],
                                 num_layers or DEFAULTS["num_layers"], output_dim or width,
                                 kernel_size or DEFAULTS["kernel_size"], seed)
        return cls(cfg, project_embeddings(base_embeddings, k))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, **_unused) -> SmallEncoderOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        m = attention_mask.unsqueeze(-1).to(self.embeddings.weight.dtype)
        x = self.embeddings(input_ids) * m
        hidden = [x]
        if self.config.arch == "cnn":
            for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
                y = nn.functional.gelu(conv(x.transpose(1, 2)).transpose(1, 2))
                x = norm(y if i == 0 else x + y) * m
                hidden.append(x)
        else:
            lengths = attention_mask.sum(1)
            positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
            if not torch.equal(attention_mask.bool(), positions < lengths.unsqueeze(1)):
                raise ValueError("the lstm student needs right-padded input (real tokens first)")
            lengths = lengths.clamp(min=1).cpu()
            for lstm in self.lstms:
                packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
                x, _ = nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True,
                                                        total_length=input_ids.shape[1])
                hidden.append(x)
        return SmallEncoderOutput(self.output(x), tuple(hidden) if output_hidden_states else None)

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(path / SMALL_WEIGHTS))
        (path / SMALL_CONFIG).write_text(json.dumps(asdict(self.config), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "SmallEncoder":
        from safetensors.torch import load_file

        path = Path(path)
        try:
            cfg = SmallEncoderConfig(**json.loads((path / SMALL_CONFIG).read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise ValueError(f"{path / SMALL_CONFIG} is not a usable small-encoder config: {err}") from None
        model = cls(cfg)
        model.load_state_dict(load_file(str(path / SMALL_WEIGHTS)))
        return model


def is_small_encoder_dir(path: str | Path) -> bool:
    return (Path(path) / SMALL_CONFIG).is_file()
