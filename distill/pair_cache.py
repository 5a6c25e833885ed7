"""Teacher scores of (query, document) pairs, kept so that no pair is scored twice by the same teacher.

Evaluation scores pairs with the teacher (reranking the zero-shot top k; an ensemble also ranks the union of
BM25's and the zero-shot top k, which holds those same pairs again); a re-run of the stage, a round, or a
changed evaluation setting asks for the same pairs once more. At a few hundred pairs per minute on a CPU,
that is most of the stage's time. :class:`PairScoreCache` keeps them in one parquet file per *key* under
``runs/<name>/cache/``: ``qid``, ``docid`` and the score columns.

The key (:func:`pair_key`) digests everything a pair's score depends on: the teacher stage's digest (its
config section, the data section and the input files it read), the resolved scoring precision, and the
checksums of the corpus and queries the texts come from. A changed teacher, precision or text therefore never
reads another's scores. Only scores of one pair at a time belong here; a reader's are not (it reads a query's
passages together, so a pair's score depends on the others).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from distill.atomic import write_atomic

KEYS = ["qid", "docid"]


def pair_key(rd) -> str:
    """The digest a pair's teacher score depends on (see the module docstring)."""
    from distill.manifest import input_files, stage_digest
    from distill.precision import for_stage

    cfg = rd.config
    recorded = rd.manifest.get("inputs") or {}
    files = input_files(cfg)
    texts = {role: [recorded.get(str(p)) for p in files.get(role, []) if str(p) in recorded]
             for role in ("corpus", "queries")}
    payload = {"teacher": stage_digest(cfg, "teacher", rd.input_checksums("teacher")),
               "precision": for_stage(cfg, "score"), "texts": texts}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class PairScoreCache:
    """Score columns per (qid, docid), read from and written to ``directory/teacher-pairs-<key>.parquet``."""

    def __init__(self, directory: str | Path, key: str):
        self.path = Path(directory) / f"teacher-pairs-{key}.parquet"
        self.frame = pd.read_parquet(self.path) if self.path.exists() else None
        self.hits = 0
        self.misses = 0

    def scores(self, pairs: pd.DataFrame, columns: list[str],
               score: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
        """``pairs`` (qid, docid; in their order) with ``columns``: the cached rows as they are, the others
        from ``score(missing pairs)`` (a frame with qid, docid and ``columns``), which are then cached.
        Duplicate pairs in ``pairs`` are scored once."""
        pairs = pairs[KEYS].reset_index(drop=True)
        cached = self._cached(columns)
        out = pairs.merge(cached, on=KEYS, how="left") if cached is not None else pairs.assign(
            **{c: float("nan") for c in columns})
        missing = out[columns].isna().any(axis=1).to_numpy()
        self.hits += int((~missing).sum())
        self.misses += int(missing.sum())
        if missing.any():
            todo = pairs[missing].drop_duplicates(KEYS).reset_index(drop=True)
            new = score(todo)[KEYS + columns]
            if len(new) != len(todo):
                raise RuntimeError(f"the teacher scored {len(new)} of {len(todo)} pairs")
            self._add(new)
            fresh = pairs[missing].merge(new, on=KEYS, how="left")
            out.loc[missing, columns] = fresh[columns].to_numpy()
        return out

    def _cached(self, columns: list[str]) -> pd.DataFrame | None:
        if self.frame is None or not set(columns) <= set(self.frame.columns):
            return None
        return self.frame[KEYS + columns]

    def _add(self, new: pd.DataFrame) -> None:
        """Append ``new`` to the file (atomically: a crash leaves the old file or the new one)."""
        frame = new if self._cached(list(new.columns.drop(KEYS))) is None else pd.concat([self.frame, new])
        self.frame = frame.drop_duplicates(KEYS, keep="last").reset_index(drop=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, lambda tmp: self.frame.to_parquet(tmp, index=False))
