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
    dev_queries: int | None = Field(
        None, ge=1, description="hold out this many train-split queries (drawn with the run seed) as split `dev`: "
        "no stage trains on them; set test_split: dev to choose settings on them instead of the test split")
    answers: str | None = Field(
        None, description="QA pairs for a reader teacher: JSONL of {_id: query id, answers: [str, ...]} in dir "
        "(queries.jsonl itself may carry them); rows without answers are counted, not rejected")
    format: Literal["beir", "parquet", "hf", "ir_datasets"] = Field(
        "beir", description="beir: JSONL + qrels TSV in dir; parquet: corpus.parquet, queries.parquet, "
        "qrels/<split>.parquet in dir (columns _id/title/text, _id/text, query-id/corpus-id/score); hf: data.hf; "
        "ir_datasets: data.ir_datasets (distill.sources; same row checks and counted rejects)")
    hf: str | None = Field(None, description="format hf: a DatasetDict saved with save_to_disk, or a hub id, "
                           "with splits corpus, queries and one per qrels split (needs the `datasets` package)")
    ir_datasets: str | None = Field(None, description="format ir_datasets: an ir_datasets id (beir/scifact); qrels "
                                    "of split s from <id>/<s> (needs the `ir_datasets` package)")


class EncoderConfig(_Section):
    """A dual encoder: Hugging Face backbone (optionally cut to its first layers) or a small CNN/BiLSTM
    over its token embeddings (distill.small_encoders), + pooling (+ L2 normalisation). The fields are
    ``DualEncoder``'s keyword arguments."""

    model: str
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    max_length: int = Field(128, ge=8)
    trust_remote_code: bool = False
    arch: Literal["transformer", "cnn", "lstm"] = Field(
        "transformer", description="transformer: `model` itself; cnn/lstm: a small encoder over its token embeddings")
    num_layers: int | None = Field(
        None, ge=1, description="transformer: keep this many of `model`'s layers; cnn/lstm: conv/LSTM layers (2)")
    init: Literal["first", "every_other"] = Field(
        "first", description="truncation keeps the first num_layers layers, or ones spaced evenly (last kept)")
    hidden_size: int | None = Field(None, ge=2, description="cnn/lstm: channels (256)")
    embed_dim: int | None = Field(None, ge=1, description="cnn/lstm: token-embedding width; below the base's, "
                                  "the truncated-SVD projection of its embedding matrix (default: the base's)")
    output_dim: int | None = Field(None, ge=1, description="embedding width: cnn/lstm output layer (default: the "
                                   "base's); transformer: a linear map after pooling (default: none)")
    kernel_size: int | None = Field(None, ge=1, description="cnn: convolution width, odd (3)")

    @model_validator(mode="after")
    def _arch_fields(self) -> "EncoderConfig":
        small_only = [k for k in ("hidden_size", "embed_dim", "kernel_size") if getattr(self, k)]
        if self.arch == "transformer" and small_only:
            raise ValueError(f"{', '.join(small_only)} only apply to arch cnn or lstm")
        if self.arch != "transformer" and self.init != "first":
            raise ValueError("init applies to a truncated transformer (arch transformer) only")
        if self.init == "every_other" and self.num_layers is None:
            raise ValueError("init every_other needs num_layers")
        if self.arch == "lstm" and self.kernel_size:
            raise ValueError("kernel_size applies to arch cnn only")
        if self.kernel_size and self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.arch == "lstm" and self.hidden_size and self.hidden_size % 2:
            raise ValueError(f"an lstm's hidden_size must be even (half per direction), got {self.hidden_size}")
        return self


class AttentionConfig(_Section):
    """How a teacher's attention becomes one score per passage (distill.attention.aggregate_attention).

    Default (docs/METHODS.md, section 4.1): the attention *mass* on each passage (post-softmax weights summed
    over its tokens), averaged over layers, heads and the decoded answer's tokens. The FiD-KD code's
    variant: weights logits, passage_tokens mean, output_tokens first."""

    weights: Literal["probs", "logits"] = Field(
        "probs", description="post-softmax attention, or pre-softmax scores (log-probs: equal up to a shift per row)")
    passage_tokens: Literal["sum", "mean"] = Field(
        "sum", description="over a passage's real tokens: sum (attention mass) or mean (per token)")
    output_tokens: Literal["all", "first"] = Field(
        "all", description="reader: mean over the decoded answer's tokens, or the first decoder step only; "
        "cross-encoder: mean over the query's tokens, or the [CLS] row only")
    layers: list[int] | None = Field(None, description="1-based layers to average (default: all)")

    @model_validator(mode="after")
    def _valid(self) -> "AttentionConfig":
        if self.weights == "logits" and self.passage_tokens != "mean":
            raise ValueError("attention weights: logits needs passage_tokens: mean (a sum of log-probs "
                             "grows with the passage's length)")
        if self.layers is not None and (not self.layers or min(self.layers) < 1):
            raise ValueError("attention layers are 1-based and must not be empty")
        return self


