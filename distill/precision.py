"""Numeric precision as a setting: ``auto``, ``fp32`` or ``bf16`` for scoring, encoding, training and serving.

``auto`` picks bf16 only where the hardware computes it natively, and faster, and fp32 elsewhere:

- CPU: the ``avx512_bf16`` or ``amx_bf16`` flag (x86) or ``bf16`` (aarch64) in ``/proc/cpuinfo``, *and* bf16
  measured faster than fp32 on this machine (:func:`cpu_bf16_speedup`: a transformer-sized matmul timed both
  ways, once per CPU model and torch version, the answer kept in ``~/.cache/distill/`` so every process and every
  later run decides the same). A flag alone is not enough: a 2-core Intel Xeon VM with ``avx512_bf16`` (no AMX)
  ran MiniLM's training step 1.3x and its forward 1.55x *slower* in bf16, where a 2-core AMD EPYC ran them about
  2x faster. torch's own ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is not used: it is true on any AVX-512
  CPU, where oneDNN emulates bf16. Where the flags cannot be read (not Linux), ``auto`` is fp32.
- GPU (``cuda``): ``torch.cuda.is_bf16_supported(including_emulation=False)`` (Ampere and later; a V100 or T4
  emulates bf16, so ``auto`` is fp32 there).

``fp32`` and ``bf16`` are taken as given; bf16 without native support still works (emulated, slowly) and
warns. bf16 here means autocast (:func:`autocast`): weights stay fp32, matmuls run in bf16, and the outputs
the models return are float32.
"""

from __future__ import annotations

import contextlib
import functools
import os
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


BF16_MIN_SPEEDUP = 1.1  # bf16 must beat fp32 by this factor for ``auto`` to pick it on a CPU


def _time_matmul(dtype, reps: int = 5, inner: int = 8) -> float:
    """Best seconds of ``inner`` (512 x 384) @ (384 x 1536) matmuls in ``dtype``: MiniLM's feed-forward shape."""
    import torch

    from distill.timing import best_seconds

    x, w = torch.randn(512, 384).to(dtype), torch.randn(1536, 384).to(dtype)

    def run():
        for _ in range(inner):
            torch.nn.functional.linear(x, w)

    return best_seconds(run, repeats=reps, warmup=2)


def _probe_path() -> Path:
    import hashlib

    import torch

    key = f"{cpu_model()}|{' '.join(sorted(cpu_flags() or ()))}|{torch.__version__}"
    root = Path(os.environ.get("DISTILL_CACHE") or Path.home() / ".cache" / "distill")
    return root / f"bf16-speedup-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


@functools.lru_cache(maxsize=None)
def cpu_bf16_speedup() -> float:
    """fp32 time / bf16 time of a transformer-sized matmul on this CPU, measured once per CPU model, flags and
    torch version and kept in ``$DISTILL_CACHE`` (default ``~/.cache/distill``); a stored answer is read back,
    so the choice (and the stage digests that record it) stays the same across processes and runs."""
    import json

    path = _probe_path()
    try:
        return float(json.loads(path.read_text())["speedup"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    import torch

    speedup = _time_matmul(torch.float32) / _time_matmul(torch.bfloat16)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"speedup": round(speedup, 3), "cpu_model": cpu_model(),
                                   "torch": torch.__version__}))
        os.replace(tmp, path)
        return float(json.loads(path.read_text())["speedup"])  # a concurrent writer's answer, if it won
    except OSError:
        return speedup


def cpu_bf16_pays(flags: Iterable[str] | None = None) -> bool:
    """Whether ``auto`` takes bf16 on the CPU: native bf16 instructions (``flags``, default this machine's) and,
    for this machine, bf16 measured at least :data:`BF16_MIN_SPEEDUP` x faster (:func:`cpu_bf16_speedup`).
    Given ``flags`` (another machine's, for tests) only the flags are read."""
    if not cpu_has_native_bf16(flags):
        return False
    return flags is not None or cpu_bf16_speedup() >= BF16_MIN_SPEEDUP


def device_type(device) -> str:
    """``cuda`` or ``cpu`` (or another torch device type) from a device string or ``torch.device``."""
    return str(getattr(device, "type", device) or "cpu").split(":")[0]


def has_native_bf16(device="cpu", flags: Iterable[str] | None = None) -> bool:
    """Whether ``device`` computes bf16 natively (``flags``: the CPU's flags, for tests)."""
    if device_type(device) == "cuda":
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False))
    return cpu_has_native_bf16(flags)


def bf16_pays(device="cpu", flags: Iterable[str] | None = None) -> bool:
    """Whether ``auto`` takes bf16 on ``device``: native bf16 on a GPU; on a CPU :func:`cpu_bf16_pays`."""
    if device_type(device) == "cuda":
        return has_native_bf16(device)
    return cpu_bf16_pays(flags)


def resolve(precision: str | None, device="cpu", flags: Iterable[str] | None = None,
            warn: bool = True) -> Literal["fp32", "bf16"]:
    """``auto`` -> ``bf16`` where :func:`bf16_pays` (native bf16, measured faster on a CPU), else ``fp32``;
    ``fp32``/``bf16`` as given (None: fp32). Warns (``warn``) when bf16 is asked of a device without native bf16."""
    if precision is None:
        return "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return "fp32"
    native = bf16_pays(device, flags)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if warn and not native:
        warnings.warn(f"precision bf16 on {device_type(device)} without native bf16, or where it measured no faster "
                      f"than fp32 ({describe_device(device)}): it runs, and is likely slower than fp32",
                      RuntimeWarning, stacklevel=2)
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
           "bf16_speedup": cpu_bf16_speedup() if device_type(device) != "cuda" and cpu_has_native_bf16() else None,
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
