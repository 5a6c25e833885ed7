"""Moved to ``tests/builders.py`` (the tests import it as ``builders``): test data and tiny models are not
part of the runtime package. This re-export only keeps ``serve/testing.py`` and ``benchmarks/cuda_check.py``
working from a checkout until they import the builders from tests/; delete it then."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

from builders import (  # noqa: E402
    FILLER,
    SPECIAL,
    make_beir,
    make_bow_encoder,
    make_tiny_bert,
    make_tiny_t5,
    word_tokenizer,
)

__all__ = ["FILLER", "SPECIAL", "make_beir", "make_bow_encoder", "make_tiny_bert", "make_tiny_t5", "word_tokenizer"]