class EnsembleMember(_Section):
    """One member of an ensemble teacher (``teacher.kind: ensemble``; distill.ensemble)."""

    name: str = Field(pattern=r"^[a-z0-9_]+$", description="label of its score column, teacher_member_<name>")
    kind: Literal["bm25", "dual-encoder", "cross-encoder"]
    model: str | None = Field(None, description="dual-encoder/cross-encoder: local dir, hub id or python:<pkg>; "
                              "`finetuned`: the teacher stage's cross-encoder (teacher.model fine-tuned)")
    max_length: int = Field(256, ge=8)
    head: Literal["linear", "dual"] = "linear"
    trust_remote_code: bool = False
    weight: float = Field(1.0, ge=0, description="fixed fusion weight (teacher.fit_weights replaces it)")

    @model_validator(mode="after")
    def _model(self) -> "EnsembleMember":
        if self.kind == "bm25" and self.model is not None:
            raise ValueError(f"ensemble member {self.name!r}: bm25 takes no model")
        if self.kind != "bm25" and not self.model:
            raise ValueError(f"ensemble member {self.name!r}: {self.kind} needs a model")
        if self.model == "finetuned" and self.kind != "cross-encoder":
            raise ValueError(f"ensemble member {self.name!r}: model finetuned is the teacher stage's cross-encoder")
        return self


class TeacherConfig(_Section):
    kind: Literal["cross-encoder", "dual-encoder", "reader", "ensemble"] = Field(
        "cross-encoder", description="reader: a Fusion-in-Decoder seq2seq reader scored by its cross-attention; "
        "ensemble: members' per-query normalised scores, weighted (distill.ensemble)")
    model: str | None = Field(None, description="the teacher (ensemble: the cross-encoder a `finetuned` member "
                              "fine-tunes; unset when no member is `finetuned`)")
    members: list[EnsembleMember] = Field(default_factory=list, description="ensemble: its members")
    fusion: Literal["zscore", "rrf"] = Field("zscore", description="ensemble: per-query normalisation")
    rrf_k: int = Field(60, ge=1, description="ensemble, fusion rrf: 1 / (rrf_k + rank)")
    fit_weights: bool = Field(False, description="ensemble: fit the weights on the dev split (data.dev_queries) "
                              "by grid search over the simplex; else the members' fixed weights")
    weight_grid_step: float = Field(0.1, gt=0, le=1, description="ensemble, fit_weights: grid step")
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
    label_share: float | None = Field(
        None, ge=0, le=1, description="share of the labelled training queries whose qrels the fine-tune may "
        "read: the same seeded draw (the run seed, distill.label_budget) as training.label_share, so the two at "
        "one share are an end-to-end label budget; unset: all of them")
    signal: Literal["logits", "attention"] = Field(
        "logits", description="cross-encoder score: its logit, or its query->passage attention (a reader "
        "always scores by attention)")
    attention: AttentionConfig = AttentionConfig()
    reader_passages: int = Field(10, ge=1, description="reader fine-tuning: top-k retrieved passages per question")
    reader_retriever: Literal["bm25", "student"] = Field(
        "bm25", description="reader fine-tuning: who retrieves the passages: BM25 or the zero-shot student")
    answer_max_length: int = Field(32, ge=1, description="reader: answer tokens (fine-tuning labels, decoding)")

    @model_validator(mode="after")
    def _kind_fields(self) -> "TeacherConfig":
        if self.label_share is not None and (self.kind == "reader" or not self.finetunes):
            raise ValueError("teacher.label_share applies to a teacher the teacher stage fine-tunes on the qrels "
                             "(a cross-encoder, or an ensemble's `finetuned` member, with teacher.finetune: true)")
        if self.kind != "ensemble":
            if not self.model:
                raise ValueError(f"teacher.model is required for a {self.kind} teacher")
            if self.members:
                raise ValueError("teacher.members apply to teacher.kind: ensemble only")
            return self
        if not self.members:
            raise ValueError("teacher.kind ensemble needs teacher.members")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"teacher.members names repeat: {names}")
        if any(m.model == "finetuned" for m in self.members) and not (self.model and self.finetune):
            raise ValueError("an ensemble member with model: finetuned needs teacher.model and teacher.finetune: true")
        if not self.fit_weights and sum(m.weight for m in self.members) <= 0:
            raise ValueError("ensemble weights: at least one member weight must be positive")
        if self.signal != "logits":
            raise ValueError("teacher.signal attention applies to a cross-encoder teacher, not an ensemble")
        return self

    @property
    def finetunes(self) -> bool:
        """Whether the teacher stage trains a model: a cross-encoder or reader with finetune, or an
        ensemble with a `finetuned` member."""
        if self.kind == "ensemble":
            return any(m.model == "finetuned" for m in self.members)
        return self.finetune and self.kind in ("cross-encoder", "reader")

    def vector_member(self):
        """The ensemble member whose vectors/layer scores are stored for embedding matching or LEAD: the
        first dual encoder, else the first dual-head cross-encoder (None if there is none)."""
        for kinds in (("dual-encoder",), ("cross-encoder",)):
            for m in self.members:
                if m.kind in kinds and (m.kind == "dual-encoder" or m.head == "dual"):
                    return m
        return None


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
    encoder: EncoderConfig | None = Field(
        None, description="the dense encoder that mines candidates and gives the zero-shot row (default: the "
        "student as training starts); a sweep pins it to the base run's student so variants share its scores")


