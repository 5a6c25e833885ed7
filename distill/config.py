"""Run configuration: one YAML file, typed and validated, with ``key=value`` overrides.

Every section forbids unknown keys, so a typo such as ``training.lerning_rate`` fails with a message
naming it instead of being silently ignored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    dir: str = "data/sample"
    corpus: str = "corpus.jsonl"
    queries: str = "queries.jsonl"
    train_split: str = "train"
    test_split: str = "test"
    max_reject_share: float = Field(0.05, ge=0.0, le=1.0)
    max_train_queries: int | None = Field(None, ge=1)
    max_test_queries: int | None = Field(None, ge=1)


class EncoderConfig(_Section):
    """A dual encoder: Hugging Face backbone + pooling (+ L2 normalisation)."""

    model: str
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    max_length: int = Field(128, ge=8)
    trust_remote_code: bool = False


class TeacherConfig(_Section):
    kind: Literal["cross-encoder", "dual-encoder"] = "cross-encoder"
    model: str
    head: Literal["linear", "dual"] = Field(
        "linear", description="cross-encoder head: linear on [CLS], or dual pooling of query/document tokens")
    finetune: bool = True
    max_length: int = Field(256, ge=8)
    trust_remote_code: bool = False
    epochs: int = Field(1, ge=1)
    learning_rate: float = Field(3e-5, gt=0)
    head_learning_rate: float = Field(1e-3, gt=0, description="the freshly initialised scoring head's rate")
    batch_size: int = Field(16, ge=1)
    negatives_per_query: int = Field(7, ge=1)
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    seed: int = 0


class QueryGenConfig(_Section):
    """EmbedDistill query generation: extra training queries from corpus documents (see distill.querygen)."""

    enabled: bool = False
    model: str | None = Field(None, description="seq2seq generator (local dir or hub id); none = built-in spans")
    per_doc: int = Field(1, ge=1)
    max_docs: int | None = Field(None, ge=1)
    min_words: int = Field(4, ge=1)
    max_words: int = Field(10, ge=1)
    max_test_overlap: float = Field(0.6, gt=0, le=1, description="word-set Jaccard with a test query that filters")
    trust_remote_code: bool = False


class MiningConfig(_Section):
    sources: list[Literal["bm25", "student"]] = ["bm25", "student"]
    depth: int = Field(30, ge=1)
    querygen: QueryGenConfig = QueryGenConfig()


class ScoringConfig(_Section):
    batch_size: int = Field(32, ge=1)
    actors: int = Field(2, ge=1)
    store_embeddings: bool = Field(False, description="also store the teacher's query/document vectors "
                                   "(dual-encoder or dual-head cross-encoder) for embedding matching")
    store_layer_scores: bool = Field(False, description="also store the teacher's per-layer scores (LEAD)")
    min_softmax_entropy_share: float = Field(0.05, ge=0, le=1)


class LossWeights(_Section):
    kl: float = Field(1.0, ge=0)
    margin_mse: float = Field(0.0, ge=0)
    mse: float = Field(0.0, ge=0)
    infonce: float = Field(0.0, ge=0)
    embedding: float = Field(0.0, ge=0, description="EmbedDistill embedding matching (needs scoring.store_embeddings)")
    lead: float = Field(0.0, ge=0, description="LEAD layer-wise distribution alignment (needs scoring.store_layer_scores)")

    @model_validator(mode="after")
    def _some_weight(self) -> "LossWeights":
        if self.kl + self.margin_mse + self.mse + self.infonce + self.embedding + self.lead <= 0:
            raise ValueError("at least one loss weight must be positive")
        return self


class LeadConfig(_Section):
    layer_map: list[tuple[int, int]] | None = Field(
        None, description="[[student_layer, teacher_layer], ...], 1-based; default: evenly spaced")
    pairs_per_step: int = Field(2, ge=1, description="layer pairs drawn at random each step")
    temperature: float = Field(0.05, gt=0)


class TrainingConfig(_Section):
    backend: Literal["deepspeed", "ddp"] = "deepspeed"
    zero_stage: int = Field(2, ge=0, le=2, description="ZeRO 0-2; the student is small enough to replicate")
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(0.5, gt=0)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)
    learning_rate: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    queries_per_batch: int = Field(8, ge=1)
    group_size: int = Field(8, ge=2, description="candidates per query in a training group (1 positive + negatives)")
    teacher_temperature: float = Field(1.0, gt=0)
    student_temperature: float = Field(0.05, gt=0)
    losses: LossWeights = LossWeights()
    embedding_mode: Literal["l2", "cosine"] = "l2"
    lead: LeadConfig = LeadConfig()
    checkpoint_every: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    max_failures: int = Field(1, ge=0)
    seed: int = 0
    precision: Literal["fp32", "bf16"] = "fp32"


class EncodingConfig(_Section):
    batch_size: int = Field(64, ge=1)
    actors: int = Field(2, ge=1)


class IndexConfig(_Section):
    factory: str = "Flat"
    metric: Literal["ip", "l2"] = "ip"
    train_size: int | None = Field(None, ge=1)
    nprobe: int = Field(8, ge=1)
    ef_search: int = Field(64, ge=1)


class EvaluationConfig(_Section):
    rerank_depth: int = Field(100, ge=1)
    first_stage_depth: int = Field(100, ge=1)
    speed_sample: int = Field(64, ge=1)


class RayConfig(_Section):
    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)
    object_store_memory: int | None = Field(None, ge=78643200)
    actor_cpus: float = Field(0.5, gt=0)
    read_cpus: float = Field(0.25, gt=0)
    actor_gpus: float = Field(0.0, ge=0)


class RunConfig(_Section):
    name: str = "demo"
    runs_dir: str = "runs"
    seed: int = 13
    stages: list[Literal["teacher", "mine", "score", "train", "encode", "index", "evaluate"]] = [
        "teacher", "mine", "score", "train", "encode", "index", "evaluate"]
    data: DataConfig = DataConfig()
    teacher: TeacherConfig
    student: EncoderConfig
    mining: MiningConfig = MiningConfig()
    scoring: ScoringConfig = ScoringConfig()
    training: TrainingConfig = TrainingConfig()
    encoding: EncodingConfig = EncodingConfig()
    index: IndexConfig = IndexConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "RunConfig":
        if self.training.losses.embedding > 0:
            if not self.scoring.store_embeddings:
                raise ValueError("training.losses.embedding > 0 needs scoring.store_embeddings: true")
            if self.teacher.kind == "cross-encoder" and self.teacher.head != "dual":
                raise ValueError("embedding matching needs a dual-encoder teacher or teacher.head: dual")
        if self.training.losses.lead > 0:
            if not self.scoring.store_layer_scores:
                raise ValueError("training.losses.lead > 0 needs scoring.store_layer_scores: true")
            if self.teacher.kind == "cross-encoder" and self.teacher.head != "dual":
                raise ValueError("LEAD with a cross-encoder teacher needs teacher.head: dual")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    def digest(self, *sections: str) -> str:
        """SHA-256 (first 16 hex) of the named sections, or of the whole config when none are named."""
        dump = self.model_dump(mode="json")
        payload = {s: dump[s] for s in sections} if sections else dump
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _parse_value(raw: str) -> Any:
    """Parse an override value with YAML rules (``3`` -> int, ``[a, b]`` -> list, ``null`` -> None)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_override(tree: dict, assignment: str) -> None:
    """Apply one ``dotted.key=value`` to a nested dict in place."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} is not of the form key=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {assignment!r} has an empty key part")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override key {'.'.join(parts[:i + 1])!r} is not a section")
        node = child
    node[parts[-1]] = _parse_value(raw)


def _format_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown config key {loc!r}")
        else:
            lines.append(f"config key {loc!r}: {e['msg']} (got {e.get('input')!r})")
    return "; ".join(lines)


def build_config(tree: dict, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    tree = json.loads(json.dumps(tree))  # deep copy, plain types
    for o in overrides:
        apply_override(tree, o)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML run config, apply ``key=value`` overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return build_config(tree, overrides)
