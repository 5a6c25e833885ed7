"""Checkpoints load without running code from them.

Contract: weights load through safetensors or ``torch.load(weights_only=True)``; no file under a run
directory is unpickled with a pickle that may import arbitrary callables. ``weights_only=True`` admits
tensors, plain containers and numbers, plus the globals named in ``torch.serialization.safe_globals``.

DeepSpeed (0.19) reads its checkpoint files with ``torch.load(weights_only=False)`` (its
``TorchCheckpointEngine.load``), so ``engine.load_checkpoint`` would run whatever a tampered
``*.pt`` file asks for. Inside :func:`deepspeed_weights_only` every ``torch.load`` is forced to
``weights_only=True`` with exactly the DeepSpeed types its ZeRO 0-2 checkpoints hold allowed
(:func:`deepspeed_safe_globals`, found by saving real checkpoints); any other global is refused with
:class:`UnsafeCheckpointError`, before anything is executed.
"""

from __future__ import annotations

import pickle
import re
import threading
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import Any, Iterable, Iterator

# (module, name) of every non-torch global a DeepSpeed ZeRO 0/1/2 checkpoint (fp32 or bf16) pickles.
DEEPSPEED_GLOBALS = (
    ("deepspeed.runtime.fp16.loss_scaler", "LossScaler"),  # optimizer_state_dict.loss_scaler
    ("deepspeed.runtime.zero.config", "ZeroStageEnum"),  # optimizer_state_dict.zero_stage
    ("deepspeed.utils.tensor_fragment", "fragment_address"),  # optimizer_state_dict.param_slice_mappings
)

_patch_lock = threading.RLock()


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file that holds more than tensors, containers and allowed types: refused unread."""


def deepspeed_safe_globals() -> list:
    """The classes of :data:`DEEPSPEED_GLOBALS` (imports DeepSpeed)."""
    return [getattr(import_module(module), name) for module, name in DEEPSPEED_GLOBALS]


def _reason(err: Exception) -> str:
    """What torch's weights-only error says was refused (without its advice to allow it)."""
    text = str(err)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return f"refused global {found.group(1)}"
    for ln in text.splitlines():
        if "WeightsUnpickler error" in ln:
            return ln.strip().split(". Please")[0]
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def load_weights_only(f, map_location=None, extra_globals: Iterable = (), _load=None, **kwargs) -> Any:
    """``torch.load(f, weights_only=True)`` with ``extra_globals`` allowed; a refused pickle raises
    :class:`UnsafeCheckpointError` naming the file and the refused global."""
    import torch

    load = _load or torch.load
    try:
        with torch.serialization.safe_globals(list(extra_globals)):
            return load(f, map_location=map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError as err:
        name = str(f) if isinstance(f, (str, Path)) else type(f).__name__
        raise UnsafeCheckpointError(
            f"{name}: refused to load: it holds a pickled object outside tensors, containers and the "
            f"allowed checkpoint types ({_reason(err)}). Checkpoints never load with weights_only=False; "
            "this file was tampered with or written by other code.") from err


@contextmanager
def deepspeed_weights_only(extra_globals: Iterable = ()) -> Iterator[None]:
    """While active, ``torch.load`` (as DeepSpeed calls it) always runs with ``weights_only=True``,
    allowing :func:`deepspeed_safe_globals` (and ``extra_globals``). Wrap ``engine.load_checkpoint``::

        with deepspeed_weights_only():
            engine.load_checkpoint(ckpt_dir, tag="ckpt")
    """
    import torch

    allowed = [*deepspeed_safe_globals(), *extra_globals]
    with _patch_lock:
        real_load = torch.load

        def guarded_load(f, map_location=None, pickle_module=None, *, weights_only=None, **kwargs):
            if pickle_module is not None:
                raise UnsafeCheckpointError(f"{f}: refused to load with a custom pickle_module")
            return load_weights_only(f, map_location, allowed, _load=real_load, **kwargs)

        torch.load = guarded_load
        try:
            yield
        finally:
            torch.load = real_load
