"""Export a transformer student to ONNX: ``python -m distill.onnx_export STUDENT_DIR [OUT]``
(also ``ray-distill export-onnx STUDENT_DIR [OUT]``).

The graph takes ``input_ids`` and ``attention_mask`` (int64, [batch, sequence], both axes dynamic) and
outputs ``sentence_embedding`` (float32, [batch, dim]): the student's whole ``DualEncoder.forward`` -
backbone, pooling (mean over the mask, or [CLS]), the optional linear projection and L2 normalisation (when
the student normalises) - so it gives the vectors ``DualEncoder.encode`` gives. It is written to ``OUT``
(default ``STUDENT_DIR/onnx/model.onnx``) with the student's tokenizer files beside it and
``onnx_model.json`` describing the inputs, output and the tokenizer settings (max_length, padding side).

It uses ``torch.onnx.export``'s TorchScript exporter (``dynamo=False``, opset 17), which needs the
``onnx`` package; ``onnxruntime`` runs the exported graph. Both are optional: ``pip install
'ray-distill[onnx]'``. A CNN/LSTM student (:mod:`distill.small_encoders`) is not exported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

OPSET = 17
META = "onnx_model.json"
INPUTS = ["input_ids", "attention_mask"]
OUTPUT = "sentence_embedding"


def require(package: str):
    """Import an optional package, or raise ImportError naming it and the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise ImportError(f"ONNX export needs the {package!r} package: pip install 'ray-distill[onnx]' "
                          f"(or pip install {package})") from err


class _Embedder(nn.Module):
    """input_ids, attention_mask -> the student's final embedding (DualEncoder.forward, no extras)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids, attention_mask)


def export_onnx(student_dir: str | Path, out: str | Path | None = None, opset: int = OPSET) -> Path:
    """Export the transformer student saved at ``student_dir`` to ``out`` (default
    ``student_dir/onnx/model.onnx``); returns the model path. Raises ValueError for a CNN/LSTM student
    and ImportError when ``onnx`` is missing."""
    from distill.models import DualEncoder

    student_dir = Path(student_dir)
    out = Path(out) if out is not None else student_dir / "onnx" / "model.onnx"
    if out.suffix != ".onnx":  # a directory
        out = out / "model.onnx"
    require("onnx")
    encoder = DualEncoder.load(student_dir)
    if encoder.is_small:
        raise ValueError(f"{student_dir} holds a {encoder.arch} student: ONNX export supports transformer "
                         "students only")
    encoder.eval()
    backbone = encoder.backbone
    if hasattr(backbone, "set_attn_implementation"):  # eager attention traces to plain ops on every version
        try:
            backbone.set_attn_implementation("eager")
        except Exception:  # noqa: BLE001 - keep the default implementation
            pass
    out.parent.mkdir(parents=True, exist_ok=True)
    sample = encoder.tokenizer(["an example sentence to trace", "short"], padding=True, return_tensors="pt")
    args = (sample["input_ids"], sample["attention_mask"])
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            OUTPUT: {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(_Embedder(encoder), args, str(out), input_names=INPUTS, output_names=[OUTPUT],
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    encoder.tokenizer.save_pretrained(out.parent)
    meta = {
        "model": out.name,
        "source": str(student_dir),
        "opset": opset,
        "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in INPUTS],
        "outputs": [{"name": OUTPUT, "dtype": "float32", "shape": ["batch", encoder.dim]}],
        "pooling": encoder.pooling,
        "projection": encoder.projection is not None,
        "normalize": encoder.normalize,
        "max_length": encoder.max_length,
        "padding_side": encoder.tokenizer.padding_side,
        "tokenizer": "the tokenizer files in this directory (AutoTokenizer.from_pretrained(dir)); truncate to "
                     "max_length",
    }
    (out.parent / META).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog or "python -m distill.onnx_export",
                                description="Export a transformer student to ONNX (input_ids, attention_mask -> "
                                            "sentence_embedding).")
    p.add_argument("student_dir", help="a student directory saved by DualEncoder.save (e.g. runs/demo/student)")
    p.add_argument("out", nargs="?", help="the .onnx file or a directory (default STUDENT_DIR/onnx/model.onnx)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    args = p.parse_args(argv)
    try:
        path = export_onnx(args.student_dir, args.out, args.opset)
    except (ValueError, ImportError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} (tokenizer and {META} beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