class ScoringConfig(_Section):
    batch_size: int = Field(32, ge=1)
    actors: int = Field(2, ge=1)
    store_embeddings: bool = Field(False, description="also store the teacher's query/document vectors "
                                   "(dual-encoder or dual-head cross-encoder) for embedding matching")
    store_layer_scores: bool = Field(False, description="also store the teacher's per-layer scores (LEAD)")
    min_softmax_entropy_share: float = Field(0.05, ge=0, le=1)
    shard_rows: int = Field(200_000, ge=1, description="pairs per scores shard: each is saved when done, so a "
                            "re-run after a crash scores only the shards that were not saved")
    import_path: str | None = Field(
        None, description="read teacher scores computed elsewhere instead of running the teacher: FlagEmbedding-"
        "style JSONL ({query, pos, neg, pos_scores, neg_scores}, texts) or parquet (qid, docid, score); rows "
        "checked and rejects counted as the data readers do (distill.sources.import_scores)")
    import_missing: Literal["error", "drop"] = Field(
        "error", description="a mined candidate without an imported score: stop the stage, or drop it (counted)")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="teacher forward passes (and the evaluate stage's teacher rerank): bf16 autocast (fp32 "
        "weights, float32 scores out) or fp32; auto: bf16 only where the hardware has native bf16 and, on a CPU, it "
        "measured faster (distill.precision); a reader or attention-signal teacher always scores in fp32")


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
    asymmetric: bool = Field(False, description="EmbedDistill asymmetric student: train only a query encoder "
                             "against the teacher's fixed document embeddings; the index holds the teacher's "
                             "document embeddings (needs a dual-encoder teacher and scoring.store_embeddings)")
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
    label_share: float = Field(
        1.0, ge=0, le=1, description="share of the labelled training queries (drawn with the run seed; generated "
        "queries always keep theirs) whose judgements training may use; the others lose them (labels zeroed, "
        "positives that only the qrels added removed) and train as training.unlabelled says: a label-budget "
        "curve on one run's candidates and teacher scores")
    unlabelled: Literal["auto", "drop", "teacher_top"] = Field(
        "auto", description="a training query without a judged positive among its candidates (data.label_share, "
        "or a positive mining missed): drop it, or take the teacher's top candidate as its positive slot; auto: "
        "teacher_top when a teacher-signal loss is on, drop for a hard-label-only student")
    checkpoint_every: int = Field(50, ge=1)
    log_every: int = Field(5, ge=1, description="report loss (and each loss term), learning rate and step time "
                           "every this many steps: through ray.train.report and to training.tracking")
    tracking: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        ["tensorboard"], description="where training metrics go (distill.tracking): tensorboard event files in "
        "runs/<name>/tensorboard/ (the [train] extra installs it); mlflow, wandb through Ray Train's integrations "
        "when their package is installed (not dependencies; asked for but missing is an error)")
    keep_checkpoints: int = Field(2, ge=1)
    max_failures: int = Field(1, ge=0)
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="bf16: the student's forward under torch autocast (bf16 matmuls) with fp32 weights, "
        "gradients and optimizer state, either backend; auto: bf16 only where the hardware has native bf16 "
        "and, on a CPU, it measured faster (distill.precision); three bf16-trained SciFact seeds matched three "
        "fp32 ones (BENCHMARKS.md)")


