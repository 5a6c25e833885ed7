"""Numeric precision as a setting: ``auto``, ``fp32`` or ``bf16`` for scoring, encoding, training and serving.

``auto`` picks bf16 only where the hardware computes it natively and fp32 elsewhere:

- CPU: the ``avx512_bf16`` or ``amx_bf16`` flag (x86) or ``bf16`` (aarch64) in ``/proc/cpuinfo``. torch's own
  ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is not used: it is true on any AVX-512 CPU, where oneDNN
  emulates bf16 (no faster than fp32). Where the flags cannot be read (not Linux), ``auto`` is fp32.
- GPU (``cuda``): ``torch.cuda.is_bf16_supported(including_emulation=False)`` (Ampere and later; a V100 or T4
  emulates bf16, so ``auto`` is fp32 there).

``fp32`` and ``bf16`` are taken as given; bf16 without native support still works (emulated, slowly) and
warns. bf16 here means autocast (:func:`autocast`): weights stay fp32, matmuls run in bf16, and the outputs
the models return are float32.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import warnings
from pathlib import Path
from typing import Iterable, Literal

PRECISIONS = ("auto", "fp32", "bf16")
Precision = Literal["auto", "fp32", "bf16"]
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
CPUINFO = "/proc/cpuinfo"


def _cpuinfo_field(names: tuple[str, ...], path: str = CPUINFO) -> str | None:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in names:
            return value.strip()
    return None


@functools.lru_cache(maxsize=None)
def cpu_flags(path: str = CPUINFO) -> frozenset[str] | None:
    """The CPU's feature flags (the first ``flags``/``Features`` line of ``/proc/cpuinfo``); None where
    they cannot be read."""
    line = _cpuinfo_field(("flags", "features"), path)
    return None if line is None else frozenset(line.split())


@functools.lru_cache(maxsize=None)
def cpu_model(path: str = CPUINFO) -> str:
    """The CPU's model name (``/proc/cpuinfo``, else what :mod:`platform` knows)."""
    return _cpuinfo_field(("model name", "cpu model", "hardware"), path) or platform.processor() or platform.machine()


def cpu_has_native_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether the CPU has bf16 instructions (``flags``: its feature flags; default: this machine's)."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags) and not NATIVE_BF16_FLAGS.isdisjoint(flags)


def device_type(device) -> str:
    """``cuda`` or ``cpu`` (or another torch device type) from a device string or ``torch.device``."""
    return str(getattr(device, "type", device) or "cpu").split(":")[0]


def has_native_bf16(device="cpu", flags: Iterable[str] | None = None) -> bool:
    """Whether ``device`` computes bf16 natively (``flags``: the CPU's flags, for tests)."""
    if device_type(device) == "cuda":
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    return cpu_has_native_bf16(flags)


def resolve(precision: str | None, device="cpu", flags: Iterable[str] | None = None,
            warn: bool = True) -> Literal["fp32", "bf16"]:
    """``auto`` -> ``bf16`` where ``device`` has native bf16, else ``fp32``; ``fp32``/``bf16`` as given
    (None: fp32). Warns (``warn``) when bf16 is asked of a device without native bf16."""
    if precision is None:
        return "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return "fp32"
    native = has_native_bf16(device, flags)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if warn and not native:
        warnings.warn(f"precision bf16 on {device_type(device)} without native bf16 ({describe_device(device)}): "
                      "it runs, emulated, and is likely slower than fp32", RuntimeWarning, stacklevel=2)
    return "bf16"


def describe_device(device="cpu") -> str:
    if device_type(device) == "cuda":
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
    return cpu_model()


def autocast(precision: str | None, device="cpu"):
    """A context manager: ``torch.autocast(device type, dtype=torch.bfloat16)`` for bf16, a no-op for fp32
    (and None); ``auto`` is resolved for ``device`` first."""
    p = resolve(precision, device, warn=False) if precision == "auto" else resolve(precision, warn=False)
    if p == "fp32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type(device), dtype=torch.bfloat16)


def cpu_capability() -> str:
    """torch's CPU capability (the kernels it dispatches to: ``AVX2``, ``AVX512``, ...)."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def describe(precision: str = "auto", device="cpu") -> dict:
    """For manifests and reports: the CPU model, torch's CPU capability, whether the device has native
    bf16, and the precision ``precision`` resolves to on ``device``."""
    import torch

    out = {"cpu_model": cpu_model(), "cpu_capability": cpu_capability(), "device": device_type(device),
           "native_bf16": has_native_bf16(device), "requested": precision,
           "precision": resolve(precision, device, warn=False), "torch": torch.__version__}
    if device_type(device) == "cuda":
        out["gpu"] = describe_device(device)
    return out


def for_stage(config, stage: str, warn: bool = False) -> Literal["fp32", "bf16"]:
    """The precision stage ``stage`` of a run config computes at, resolved on this machine:
    ``score`` (and the evaluate stage's teacher rerank, the same TeacherActor): ``scoring.precision``, but
    fp32 for a reader or attention-signal teacher (attention scores are not autocast); ``encode``:
    ``encoding.precision``; ``train``: ``training.precision`` (bf16 autocast of the forward, either backend);
    fp32 for the other stages. ``auto`` is resolved on the machine running the pipeline, for the device its
    actors use (``ray.actor_gpus`` / ``training.use_gpu``): on a cluster whose workers differ from it, set
    the precision explicitly."""
    gpu_actors = "cuda" if getattr(config.ray, "actor_gpus", 0) else "cpu"
    if stage == "score":
        if config.teacher.kind == "reader" or config.teacher.signal == "attention":
            return "fp32"
        return resolve(getattr(config.scoring, "precision", "fp32"), gpu_actors, warn=warn)
    if stage == "encode":
        return resolve(getattr(config.encoding, "precision", "fp32"), gpu_actors, warn=warn)
    if stage == "train":  # bf16: autocast forward, fp32 weights, gradients and optimizer state
        return resolve(config.training.precision, "cuda" if config.training.use_gpu else "cpu", warn=warn)
    return "fp32"
