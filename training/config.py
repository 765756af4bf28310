"""Typed configuration of one fine-tuning run (conf/train/*.yaml), loaded with ``udfs.config.load_config``.

Defaults are the paper's fine-tuning recipe (Li et al., 2023); the local configs for the
tiny CPU model override the learning rate and the number of steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
import math
import re
from typing import Literal

from udfs.curation import CurationRule, JudgeRule, check_k, rating_rule, uses_likelihoods
from udfs.decontam import Decontamination, EvalSet

# Llama/Mistral/Qwen/SmolLM names of the attention and MLP projections: LoRA on all of them is the QLoRA
# paper's finding (adapting attention alone falls short of full fine-tuning).
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class BaseModelConfig:
    """The tiny local base model (``training.bootstrap``): architecture and pretraining budget (the defaults
    take about a minute on 2 CPU cores)."""

    vocab_size: int = 4096  # of the byte-level BPE tokenizer trained on the corpus
    hidden_size: int = 256  # model width
    num_layers: int = 4  # transformer blocks
    num_heads: int = 4  # head_dim = hidden_size / num_heads = 64: vLLM's CPU attention supports 32, 64, 80, ...
    intermediate_size: int = 688  # MLP width
    max_position_embeddings: int = 2048  # longest sequence the model takes (vLLM's max_model_len cap)
    tie_word_embeddings: bool = True  # input and output embeddings shared
    seq_len: int = 256  # pretraining chunk length (texts are packed, bos/eos between them)
    batch_size: int = 8  # sequences per pretraining step
    steps: int = 120  # pretraining steps
    lr: float = 3e-3  # peak learning rate (AdamW, cosine decay after warmup)
    warmup_steps: int = 10  # linear warmup steps
    seed: int = 0  # of weights and data order

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "seq_len",
            "batch_size",
            "steps",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.seq_len > self.max_position_embeddings:
            raise ValueError(f"seq_len {self.seq_len} exceeds max_position_embeddings {self.max_position_embeddings}")
        if self.vocab_size < 300:
            raise ValueError(f"vocab_size must be >= 300 (256 bytes + special tokens), got {self.vocab_size}")
        if not self.lr > 0 or not 0 <= self.warmup_steps < self.steps:
            raise ValueError("lr must be positive and warmup_steps in [0, steps)")


@dataclass(frozen=True)
class SeedData:
    """Human-written (instruction, output) pairs, JSONL; ``system_prompt`` tags them in forward training.

    A pair whose instruction or output contains a prompt of an evaluation set in ``decontamination`` (the
    pipeline passes ``segment.decontamination`` and its match settings) is left out of training, and its line
    and reason ``eval_overlap:<set>`` are recorded in the model's provenance."""

    path: str = "data/sample/seed.jsonl"
    system_prompt: str = "Answer in the style of an AI Assistant."
    decontamination: tuple[EvalSet, ...] = ()
    decontamination_ngram: int = 13
    decontamination_min_words: int = 5

    def __post_init__(self) -> None:
        for name in ("decontamination_ngram", "decontamination_min_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def eval_check(self) -> Decontamination:
        return Decontamination(self.decontamination, self.decontamination_ngram, self.decontamination_min_words)


@dataclass(frozen=True)
class AugmentedData:
    """Self-curated pairs read from the Delta tables; all three tables null means seed data only."""

    segments_table: str | None = None
    candidates_table: str | None = None
    scores_table: str | None = None
    # Pinned versions make the training set reproducible; null reads the latest, and the version actually
    # read is recorded in the run's provenance. ``as_of`` (ISO 8601, UTC if no offset) pins all three tables
    # to their latest version committed at or before that time instead.
    segments_version: int | None = None
    candidates_version: int | None = None
    scores_version: int | None = None
    as_of: str | datetime | None = None  # YAML reads an unquoted timestamp as a datetime
    judge_model_id: str | None = None  # only scores by this judge; null accepts any judge
    # "score", "expected_score", "both", "ifd" or "conditional_loss" (udfs.curation.RULE_COLUMNS); "longest" or
    # "random": a baseline of baseline_k pairs, or as many as the rule baseline_of keeps at min_score
    # (udfs.curation.BASELINE_RULES)
    score_column: CurationRule = "score"
    min_score: float = 5.0  # k: the judge's minimum, or the largest ifd / conditional loss kept
    baseline_of: JudgeRule = "score"
    baseline_k: int | None = None
    baseline_seed: int = 0
    # The likelihood scores of the ifd and conditional_loss rules: the table, its pinned version (null: the
    # latest; as_of pins it too) and the scorer whose rows count (udfs.likelihood).
    likelihoods_table: str | None = None
    likelihoods_version: int | None = None
    likelihood_scorer_id: str | None = None
    system_prompt: str = "Answer with knowledge from web search."
    # segment: the answer is the web segment (the paper); rewrite: the segment's ok rewrite from rewrites_table
    # (jobs.stages.rewrite), and curated pairs without one are left out (counted in the provenance)
    output: Literal["segment", "rewrite"] = "segment"
    rewrites_table: str | None = None
    rewrites_version: int | None = None
    rewrite_model_id: str | None = None  # only rewrites by this model; null accepts any rewriter
    rewrite_prompt_version: str | None = None  # only rewrites made with this prompt; null accepts any

    def __post_init__(self) -> None:
        tables = [self.segments_table, self.candidates_table, self.scores_table]
        if any(tables) and not all(tables):
            raise ValueError("segments_table, candidates_table and scores_table must be set together")
        if self.output == "rewrite" and not (self.rewrites_table and all(tables)):
            raise ValueError("output: rewrite needs rewrites_table and the three pool tables")
        versions = ("segments_version", "candidates_version", "scores_version", "rewrites_version")
        for name in versions:
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.as_of is not None:
            if any(getattr(self, name) is not None for name in versions):
                raise ValueError("as_of and *_version pin the tables two ways; set one of them")
            parse_timestamp(self.as_of)
        check_k(self.judge_rule, self.min_score)
        if (
            self.enabled
            and uses_likelihoods(self.judge_rule)
            and not (self.likelihoods_table and self.likelihood_scorer_id)
        ):
            raise ValueError(f"rule {self.judge_rule} needs likelihoods_table and likelihood_scorer_id")
        if (self.likelihoods_version or 0) < 0:
            raise ValueError(f"likelihoods_version must be >= 0, got {self.likelihoods_version}")
        if self.as_of is not None and self.likelihoods_version is not None:
            raise ValueError("as_of and *_version pin the tables two ways; set one of them")

    @property
    def enabled(self) -> bool:
        return self.segments_table is not None

    @property
    def judge_rule(self) -> JudgeRule:
        """The rule that rates pairs: ``score_column``, or ``baseline_of`` when a baseline selects the pairs."""
        return rating_rule(self.score_column, self.baseline_of)


def parse_timestamp(value: str | datetime) -> datetime:
    """An ISO 8601 timestamp, timezone-aware (UTC when it has no offset, as Delta commit times are)."""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"as_of must be an ISO 8601 timestamp, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and batching; lr decays linearly from ``lr`` to ``final_lr`` over the run's steps.

    Steps: ``max_steps`` when ``epochs`` is null; else ``ceil(epochs * examples / batch)`` passes over the
    data, capped at ``max_steps`` (``steps_for``). The paper's 500 steps at batch 32 on 3,200 seed pairs are
    5 epochs, its 1,600 steps on 51,200 pairs one: a fixed count under- or over-trains other data sizes.
    """

    lr: float = 1.0e-5
    final_lr: float = 9.0e-6
    weight_decay: float = 0.1
    dropout: float = 0.1
    batch_size: int = 32
    small_data_batch_size: int = 8  # the paper's batch size when there are fewer than small_data_threshold examples
    small_data_threshold: int = 3000
    micro_batch_size: int = 4  # examples per forward pass; gradient accumulation reaches the batch size
    max_steps: int = 500  # the number of steps, or with ``epochs`` their upper bound
    epochs: float | None = None
    max_seq_len: int = 2048
    grad_clip: float = 1.0
    seed: int = 0
    # Steps between checkpoints in <output_dir>.ckpt/ (0: none); a killed run resumes from the last one.
    checkpoint_every: int = 50
    # auto: bf16 autocast where the device computes bf16 natively (Ampere+ GPUs; CPUs with AVX-512 BF16 or AMX),
    # else fp32 (training.train.resolve_precision); weights stay fp32.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Recompute each block's activations in the backward pass instead of keeping them: activation memory
    # from one per layer to one block's, for about a third more compute (long sequences, big models).
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.lr:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.final_lr <= self.lr:
            raise ValueError(f"final_lr must be in [0, lr], got {self.final_lr}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("micro_batch_size", "max_steps", "max_seq_len", "small_data_threshold"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("batch_size", "small_data_batch_size"):
            value = getattr(self, name)
            if value <= 0 or value % self.micro_batch_size:
                raise ValueError(f"{name} must be a positive multiple of micro_batch_size, got {value}")
        if self.weight_decay < 0 or self.grad_clip <= 0:
            raise ValueError("weight_decay must be >= 0 and grad_clip positive")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.epochs is not None and not self.epochs > 0:
            raise ValueError(f"epochs must be positive or null, got {self.epochs}")

    def batch_size_for(self, examples: int) -> int:
        return self.small_data_batch_size if examples < self.small_data_threshold else self.batch_size

    def steps_for(self, examples: int, batch_size: int) -> int:
        """Optimizer steps for ``examples`` at ``batch_size``: see the class docstring."""
        if self.epochs is None:
            return self.max_steps
        return max(1, min(self.max_steps, math.ceil(self.epochs * examples / batch_size)))

    @property
    def steps_rule(self) -> str:
        return "max_steps" if self.epochs is None else f"min(max_steps={self.max_steps}, ceil({self.epochs} epochs))"


@dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters (peft) instead of updating every weight; merged into the base when saved.

    Only the adapters train and carry optimizer state (16 bytes per adapter parameter against 16 per model
    parameter), so a 7B model trains on one 24-80 GB GPU; ``quantize: 4bit`` (QLoRA) also stores the frozen
    base in 4-bit NF4 (bitsandbytes, CUDA only).
    """

    enabled: bool = False
    r: int = 16
    alpha: int = 32  # the update is scaled by alpha / r
    dropout: float = 0.05
    target_modules: tuple[str, ...] = PROJECTIONS
    quantize: Literal["none", "4bit"] = "none"

    def __post_init__(self) -> None:
        if self.r <= 0 or self.alpha <= 0:
            raise ValueError(f"r and alpha must be positive, got r={self.r}, alpha={self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("target_modules must name at least one module")
        if self.quantize != "none" and not self.enabled:
            raise ValueError("quantize: 4bit is QLoRA and needs enabled: true")


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking of the run (params, per-step metrics, input tables, the model); rank 0 only."""

    enabled: bool = True
    # null: "databricks" on Databricks, else $MLFLOW_TRACKING_URI, else a local SQLite store <output_dir>/../mlruns
    uri: str | None = None
    experiment: str = "humpback"  # on a Databricks tracking server a relative name goes under /Shared/
    # Copying the model directory into the tracking store doubles its disk use (14 GB for 7B in bf16),
    # so by default only its path is recorded (tag model_dir) with training_meta.json as an artefact.
    log_model: bool = False
    # catalog.schema.model: register the logged model there (Unity Catalog on Databricks, else the tracking
    # server's registry); "{model}" stands for the model directory's name (myx, m0, m1, ...). Needs log_model.
    register_model: str | None = None

    def __post_init__(self) -> None:
        if self.register_model is None:
            return
        parts = self.register_model.replace("{model}", "m").split(".")
        if len(parts) != 3 or not all(re.fullmatch(r"[A-Za-z0-9_]+", p) for p in parts):
            raise ValueError(f"register_model must be catalog.schema.model, got {self.register_model!r}")
        if not self.log_model:
            raise ValueError("register_model needs log_model: true (the registry keeps a copy of the model)")


@dataclass(frozen=True)
class DistributedConfig:
    """How a multi-process run (torchrun, TorchDistributor) shares the model; ignored in one process."""

    # ddp: a full replica per process; fsdp: parameters, gradients and optimizer state sharded (big models).
    strategy: Literal["ddp", "fsdp"] = "ddp"


@dataclass(frozen=True)
class TrainConfig:
    """One fine-tuning run: which base model, which direction, which data, which recipe."""

    base_model: str  # Hugging Face model directory
    output_dir: str
    # forward: instruction -> output (M0, M1, M2); backward: output -> instruction (M_yx)
    direction: Literal["forward", "backward"] = "forward"
    seed: SeedData = field(default_factory=SeedData)
    augmented: AugmentedData = field(default_factory=AugmentedData)
    backward_prompt: str = "conf/prompts/backtranslate_v1.txt"
    trust_remote_code: bool = False  # code shipped in the base model's directory runs only if this says so
    optim: OptimConfig = field(default_factory=OptimConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        if not self.base_model or not self.output_dir:
            raise ValueError("base_model and output_dir must be non-empty")