class EncodingConfig(_Section):
    batch_size: int = Field(64, ge=1)
    actors: int = Field(2, ge=1)
    shard_rows: int = Field(50_000, ge=1, description="documents per embeddings shard: each is saved when done, "
                            "so a re-run after a crash encodes only the shards that were not saved")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="the student's corpus encoding: bf16 autocast (fp32 weights, float32 embeddings out) "
        "or fp32; auto: bf16 only where the hardware has native bf16 and, on a CPU, it measured faster "
        "(distill.precision)")


class IndexConfig(_Section):
    factory: str = "Flat"
    metric: Literal["ip", "l2"] = "ip"
    train_size: int | None = Field(None, ge=1)
    nprobe: int = Field(8, ge=1)
    ef_search: int = Field(64, ge=1)


class EvaluationConfig(_Section):
    rerank_depth: int = Field(100, ge=1)
    inline_rerank_max_pairs: int = Field(
        2000, ge=0, description="teacher-rerank pairs scored in the driver process (same TeacherActor code) when "
        "there are at most this many; more go to the Ray Data model pool, whose ~20 s start-up would dominate a "
        "small job. 0: always Ray Data")
    first_stage_depth: int = Field(100, ge=1)
    speed_sample: int = Field(64, ge=1)


class RayConfig(_Section):
    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)
    object_store_memory: int | None = Field(None, ge=78643200)
    actor_cpus: float = Field(0.5, gt=0)
    read_cpus: float = Field(0.25, gt=0)
    actor_gpus: float = Field(0.0, ge=0)
    stage_pool: Literal["auto", "tasks", "actors"] = Field(
        "auto", description="the Ray Data stages' workers (distill.raydata): tasks on reused worker processes "
        "that keep each model loaded across stages (start-up paid once per run), or a fresh actor pool per "
        "stage; auto: actors where ray.actor_gpus > 0 (a GPU process keeps its first device), tasks elsewhere")
    actor_task_retries: int = Field(3, ge=0, description="a batch whose Ray Data worker died (an actor is "
                                    "restarted) is retried this many times, then the stage fails (a poison batch "
                                    "would otherwise be retried forever)")
    pool_restarts: int = Field(2, ge=0, description="a Ray system failure that ends a Ray Data stage (a node lost: "
                               "its actors' batch retries run out before Ray restarts them elsewhere) starts a new "
                               "pool over the rows not yet back, at most this many times")
    pool_restart_wait_s: float = Field(5.0, ge=0, description="seconds to wait before that new pool")

    @model_validator(mode="after")
    def _gpu_pool(self):
        if self.stage_pool == "tasks" and self.actor_gpus:
            raise ValueError("ray.stage_pool: tasks needs ray.actor_gpus: 0 (a reused worker process keeps the "
                             "first GPU it saw); use stage_pool: actors or auto with GPUs")
        return self


class SweepConfig(_Section):
    """Systems trained on one run's teacher, candidates and teacher scores (distill.sweep).

    Each variant is ``{dotted.key: value}`` overrides of this config; each system (the run's own student,
    labelled ``base_label``, and every variant) is trained once per training seed in ``seeds``. Stages whose
    config digest equals the base run's are shared, not recomputed; a variant that changes ``student``
    mines with the base run's student (``mining.encoder``), so it shares the candidates and scores too."""

    seeds: list[int] = Field(default_factory=list, description="training.seed values (default: training.seed)")
    base_label: str = Field("distilled", pattern=r"^[A-Za-z0-9_.+-]+$")
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    system_seeds: dict[str, list[int]] = Field(
        default_factory=dict, description="training seeds of named systems, replacing `seeds` for them (e.g. "
        "more seeds for the systems a claim compares, where every system at every seed costs too much); "
        "`{<base_label>: []}`: the base run trains no student, it runs only the stages its systems share "
        "(teacher, mine, score) and the sweep's runs follow")

    @model_validator(mode="after")
    def _names(self) -> "SweepConfig":
        import re

        for name, overrides in self.variants.items():
            if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name) or name == self.base_label:
                raise ValueError(f"sweep variant name {name!r}: letters, digits, _ . + - only, and not the base label")
            for key in overrides:
                if key.split(".")[0] in ("sweep", "name", "runs_dir", "rounds"):
                    raise ValueError(f"sweep variant {name!r} cannot override {key!r}")
        for name, seeds in [("seeds", self.seeds), *self.system_seeds.items()]:
            if len(set(seeds)) != len(seeds):
                raise ValueError(f"sweep seeds repeat ({name}): {seeds}")
        for name, seeds in self.system_seeds.items():
            if name != self.base_label and name not in self.variants:
                raise ValueError(f"sweep.system_seeds names {name!r}, which is neither the base label "
                                 f"{self.base_label!r} nor a variant")
            if not seeds and name != self.base_label:
                raise ValueError(f"sweep.system_seeds[{name!r}] is empty (only the base label's may be: a base "
                                 "run that trains no student of its own)")
        return self


class RunConfig(_Section):
    name: str = Field("demo", pattern=r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$", description="the run directory under "
                      "runs_dir: letters, digits, _ . + - (no path separators, not starting with .)")
    runs_dir: str = "runs"
    seed: int = 13
    rounds: int = Field(1, ge=1, description="iterative rounds: mine with the last student, score, train, "
                        "encode, index, evaluate, repeat (round r > 1 under round-<r>/)")
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
    sweep: SweepConfig = SweepConfig()

    @property
    def mining_encoder(self) -> EncoderConfig:
        """The encoder that mines candidates and gives the zero-shot row: ``mining.encoder`` or the student."""
        return self.mining.encoder or self.student

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
        if self.training.asymmetric:
            if self.teacher.kind != "dual-encoder":
                raise ValueError("training.asymmetric needs teacher.kind: dual-encoder (its document embeddings "
                                 "must not depend on the query, since the index is built from them)")
            if not self.scoring.store_embeddings:
                raise ValueError("training.asymmetric needs scoring.store_embeddings: true")
            if self.training.losses.lead > 0:
                raise ValueError("training.asymmetric trains no document tower, so LEAD (training.losses.lead) "
                                 "cannot apply")
        t = self.teacher
        if t.kind == "ensemble":
            if (self.scoring.store_embeddings or self.scoring.store_layer_scores) and t.vector_member() is None:
                raise ValueError("scoring.store_embeddings/store_layer_scores with an ensemble teacher need a "
                                 "dual-encoder member or a cross-encoder member with head: dual")
            if t.fit_weights and not self.data.dev_queries:
                raise ValueError("teacher.fit_weights fits the ensemble on the dev split: set data.dev_queries")
        if t.kind == "reader":
            if self.scoring.store_embeddings or self.scoring.store_layer_scores:
                raise ValueError("a reader teacher gives attention scores only: scoring.store_embeddings and "
                                 "scoring.store_layer_scores need a cross-encoder or dual-encoder teacher")
            if t.finetune and not self.data.answers:
                raise ValueError("teacher.kind reader with teacher.finetune needs QA pairs: set data.answers "
                                 "(a JSONL file of {_id, answers}) or teacher.finetune: false")
        if t.signal == "attention":
            if t.kind == "dual-encoder":
                raise ValueError("teacher.signal attention needs a cross-encoder (a dual encoder has no "
                                 "query->passage attention)")
            if t.kind == "cross-encoder" and self.scoring.store_embeddings:
                raise ValueError("teacher.signal attention cannot be combined with scoring.store_embeddings")
        if self.data.dev_queries and self.data.train_split == "dev":
            raise ValueError("data.dev_queries holds dev queries out of training: train_split cannot be `dev`")
        if self.rounds > 1 and self.mining.encoder is not None:
            raise ValueError("rounds > 1 mines with the last round's student: leave mining.encoder unset")
        if self.rounds > 1:
            missing = [s for s in ("mine", "score", "train", "encode") if s not in self.stages]
            if missing:
                raise ValueError(f"rounds > 1 needs stages {', '.join(missing)} (each round mines with the last "
                                 "round's student and its corpus embeddings)")
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
    if not all(key.strip().split(".")):
        raise ConfigError(f"override {assignment!r} has an empty key part")
    set_dotted(tree, key.strip(), _parse_value(raw))


def set_dotted(tree: dict, key: str, value) -> None:
    """Set ``tree[a][b][c] = value`` for ``key`` ``a.b.c``, creating missing (or null) sections; a
    ConfigError names a part that is not a section."""
    parts = key.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override key {'.'.join(parts[:i + 1])!r} is not a section")
        node = child
    node[parts[-1]] = value


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
